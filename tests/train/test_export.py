"""train_export: checkpoints of the three stages -> a flipbook model file that the reference
loads, with the default config, the tokenizer embedded, F16 weights under 50 MB, and from
which the reference sampler generates a chunk that decodes to 8 frames of 128x128."""
import json
import os

import torch

from common import check, finish, tmpdir

from flipbook_ref import st
from flipbook_ref.export import load_model
from train import config as C
from train import dit, evaluate, export, state
from train import tokenizer as tok_stage
from train.ae import build_model


def main():
    tc = C.TrainConfig()
    tc.tokenizer.sentences = 200
    with tmpdir() as root:
        try:
            export.export(root, tc, os.path.join(root, "m.safetensors"))
            check(False, "export without checkpoints is refused")
        except SystemExit as e:
            check("no checkpoint yet" in str(e), "export without checkpoints is refused")
        tok_stage.run(root, tc, state.Budget())
        tok, meta = tok_stage.load(root)
        vae = build_model(1)
        state.atomic_torch_save({"model": vae.state_dict(), "step": 11}, os.path.join(state.stage_dir(root, "ae"), "ckpt.pt"))
        cfg = C.model_config(meta["vocab_size"], meta["text_len"])
        t5, net = dit.build_models(cfg, 2)
        with torch.no_grad():
            for p in net.head.parameters():
                p.normal_(0, 0.02)
        state.atomic_torch_save({"ema": {"t5": t5.state_dict(), "dit": net.state_dict()}, "step": 22},
                                os.path.join(state.stage_dir(root, "dit"), "ckpt.pt"))
        out = os.path.join(root, "model.safetensors")
        export.export(root, tc, out)
        size = os.path.getsize(out)
        check(0 < size <= export.MAX_BYTES, "model file is %.1f MB (<= 50 MB)" % (size / 1e6))
        tensors, md = st.load(out)
        check(md.get("flipbook.format") == "1" and md.get("flipbook.name") == "default", "metadata")
        check(all(v.dtype in (torch.float16, torch.uint8) for v in tensors.values()), "F16 weights")
        check(all(k.startswith(("dit.", "text_encoder.", "vae.")) or k == "tokenizer.spm" for k in tensors),
              "tensor names under the format's prefixes")
        check(bytes(tensors["tokenizer.spm"].numpy()) == tok.model_bytes, "tokenizer bytes embedded")
        m = load_model(out)
        check(m.cfg.to_dict() == cfg.to_dict(), "config round-trips")
        d = (m.dit.blocks[0].self_attn.q.weight - net.blocks[0].self_attn.q.weight).abs().max().item()
        check(d < 1e-2, "DiT weights are the checkpoint's EMA weights (max diff %.2g, F16)" % d)
        check(m.tokenize("two red balls at night")[-1] == 1, "the model's tokenizer works")
        video = evaluate.generate(m, ["a red ball bouncing at night"] * 2, -1, 1, seed=5)
        check(tuple(video.shape) == (8, 3, C.HEIGHT, C.WIDTH), "one chunk decodes to 8 frames of "
              "128x128: %s" % (tuple(video.shape),))
        check(bool(torch.isfinite(video).all()) and 0 <= video.min() and video.max() <= 1, "frames in [0, 1]")
        training = json.loads(md.get("flipbook.training", "{}"))
        check(training == {"seed": tc.seed, "ae_step": 11, "dit_step": 22},
              "flipbook.training records the seed and stage steps: %s" % training)

        # A fresh machine: an empty state folder seeded from the file resumes at its steps,
        # and exports the same weights again.
        with tmpdir() as fresh:
            seeded = export.init_from(fresh, tc, out)
            check(len(seeded) == 3, "every stage seeded: %s" % seeded)
            ck = state.load_ckpt(os.path.join(fresh, "dit", "ckpt.pt"))
            check(ck["step"] == 22 and ck["opt"] is None, "the DiT resumes at step 22, fresh optimizer")
            check(state.load_ckpt(os.path.join(fresh, "ae", "ckpt.pt"))["step"] == 11,
                  "the autoencoder resumes at step 11")
            check(tok_stage.load(fresh)[1]["text_len"] == meta["text_len"], "tokenizer installed")
            again = os.path.join(fresh, "again.safetensors")
            export.export(fresh, tc, again)
            t2, _ = st.load(again)
            same = all(torch.equal(tensors[k], t2[k]) for k in tensors)
            check(same and set(t2) == set(tensors), "re-export of the seeded state is bit-identical")
            check(export.init_from(fresh, tc, out) == [], "stages with state are left alone")
        with tmpdir() as fresh:
            bare = os.path.join(fresh, "bare.safetensors")
            st.save(bare, {k: v for k, v in tensors.items()},
                    {k: v for k, v in md.items() if k != "flipbook.training"})
            try:
                export.init_from(fresh, tc, bare)
                check(False, "a file without flipbook.training is refused")
            except SystemExit as e:
                check("flipbook.training" in str(e), "a file without flipbook.training is refused")
    finish()


if __name__ == "__main__":
    main()
