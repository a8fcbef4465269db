"""Training data from the synthetic world (tools/world): pixel clips for the autoencoder,
captions for the tokenizer, and the latent-clip cache of the DiT stage.

Every clip is a pure function of (seed, purpose, index): the world is rendered on the fly from
numpy Generators seeded that way, so a resumed run sees exactly the batches an uninterrupted
one would have seen.

Prompt switches for the DiT are aligned to chunk boundaries (a multiple of CHUNK_VIDEO video
frames): the engine applies a new prompt from the next chunk, so a chunk's caption is the one
its frames show. Chunks before the switch are captioned with the "before" description, the rest
with the "after" one.
"""
import dataclasses
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from world import Scene, clip_captions, render_clip
from world.vocab import PALETTE

from . import config as C
from . import state

# Purposes (the second word of every seed sequence) keep the streams of the stages apart.
AE_DATA, TOK_DATA, DIT_DATA, EVAL_DATA = 1, 2, 3, 4


def clip_rng(seed, purpose, index):
    return np.random.default_rng([int(seed), int(purpose), int(index)])


def render_ae_clip(rng, frames, switch_fraction, size=(C.HEIGHT, C.WIDTH)):
    """uint8 [frames, H, W, 3]: a random scene, started 0..24 frames in, maybe with a switch,
    maybe mirrored, sometimes a still image (what an anchor image looks like to the encoder)."""
    offset = int(rng.integers(0, 25))
    n = frames + offset
    scene = Scene.sample(rng, aspect=size[0] / size[1])
    switch = None
    if rng.random() < switch_fraction:
        switch = scene.sample_switch(rng, n)
    fr, _ = render_clip(scene, n, size=size, switch=switch)
    fr = fr[offset:]
    if rng.random() < 0.5:
        fr = fr[:, :, ::-1]
    if rng.random() < 0.05:
        fr = np.repeat(fr[:1], frames, axis=0)
    return np.ascontiguousarray(fr)


def ae_batch(seed, step, batch, frames, switch_fraction):
    """float32 [batch, frames, 3, H, W] in [0, 1] for one autoencoder step."""
    clips = [render_ae_clip(clip_rng(seed, AE_DATA, step * 1000 + j), frames, switch_fraction)
             for j in range(batch)]
    x = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float().div_(255.0)
    return x


def make_dit_clip(seed, index, n_video, switch_fraction, phrasings, purpose=DIT_DATA,
                  late_start=0.0, max_start=0, mirror=False):
    """(frames uint8 [n_video, H, W, 3], records, captions {"before", "after", "switch_chunk"}).

    A switch, when there is one, happens at the start of a chunk (1 .. n_chunks-1). With
    probability late_start the clip begins 1..max_start frames after the scene's start, so the
    model also learns scenes that have been running for a while (an endless stream is mostly
    that); mirror flips half of the clips left-right (no caption names a side)."""
    rng = clip_rng(seed, purpose, index)
    scene = Scene.sample(rng)
    start = int(rng.integers(1, max_start + 1)) if max_start > 0 and rng.random() < late_start else 0
    n_total = start + n_video
    switch = None
    n_chunks = n_video // C.CHUNK_VIDEO
    if rng.random() < switch_fraction and n_chunks > 1:
        switch = scene.sample_switch(rng, n_video)
        chunk = int(np.clip(round(switch.frame / C.CHUNK_VIDEO), 1, n_chunks - 1))
        switch = dataclasses.replace(switch, frame=start + chunk * C.CHUNK_VIDEO)
    frames, records = render_clip(scene, n_total, size=(C.HEIGHT, C.WIDTH), switch=switch)
    frames, records = frames[start:], records[start:]
    if mirror and rng.random() < 0.5:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
    caps = clip_captions(records, switch.frame - start if switch else -1, rng, phrasings)
    return frames, records, {"before": caps["before"], "after": caps["after"],
                             "switch_chunk": (switch.frame - start) // C.CHUNK_VIDEO if switch else -1,
                             "start": start}


def tokenizer_sentences(seed, n):
    """n captions of the grammar (with their alternative phrasings), deterministic."""
    out = []
    i = 0
    while len(out) < n:
        _, _, caps = make_dit_clip(seed, i, 4 * C.CHUNK_VIDEO, 0.5, 4, purpose=TOK_DATA)
        out.extend(caps["before"])
        out.extend(caps["after"] or [])
        i += 1
    return out[:n]


# ---- where the objects are ----------------------------------------------------------------

_PALETTE = torch.tensor(list(PALETTE.values()), dtype=torch.float32) / 255.0   # [P, 3]


def object_mask(x, tol=0.1):
    """1 on the pixels of objects and 2 pixels around them (their dark rims), else 0.

    x [B, T, 3, H, W] in [0, 1] -> [B, T, 1, H, W]. A pixel is an object's when every channel is
    within tol of a palette colour: the palette stands ~50 levels off every background, ground
    and occluder colour by design (tools/world/vocab.py), so nothing else matches."""
    d = (x.unsqueeze(2) - _PALETTE.view(1, 1, -1, 3, 1, 1)).abs().amax(dim=3)   # [B, T, P, H, W]
    m = (d.amin(dim=2) < tol).float()                                            # [B, T, H, W]
    B, T, H, W = m.shape
    return F.max_pool2d(m.view(B * T, 1, H, W), 5, 1, 2).view(B, T, 1, H, W)


def latent_object_mask(frames_u8):
    """uint8 [N, T, H, W, 3] -> bool [N, T/4, 1, H/8, W/8]: the latent cells whose 4 frames x
    8x8 pixels hold some object pixel (or its rim). The DiT stage weighs its loss there."""
    x = torch.from_numpy(frames_u8).permute(0, 1, 4, 2, 3).float().div_(255.0)
    m = object_mask(x)                                               # [N, T, 1, H, W]
    N, T, _, H, W = m.shape
    m = F.max_pool3d(m.view(N, 1, T, H, W), (C.T_DOWN, C.S_DOWN, C.S_DOWN))
    return (m.view(N, 1, T // C.T_DOWN, H // C.S_DOWN, W // C.S_DOWN).transpose(1, 2) > 0)


# ---- the latent cache of the DiT stage --------------------------------------------------------

def world_version():
    """SHA-256 of tools/world's sources: recorded with every cache shard, so that a cache made
    by another version of the world can be told apart (the clips depend on its code)."""
    import hashlib
    import world
    root = os.path.dirname(os.path.abspath(world.__file__))
    h = hashlib.sha256()
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def shard_path(cache_dir, k):
    return os.path.join(cache_dir, "shard_%04d.pt" % k)


@torch.no_grad()
def encode_clips(vae, frames_u8, bf16=False):
    """uint8 [N, T, H, W, 3] -> float16 latents [N, T/4, C, h, w]. bf16 autocast halves the
    time of the latent cache; the encoder was trained under the same autocast."""
    x = torch.from_numpy(frames_u8).permute(0, 1, 4, 2, 3).float().div_(255.0)
    with state.autocast(bf16):
        z = vae.encode(x)
    return z.float().half()


def build_shard(vae, cache_dir, k, st, seed):
    """Renders, encodes and stores clips [k*shard, (k+1)*shard) unless already there."""
    path = shard_path(cache_dir, k)
    if os.path.exists(path):
        return False
    n_video = st.clip_latents * C.T_DOWN
    lats, objs, caps, pending = [], [], [], []
    first = k * st.shard_clips
    for i in range(first, first + st.shard_clips):
        fr, _, cp = make_dit_clip(seed, i, n_video, st.switch_fraction, st.phrasings,
                                  late_start=st.late_start, max_start=st.max_start, mirror=True)
        caps.append(cp)
        pending.append(fr)
        if len(pending) == 5 or i == first + st.shard_clips - 1:
            lats.append(encode_clips(vae, np.stack(pending), bf16=True))
            objs.append(latent_object_mask(np.stack(pending)))
            pending = []
    obj = {"latents": torch.cat(lats), "objects": torch.cat(objs), "captions": json.dumps(caps),
           "first": first,
           "world": world_version()}
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return True


def load_shard(cache_dir, k):
    """(latents [n, F, C, h, w] float16, objects [n, F, 1, h, w] bool, captions) of shard k."""
    d = torch.load(shard_path(cache_dir, k))
    return d["latents"], d["objects"], json.loads(d["captions"])


def load_cache(cache_dir, n_shards):
    """(latents [N, F, C, h, w] float16, objects [N, F, 1, h, w] bool, captions)."""
    lats, objs, caps = [], [], []
    for k in range(n_shards):
        lat, obj, cap = load_shard(cache_dir, k)
        lats.append(lat)
        objs.append(obj)
        caps.extend(cap)
    return torch.cat(lats), torch.cat(objs), caps
