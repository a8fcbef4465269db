"""Export: the latest checkpoints of every stage -> one flipbook model file.

The DiT and text encoder use their EMA weights; the autoencoder, its last step; the tokenizer
bytes go into the "tokenizer.spm" tensor and the config into the metadata
(docs/model-format.md), through the reference's own writer (flipbook_ref.export.save_model).
F16 weights by default (the engine accepts F32/F16/BF16); the file must stay <= 50 MB.
"""
import os

import torch

from flipbook_ref.export import Model, load_model, save_model

from . import ae as ae_stage
from . import config as C
from . import dit as dit_stage
from . import tokenizer as tok_stage

MAX_BYTES = 50 * 1000 * 1000


def assemble(root):
    """A reference Model from the state folder, and a dict of the stage steps used."""
    missing = [s for s, ok in (("ae", os.path.exists(os.path.join(root, "ae", "ckpt.pt"))),
                               ("tokenizer", tok_stage.is_done(root)),
                               ("dit", os.path.exists(os.path.join(root, "dit", "ckpt.pt")))) if not ok]
    if missing:
        raise SystemExit("train: cannot export, no checkpoint yet for: %s" % ", ".join(missing))
    tok, _ = tok_stage.load(root)
    t5, dit, cfg, dit_step = dit_stage.load_trained(root, ema=True)
    vae, ae_step = ae_stage.load_trained(root)
    model = Model(cfg, C.MODEL_NAME, tok.model_bytes)
    model.dit.load_state_dict(dit.state_dict())
    model.text_encoder.load_state_dict(t5.state_dict())
    model.vae.load_state_dict(vae.state_dict())
    return model.eval(), {"ae": ae_step, "dit": dit_step}


def export(root, tc, out, dtype="f16"):
    model, steps = assemble(root)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    save_model(tmp, model, torch.float16 if dtype == "f16" else torch.float32,
               prompts=C.EXAMPLE_PROMPTS)
    size = os.path.getsize(tmp)
    if size > MAX_BYTES:
        os.unlink(tmp)
        raise SystemExit("train: the model file would be %.1f MB, over the 50 MB limit" % (size / 1e6))
    load_model(tmp)            # the file reads back through the reference loader
    os.replace(tmp, out)
    n = sum(v.numel() for v in model.state_dict().values())
    print("train: exported %s (%.1f MB, %.2fM parameters, %s; ae step %d, dit step %d)"
          % (out, size / 1e6, n / 1e6, dtype, steps["ae"], steps["dit"]), flush=True)
    return out
