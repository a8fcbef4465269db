"""How much the DiT moves things, teacher-forced and free-running (`--motion-check`).

The DiT's latest checkpoint (EMA weights) samples the DiT stage's held-out latent clips with the
sampler's own steps (re-noising, as the engine does) in two ways:

  teacher-forced  every chunk sees the true earlier chunks as its context (what training shows it)
  free-running    every chunk sees the chunks the model drew before it (what a stream shows it)

and prints, for each latent frame, the RMS change from the frame before it: in the true clip, in
the teacher-forced prediction, in the free-running one. A model that predicts motion from a true
context but not from its own output has learnt to continue, not to start, motion; one whose
free-running change shrinks chunk after chunk freezes its scenes. The figures are over all latent
cells of 8 clips, so a caption switch at a chunk boundary (half of the clips) shows as a bump.
"""
import json
import os

import numpy as np
import torch

from flipbook_ref.kvcache import ClipPlan
from flipbook_ref.sampler import FlowMatchSchedule

from . import dit as dit_stage
from . import tokenizer as tok_stage


def _sample(t5, dit, cfg, batch, sched, gen, frames=None):
    """x0 of every noisy chunk of the first `frames` latent frames (all by default) after the
    sampler's steps, each with the clean frames of `batch` before it as its context:
    [B, C, frames, h, w]. The noise is drawn for the whole clip whatever `frames` is, so a
    prefix gets the same noise as in the whole clip (later frames never reach earlier ones)."""
    clean, ids, mask, fcap = batch[:4]
    B, F_ = clean.shape[0], clean.shape[2] if frames is None else frames
    plan = ClipPlan(F_, cfg.stream.chunk_frames, cfg.stream.anchor_frames,
                    cfg.stream.window_frames, cfg.stream.positions)
    ctx = dit_stage.encode_text(t5, ids, mask).unflatten(0, (B, ids.shape[0] // B))
    clean, fcap = clean[:, :, :F_], fcap[:, :F_]
    x0 = None
    for k in range(sched.steps.shape[0]):
        s = float(sched.step_sigmas[k])
        eps = torch.randn(batch[0].shape, generator=gen)[:, :, :F_]
        x_t = eps if x0 is None else (1 - s) * x0 + s * eps
        t = sched.steps[k].expand(B, F_)
        pred = dit_stage.forward_train(dit, (x_t, clean), t, ctx, fcap, plan, cfg.sampler.context_t)
        x0 = x_t - s * pred.float()
    return x0


def _change(x):
    """RMS change of each latent frame from the one before: [F-1]."""
    d = (x[:, :, 1:] - x[:, :, :-1]).pow(2)                  # [B, C, F-1, h, w]
    return d.mean(dim=(0, 1, 3, 4)).sqrt()


@torch.no_grad()
def run(root, tc, clips=8):
    t5, dit, cfg, step = dit_stage.require_trained(root)
    tok, _ = tok_stage.load(root)
    vpath = os.path.join(dit_stage.cache_dir(root), "val.pt")
    if not os.path.exists(vpath):
        raise SystemExit("train: no held-out latent clips in %s yet (the DiT stage writes them "
                         "with its latent cache)" % vpath)
    v = torch.load(vpath)
    val = dit_stage.Batches(v["latents"], json.loads(v["captions"]), tok, cfg.dit.text_len,
                            tc.dit, tc.seed)
    n = min(clips, val.lat.shape[0])
    batch = val.get(np.random.default_rng([tc.seed, 98]), 0, clips=range(n))
    clean = batch[0]                                          # [B, C, F, h, w]
    F_, Cf = clean.shape[2], cfg.stream.chunk_frames
    sched = FlowMatchSchedule(cfg.sampler)
    print("train[motion]: DiT step %d, %d held-out clips of %d latent frames, %d sampler steps"
          % (step, n, F_, sched.steps.shape[0]), flush=True)
    teacher = _sample(t5, dit, cfg, batch, sched, torch.Generator().manual_seed(tc.seed))
    free = clean.clone()
    gen = torch.Generator().manual_seed(tc.seed)
    for c in range(F_ // Cf):        # chunk c from the chunks drawn before it: the first c + 1
        x0 = _sample(t5, dit, cfg, (free,) + tuple(batch[1:]), sched, gen, frames=(c + 1) * Cf)
        free[:, :, c * Cf:(c + 1) * Cf] = x0[:, :, c * Cf:]
        print("train[motion]: free-running chunk %d/%d" % (c + 1, F_ // Cf), flush=True)
    # A teacher-forced chunk's first frame is measured against the true frame before it (its
    # context), its later frames against their predicted neighbours.
    tf = torch.stack([teacher[:, :, f] - (clean[:, :, f - 1] if f % Cf == 0 else teacher[:, :, f - 1])
                      for f in range(1, F_)], dim=2)
    tf = tf.pow(2).mean(dim=(0, 1, 3, 4)).sqrt()
    tr, fr = _change(clean), _change(free)
    print("frame   true  teacher-forced  free-running")
    for f in range(1, F_):
        print("%2d-%-2d  %5.3f  %14.3f  %12.3f%s" % (f - 1, f, tr[f - 1], tf[f - 1], fr[f - 1],
                                                      "   (chunk boundary)" if f % Cf == 0 else ""))
    print("mean   %5.3f  %14.3f  %12.3f" % (tr.mean(), tf.mean(), fr.mean()))
    return {"step": step, "true": tr.tolist(), "teacher": tf.tolist(), "free": fr.tolist()}
