"""Flow-matching training objective over whole clips, matching inference chunk for chunk.

A training clip of F = n C latent frames is split into chunks; every chunk gets its own noise
level (diffusion forcing), drawn from the same timestep grid the sampler uses. With teacher
forcing (the default) each noisy chunk attends to the CLEAN anchors and window of the clip and
to its own noisy frames, at the positions the KV cache would give it at inference (ClipPlan),
so the model learns exactly the computation the endless stream performs:

    x_t = (1 - sigma) x0 + sigma eps,   target v = eps - x0,   loss = mean (v_pred - v)^2
"""
import torch

from .kvcache import ClipPlan


def sample_chunk_timesteps(sched, batch, n_chunks, generator=None):
    """Per-chunk grid indices -> (timesteps [B, n], sigmas [B, n]) from the sampler's table."""
    idx = torch.randint(0, sched.timesteps.shape[0], (batch, n_chunks), generator=generator)
    return sched.timesteps[idx], sched.sigmas[idx]


def flow_matching_loss(dit, clean, context, cfg, sched, generator=None, teacher=True, cross=None):
    """Loss of one batch. clean [B, C, F, H, W] latents, context [B, Lc, text_dim] raw encoder
    output; cfg the ModelConfig (its stream section fixes chunk, anchors, window, positions)."""
    sc = cfg.stream
    B, _, Fr = clean.shape[:3]
    plan = ClipPlan(Fr, sc.chunk_frames, sc.anchor_frames, sc.window_frames, sc.positions)
    n = Fr // sc.chunk_frames
    t, sigma = sample_chunk_timesteps(sched, B, n, generator)
    t = t.repeat_interleave(sc.chunk_frames, dim=1)                       # [B, F]
    s = sigma.repeat_interleave(sc.chunk_frames, dim=1)[:, None, :, None, None]
    eps = torch.randn(clean.shape, generator=generator)
    x_t = (1 - s) * clean + s * eps
    pred = dit.forward_train(x_t, t, context, plan, clean=clean if teacher else None,
                             t_clean=sched.context_t, cross=cross)
    return (pred - (eps - clean)).pow(2).mean()
