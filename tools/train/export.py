"""Export: the latest checkpoints of every stage -> one flipbook model file.

The DiT and text encoder use their EMA weights; the autoencoder, its last step; the tokenizer
bytes go into the "tokenizer.spm" tensor and the config into the metadata
(docs/model-format.md), through the reference's own writer (flipbook_ref.export.save_model).
F16 weights by default (the engine accepts F32/F16/BF16); the file must stay <= 50 MB.
"""
import dataclasses
import json
import os

import torch

from flipbook_ref.export import Model, load_model, save_model

from . import ae as ae_stage
from . import config as C
from . import dit as dit_stage
from . import tokenizer as tok_stage

MAX_BYTES = 50 * 1000 * 1000


def assemble(root, dmd=False):
    """A reference Model from the state folder, and a dict of the stage steps used. dmd: the
    DiT and text encoder of the dmd stage (its generator's EMA) instead of the dit stage's."""
    missing = [s for s, ok in (("ae", os.path.exists(os.path.join(root, "ae", "ckpt.pt"))),
                               ("tokenizer", tok_stage.is_done(root)),
                               ("dit", os.path.exists(os.path.join(root, "dit", "ckpt.pt")))) if not ok]
    if missing:
        raise SystemExit("train: cannot export, no checkpoint yet for: %s" % ", ".join(missing))
    tok, _ = tok_stage.load(root)
    t5, dit, cfg, dit_step = dit_stage.load_trained(root, ema=True)
    dmd_step = None
    if dmd:
        from . import dmd as dmd_stage
        g = dmd_stage.load_generator(root)
        if g is None:
            raise SystemExit("train: --dmd: no dmd checkpoint yet (tools/train.sh --stage dmd)")
        t5, dit, cfg, dmd_step, dit_step = g
    vae, ae_step = ae_stage.load_trained(root)
    model = Model(cfg, C.MODEL_NAME, tok.model_bytes)
    model.dit.load_state_dict(dit.state_dict())
    model.text_encoder.load_state_dict(t5.state_dict())
    model.vae.load_state_dict(vae.state_dict())
    return model.eval(), {"ae": ae_step, "dit": dit_step, "dmd": dmd_step}


def export(root, tc, out, dtype="f16", dmd=False):
    model, steps = assemble(root, dmd)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    save_model(tmp, model, torch.float16 if dtype == "f16" else torch.float32,
               prompts=C.EXAMPLE_PROMPTS,
               training={"seed": tc.seed, "ae_step": steps["ae"], "dit_step": steps["dit"],
                         **({"dmd_step": steps["dmd"]} if steps["dmd"] is not None else {})})
    size = os.path.getsize(tmp)
    if size > MAX_BYTES:
        os.unlink(tmp)
        raise SystemExit("train: the model file would be %.1f MB, over the 50 MB limit" % (size / 1e6))
    load_model(tmp)            # the file reads back through the reference loader
    os.replace(tmp, out)
    n = sum(v.numel() for v in model.state_dict().values())
    print("train: exported %s (%.1f MB, %.2fM parameters, %s; ae step %d, dit step %d%s)"
          % (out, size / 1e6, n / 1e6, dtype, steps["ae"], steps["dit"],
             "" if steps["dmd"] is None else ", dmd step %d" % steps["dmd"]), flush=True)
    return out


def init_from(root, tc, path):
    """Seeds an empty state folder from an exported model file, so that training resumes on a
    machine that has only the repository (the state folder holds the optimizer moments and is
    never committed; exported weights are, at milestones).

    Every stage without state of its own gets the file's weights as both its model and its
    EMA, a fresh optimizer and the step recorded in the file's flipbook.training metadata.
    The continued run differs from one that never stopped (the optimizer moments and the
    float32 digits of an f16 file are gone); the log says so. Returns the stages seeded."""
    from flipbook_ref import st
    from . import state
    _, meta = st.load(path)
    if "flipbook.training" not in meta:
        raise SystemExit("train: %s has no flipbook.training metadata (export it with "
                         "tools/train.sh --export)" % path)
    steps = json.loads(meta["flipbook.training"])
    if steps.get("seed") != tc.seed:
        raise SystemExit("train: %s was trained with seed %s, this config has %s"
                         % (path, steps.get("seed"), tc.seed))
    model = load_model(path)
    # The autoencoder's warm start is a way of using it (the DiT stage's), not other weights:
    # files from before it (off) seed the same stages.
    if dataclasses.replace(model.cfg.vae, warm_start=False) != C.vae_config():
        raise SystemExit("train: %s has another autoencoder than tools/train/config.py" % path)
    seeded = []
    ae_ck = os.path.join(root, "ae", "ckpt.pt")
    if not os.path.exists(ae_ck):
        os.makedirs(os.path.dirname(ae_ck), exist_ok=True)
        sd = {k: v.float() for k, v in model.vae.state_dict().items()}
        state.atomic_torch_save({"model": sd, "ema": sd, "opt": None, "step": steps["ae_step"],
                                 "settings": ae_stage.settings(tc), "rng": state.rng_state()}, ae_ck)
        seeded.append("ae (step %d)" % steps["ae_step"])
    if not tok_stage.is_done(root):
        tok_stage.install(root, tc, model.tokenizer.model_bytes, model.cfg.dit.text_len)
        seeded.append("tokenizer")
    dit_ck = os.path.join(root, "dit", "ckpt.pt")
    if not os.path.exists(dit_ck):
        _, cfg = dit_stage.model_cfg(root)
        if dit_stage.networks_dict(cfg)[0] != dit_stage.networks_dict(model.cfg)[0]:
            raise SystemExit("train: %s has another model config than tools/train/config.py" % path)
        os.makedirs(os.path.dirname(dit_ck), exist_ok=True)
        w = {"t5": {k: v.float() for k, v in model.text_encoder.state_dict().items()},
             "dit": {k: v.float() for k, v in model.dit.state_dict().items()}}
        state.atomic_torch_save({"model": w, "ema": w, "opt": None, "step": steps["dit_step"],
                                 "settings": dit_stage.settings(tc, cfg), "rng": state.rng_state()},
                                dit_ck)
        seeded.append("dit (step %d)" % steps["dit_step"])
    print("train: seeded from %s: %s (fresh optimizer moments: the run continues, it does not "
          "replay)" % (path, ", ".join(seeded) or "nothing, every stage has state"), flush=True)
    return seeded
