"""Growing the DiT deeper in the middle of a run, without starting again.

`tools/train.sh --grow-dit` rewrites the DiT stage's checkpoint from the number of blocks it
was trained with to the number tools/train/config.py now asks for (DIT_LAYERS). Old block i
keeps its place in order; the blocks added after it are copies of it whose three output
projections (self-attention, cross-attention, FFN) are zero, so each new block adds nothing to
the residual stream and the grown network computes exactly what the old one did. Their other
weights start from a trained block rather than from noise, and the zeroed projections get
gradients at once (their inputs are not zero), so the new depth is put to use from the first
step. Weights and EMA are grown alike; the optimizer starts with fresh moments and warms up
again (as after --init-from)."""
import os

from . import dit as dit_stage
from . import state

# The projections whose output is added to the residual stream: zero makes a block the identity.
_OUTPUTS = ("self_attn.o.weight", "self_attn.o.bias", "cross_attn.o.weight", "cross_attn.o.bias",
            "ffn.2.weight", "ffn.2.bias")


def block_map(old, new):
    """For each of `new` blocks, (old block it copies, whether it is an added identity copy)."""
    src = [j * old // new for j in range(new)]
    return [(i, j > 0 and src[j - 1] == i) for j, i in enumerate(src)]


def grow_state(sd, old, new):
    """A DiT state dict of `old` blocks -> one of `new` blocks (see the module comment)."""
    out = {k: v for k, v in sd.items() if not k.startswith("blocks.")}
    for j, (i, added) in enumerate(block_map(old, new)):
        pre = "blocks.%d." % i
        for k, v in sd.items():
            if k.startswith(pre):
                rest = k[len(pre):]
                w = v.clone()
                if added and rest in _OUTPUTS:
                    w.zero_()
                out["blocks.%d.%s" % (j, rest)] = w
    return out


def grow(root, tc):
    """Rewrites the DiT checkpoint to the configured depth. Returns (old, new) block counts."""
    path = os.path.join(root, "dit", "ckpt.pt")
    ck = state.load_ckpt(path)
    if ck is None:
        raise SystemExit("train: no DiT checkpoint in %s to grow" % root)
    _, cfg = dit_stage.model_cfg(root)
    new = cfg.dit.num_layers
    old = ck["settings"]["model"]["dit"]["num_layers"]
    if old == new:
        print("train[dit]: the checkpoint already has %d blocks; nothing to grow" % new, flush=True)
        return old, new
    if old > new:
        raise SystemExit("train: the DiT checkpoint has %d blocks, more than the %d of "
                         "tools/train/config.py; a network is grown, never cut" % (old, new))
    saved = dict(ck["settings"])
    saved["model"] = dict(saved["model"], dit=dict(saved["model"]["dit"], num_layers=new))
    want = dit_stage.settings(tc, cfg)
    # Everything but the depth (and what a run may change anyway) must match: growing is not a
    # way around the settings check.
    state.check_settings(saved, want, "dit", resizable=dit_stage.RESIZABLE)
    _, net = dit_stage.build_models(cfg, 0)
    for key in ("model", "ema"):
        ck[key]["dit"] = grow_state(ck[key]["dit"], old, new)
        net.load_state_dict(ck[key]["dit"])          # every name and shape as the config says
    ck["opt"] = None
    ck["settings"] = want
    state.atomic_torch_save(ck, path)
    print("train[dit]: grown from %d to %d blocks at step %d (added blocks start as the identity; "
          "fresh optimizer moments)" % (old, new, ck["step"]), flush=True)
    return old, new
