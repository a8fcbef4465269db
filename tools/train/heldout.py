"""Has the DiT learnt the world or memorised its clips? (`--heldout-check`)

The DiT's latest checkpoint (EMA weights) is scored on the first chunk of stream starts (clips
that begin at their scene's start: the chunk drawn from the prompt alone) from three sets of
the same distribution:

  first   the first such clips of the latent cache (its first shards)
  last    the last such clips of the cache (its last shards): when the cache grew between
          runs, these were trained on far fewer times than the first ones
  unseen  clips the cache does not hold yet (indices from dataset_clips on: the same renderer,
          seeds and settings), rendered and encoded here with the trained autoencoder

Each clip gets the same noise whichever set it is in, at the sampler's first steps (the levels
that decide what a chunk shows); the second chunk is kept almost clean as context so that the
plan is the stream start's. For each level the loss over all latent cells and over the cells
that hold an object is printed, and the unseen / first and unseen / last ratios: well above 1
means the model answers its training clips better than the world, and more clips
(`dataset_clips`) are worth more than more steps on the same ones; a gap between the two
ratios says how much of it comes from repeating the same clips.
"""
import os

import numpy as np
import torch

from flipbook_ref.kvcache import ClipPlan
from flipbook_ref.sampler import FlowMatchSchedule

from . import ae as ae_stage
from . import config as C
from . import data, state
from . import dit as dit_stage

LEVELS = 3          # the sampler's first steps: sigma 1, 0.75, 0.5 in the shipped config


def stream_starts(seed, st, first, n, limit):
    """[(index, frames, captions)] (data.make_dit_clip's) of the first n clips from index first
    on (looking at most limit clips far) that begin at their scene's start."""
    out = []
    for i in range(first, first + limit):
        fr, _, cp = data.make_dit_clip(seed, i, st.clip_latents * C.T_DOWN, st.switch_fraction,
                                       st.phrasings, late_start=st.late_start,
                                       max_start=st.max_start, mirror=True)
        if cp["start"] == 0:
            out.append((i, fr, cp))
            if len(out) == n:
                break
    return out


def render_unseen(root, tc, cfg, n):
    """(latents [n, F, C, h, w] float16, objects [n, F, 1, h, w] bool, captions) of n stream
    starts the cache does not hold (indices from dataset_clips on), encoded as the cache was
    (cfg: the model's config, for the autoencoder's warm start)."""
    vae, _ = ae_stage.load_trained(root)
    vae.cfg.warm_start = cfg.vae.warm_start
    got = stream_starts(tc.seed, tc.dit, tc.dit.dataset_clips, n, 8 * n)
    frames = np.stack([fr for _, fr, _ in got])
    lat = torch.cat([data.encode_clips(vae, frames[j:j + 5], bf16=True)
                     for j in range(0, len(got), 5)])
    return lat, data.latent_object_mask(frames), [cp for _, _, cp in got]


@torch.no_grad()
def first_chunk_loss(t5, dit, cfg, tok, st, seed, lat, obj, caps, batch=8):
    """{sigma: (loss over all cells, loss over object cells)} of the first chunk of every clip
    given (all of them stream starts), at the sampler's first LEVELS steps. Clip j gets noise
    drawn from seed j whichever set it is in."""
    Cf = cfg.stream.chunk_frames
    F_ = 2 * Cf
    sched = FlowMatchSchedule(cfg.sampler)
    plan = ClipPlan(F_, Cf, cfg.stream.anchor_frames, cfg.stream.window_frames, cfg.stream.positions)
    b = dit_stage.Batches(lat, caps, tok, cfg.dit.text_len, st, seed)
    out = {}
    for k in range(min(LEVELS, sched.steps.shape[0])):
        tot = tot_obj = 0.0
        for j in range(0, lat.shape[0], batch):
            rows = list(range(j, min(j + batch, lat.shape[0])))
            clean, ids, mask, fcap = b.get(np.random.default_rng([seed, 97, j]), 0, clips=rows,
                                           latents=F_)[:4]
            B = clean.shape[0]
            eps = torch.stack([torch.randn(clean.shape[1:], generator=torch.Generator().manual_seed(
                seed + 1000 + r)) for r in rows])                        # [B, C, F, h, w]
            t = torch.stack([sched.steps[k], sched.steps[-1]]).repeat_interleave(Cf).expand(B, F_)
            s = torch.stack([sched.step_sigmas[k], sched.step_sigmas[-1]]).repeat_interleave(Cf)
            s = s.view(1, 1, F_, 1, 1)
            x_t = (1 - s) * clean + s * eps
            with state.autocast(st.bf16):
                ctx = dit_stage.encode_text(t5, ids, mask).unflatten(0, (B, ids.shape[0] // B))
                pred = dit_stage.forward_train(dit, (x_t, clean), t, ctx, fcap, plan,
                                               cfg.sampler.context_t)
            err = (pred.float() - (eps - clean)).pow(2)[:, :, :Cf]           # [B, C, Cf, h, w]
            o = obj[rows, :Cf].float().permute(0, 2, 1, 3, 4)               # [B, 1, Cf, h, w]
            tot += err.mean(dim=(1, 2, 3, 4)).sum().item()
            per = (err * o).sum(dim=(1, 2, 3, 4)) / (o.sum(dim=(1, 2, 3, 4)) * err.shape[1]).clamp(min=1)
            tot_obj += per.sum().item()
        n = lat.shape[0]
        out[round(float(sched.step_sigmas[k]), 3)] = (tot / n, tot_obj / n)
    return out


def cached_starts(d, st, shards, clips):
    """(latents, objects, captions) of up to clips stream starts of the cache, read from the
    given shards in order, as many as it takes to find them (missing shards are skipped, and
    so are clips past st.dataset_clips: a last shard's tail the training does not use)."""
    lats, objs, caps = [], [], []
    for k in shards:
        if len(caps) >= clips:
            break
        if not os.path.exists(data.shard_path(d, k)):
            continue
        lat, obj, cap = data.load_shard(d, k)
        keep = [i for i, c in enumerate(cap) if c["start"] == 0
                and k * st.shard_clips + i < st.dataset_clips][:clips - len(caps)]
        lats.append(lat[keep])
        objs.append(obj[keep])
        caps.extend(cap[i] for i in keep)
    if not caps:
        return None
    return torch.cat(lats), torch.cat(objs), caps


def run(root, tc, clips=48):
    t5, dit, cfg, step = dit_stage.require_trained(root)
    tok, _ = dit_stage.model_cfg(root)
    st = tc.dit
    d = dit_stage.cache_dir(root)
    # Two seen sets: the cache's first shards and its last ones. When the cache has grown
    # between runs, the first ones were trained on many more times than the last ones, and
    # the gap between the two says how much of the unseen gap is repetition.
    shards = -(-st.dataset_clips // st.shard_clips)
    old = cached_starts(d, st, range(shards), clips)
    if old is None:
        raise SystemExit("train: the latent cache in %s holds no stream starts yet (tools/train.sh "
                         "--stage dit builds it)" % d)
    new = cached_starts(d, st, range(shards - 1, -1, -1), clips)
    print("train[heldout]: DiT step %d; rendering %d clips the cache does not hold (from index %d)"
          % (step, len(old[2]), st.dataset_clips), flush=True)
    u_lat, u_obj, u_caps = render_unseen(root, tc, cfg, len(old[2]))
    n = min(len(old[2]), len(new[2]), u_lat.shape[0])
    a, r, b = (first_chunk_loss(t5, dit, cfg, tok, st, tc.seed, lat[:n], obj[:n], caps[:n])
               for lat, obj, caps in (old, new, (u_lat, u_obj, u_caps)))
    print("first chunk of %d stream starts each: loss on the cache's first shards / its last "
          "shards / unseen clips (unseen / first, unseen / last)" % n)
    print("sigma   all cells                                object cells")
    for s in a:
        row = []
        for j in (0, 1):
            row.append("%.4f / %.4f / %.4f (%.2f, %.2f)" % (
                a[s][j], r[s][j], b[s][j], b[s][j] / max(a[s][j], 1e-12),
                b[s][j] / max(r[s][j], 1e-12)))
        print("%5.2f   %s   %s" % (s, row[0], row[1]))
    return {"step": step, "clips": n, "seen": a, "seen_last": r, "unseen": b}
