"""Writes flipbook's own golden test vectors (tests/data/golden/) from the reference.

    /usr/bin/python3 tools/make_golden.py            # (re)write tests/data/golden/*
    /usr/bin/python3 tools/make_golden.py --check    # regenerate in a temp dir, compare
    /usr/bin/python3 tools/make_golden.py --only guidance   # one case, on the committed tiny model

Everything is deterministic: fixed seeds, single-threaded torch, a SentencePiece model trained
single-threaded on fixed captions. tests/data/golden/README.md documents every tensor; keep it
in step with this script. All flipbook-own cases use "window" positions and the counter RNG, so
the engine can reproduce them from (seed, chunk) alone; the noise is stored anyway so that a
failing test can tell an RNG bug from a model bug.
"""
import argparse
import copy
import json
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch  # noqa: E402

from flipbook_ref import ops, rng, st  # noqa: E402
from flipbook_ref.config import DiTConfig, ModelConfig, SamplerConfig, StreamConfig, \
    TextEncoderConfig, VAEConfig  # noqa: E402
from flipbook_ref.dit import CachedAttender, token_angles  # noqa: E402
from flipbook_ref.export import Model, load_model, save_model  # noqa: E402
from flipbook_ref.sampler import FlowMatchSchedule, Stream  # noqa: E402
from flipbook_ref.taehv import StreamDecoder, StreamEncoder  # noqa: E402
from flipbook_ref.t5 import relative_bucket  # noqa: E402
from flipbook_ref.tokenizer import train_tiny  # noqa: E402

OUT_DEFAULT = os.path.join(HERE, "..", "tests", "data", "golden")
SEED_WEIGHTS = 20250601
SEED_INPUTS = 20250602
STREAM_SEED = 20250603
SEED_B = 77                      # the new seed of the controls case

# Captions the tiny tokenizer is trained on (the default model's synthetic world, in words).
CAPTIONS = [
    "a red ball rolls across a wooden floor",
    "two blue cubes slide on ice at sunset",
    "a green triangle spins slowly in the dark",
    "the camera pans over a snowy mountain village",
    "rain falls on a quiet city street at night",
    "a yellow ball bounces off a white wall",
    "three small red cubes fall into a blue box",
    "a purple sphere floats above calm water",
    "the sun rises behind green hills and a red barn",
    "a black cat walks past an orange door",
    "waves break on a sandy beach under a grey sky",
    "a white bird flies over a field of yellow flowers",
    "the red ball stops and a blue cube slides in",
    "night falls and the street lights turn on",
    "a small boat drifts on a lake at dawn",
    "snow covers the roofs of the quiet village",
    "a green cube and a red sphere orbit each other",
    "the camera zooms in on a spinning orange top",
    "leaves blow across a stone path in autumn",
    "a blue ball rolls down a long wooden ramp",
    "Two Red Balls at Sunset, slowly rolling!",
    "A bright light flashes; the cubes scatter.",
    "fog drifts over a dark forest in the morning",
    "a train crosses a bridge over a deep river",
]
PROMPT_A = "a red ball rolls across a wooden floor"
PROMPT_B = "Two blue cubes slide on ice at sunset!"
PROMPTS = [
    PROMPT_A,
    PROMPT_B,
    "  the camera   pans &amp; a caf\u00e9 ",
    "a green triangle spins slowly in the dark while rain falls on a quiet city street at night "
    "and the camera pans over a snowy mountain village",
]


def tiny_config(vocab):
    return ModelConfig(
        dit=DiTConfig(patch_size=[1, 2, 2], in_dim=4, out_dim=4, dim=48, ffn_dim=96, freq_dim=64,
                      text_dim=32, text_len=24, num_heads=3, num_layers=2, qk_norm=True,
                      cross_attn_norm=True, eps=1e-6),
        text_encoder=TextEncoderConfig(vocab=vocab, dim=32, dim_attn=32, dim_ffn=64, num_heads=4,
                                       num_layers=2, num_buckets=16, max_distance=32,
                                       shared_pos=False, eps=1e-6, max_tokens=24),
        vae=VAEConfig(latent_channels=4, image_channels=3, decoder_channels=[16, 12, 8, 8],
                      encoder_channels=8, decoder_time_upscale=[False, True, True],
                      decoder_space_upscale=[True, True, True],
                      encoder_time_downscale=[True, True, False], frames_to_trim=3, patch_size=1),
        sampler=SamplerConfig(num_train_timesteps=1000, shift=5.0, steps=[1000, 750, 500, 250],
                              warp=True, context_t=0),
        stream=StreamConfig(chunk_frames=2, anchor_frames=2, window_frames=3, positions="window",
                            latent_height=8, latent_width=8, fps=16),
    ).validate()


def init_random(model, gen):
    """Random weights that keep every activation of order 1 (the real init would zero the head)."""
    def n(shape, std=1.0):
        return torch.randn(shape, generator=gen) * std
    for prefix, m in model.modules().items():
        for name, p in m.state_dict().items():
            full = prefix + name
            shape = tuple(p.shape)
            if name.endswith("modulation"):
                w = n(shape, 0.1)
            elif "norm" in name and p.dim() == 1 and name.endswith("weight"):
                w = 1 + n(shape, 0.1)
            elif name.endswith("bias"):
                w = n(shape, 0.05)
                if full == "vae.decoder.22.bias":
                    w = w + 0.5                       # decoder output centred in [0, 1]
            elif "embedding" in name and p.dim() == 2 and prefix == "text_encoder.":
                w = n(shape)
            elif p.dim() >= 2:
                fan_in = int(np.prod(shape[1:]))
                # The decoder's last conv is damped so few pixels clip; the encoder's last conv
                # is boosted so its latents have roughly unit scale.
                gain = {"vae.decoder.22.weight": 0.5, "vae.encoder.17.weight": 8.0}.get(full, 1.0)
                w = n(shape) * gain / fan_in ** 0.5
            else:
                w = n(shape, 0.1)
            p.copy_(w)


class Dump:
    def __init__(self, case, description):
        self.t = {}
        self.meta = {"case": case, "description": description}

    def __setitem__(self, k, v):
        if isinstance(v, torch.Tensor):
            v = v.detach().contiguous()
            if v.dtype == torch.float64 and not k.endswith(".f64"):
                v = v.float()
        self.t[k] = v

    def save(self, path):
        st.save(path, self.t, self.meta)


def lat(x):
    """[1, C, F, H, W] (DiT layout, batch 1) -> [F, C, H, W] (the RNG / stream layout)."""
    return x[0].permute(1, 0, 2, 3)


def tok(x):
    """[1, F, S, ...] -> [F, S, ...]."""
    return x[0]


def make_model(out):
    tok_bytes = train_tiny(CAPTIONS, vocab_size=160)
    from flipbook_ref.tokenizer import Tokenizer
    vocab = Tokenizer(tok_bytes).vocab_size
    cfg = tiny_config(vocab)
    model = Model(cfg, "golden-tiny", tok_bytes)
    gen = torch.Generator().manual_seed(SEED_WEIGHTS)
    with torch.no_grad():
        init_random(model, gen)
    path = os.path.join(out, "tiny_model.safetensors")
    save_model(path, model)
    return load_model(path)          # exactly what the engine will load


def case_ops(out, model):
    g = torch.Generator().manual_seed(SEED_INPUTS)
    d = Dump("ops", "per-op cases; see README.md")
    x = torch.randn(5, 48, generator=g) * 2 + 0.3
    w = 1 + 0.1 * torch.randn(48, generator=g)
    b = 0.1 * torch.randn(48, generator=g)
    d["input.rmsnorm.x"], d["input.rmsnorm.weight"] = x, w
    d["output.rmsnorm"] = ops.rms_norm(x, w, 1e-6)
    d["input.layernorm.x"], d["input.layernorm.weight"], d["input.layernorm.bias"] = x, w, b
    d["output.layernorm.plain"] = ops.layer_norm(x, 1e-6)
    d["output.layernorm.affine"] = ops.layer_norm(x, 1e-6, w, b)
    gx = torch.linspace(-6, 6, 97)
    d["input.gelu.x"] = gx
    d["output.gelu"] = ops.gelu_tanh(gx)
    d["output.silu"] = torch.nn.functional.silu(gx)
    ts = torch.tensor([1000.0, 937.5, 833.3333129882812, 625.0, 0.0, 1.5])
    d["input.sinusoid.t"] = ts
    d["output.sinusoid.d64"] = ops.sinusoid(ts, 64)
    d["output.sinusoid.d256"] = ops.sinusoid(ts, 256)
    # RoPE: 7 frames (steady state: 2 anchors + 3 window + 2 chunk) on the 4x4 grid, 3 heads x 16.
    rx = torch.randn(7, 16, 3, 16, generator=g)
    d["input.rope.x"] = rx
    for tag, pos in (("window", list(range(7))), ("absolute", [0, 1, 7, 8, 9, 10, 11])):
        ang = token_angles(16, pos, 4, 4)
        d["input.rope.%s.frame_pos" % tag] = torch.tensor(pos, dtype=torch.int64)
        d["inter.rope.%s.angles.f64" % tag] = ang
        d["output.rope.%s" % tag] = ops.rope_apply(rx, ang)
    q = torch.randn(1, 32, 3, 16, generator=g)
    k = torch.randn(1, 112, 3, 16, generator=g)
    v = torch.randn(1, 112, 3, 16, generator=g)
    d["input.attention.q"], d["input.attention.k"], d["input.attention.v"] = q[0], k[0], v[0]
    d["output.attention"] = ops.attention(q, k, v)[0]
    # Counter RNG.
    mix_in = [0, 1, 0x9E3779B97F4A7C15, (1 << 63), (1 << 64) - 1]
    mix_out = [rng.splitmix64(v_) for v_ in mix_in]
    as_i64 = lambda xs: np.array(xs, dtype=np.uint64).view(np.int64)
    d["input.rng.splitmix64"] = as_i64(mix_in)
    d["output.rng.splitmix64"] = as_i64(mix_out)
    cases = [(42, 0, 0, 512), ((1 << 64) - 1, 1000, 3, 7), (0, 5, 1, 1), (STREAM_SEED, 2, 2, 512)]
    d["input.rng.cases"] = as_i64([c_[0] for c_ in cases] + [c_[1] for c_ in cases]
                                  + [c_[2] for c_ in cases] + [c_[3] for c_ in cases]).reshape(4, len(cases))
    d["output.rng.keys"] = as_i64([rng.key(s_, c_, k_) for s_, c_, k_, _ in cases])
    for i, (s_, c_, k_, n_) in enumerate(cases):
        d["output.rng.case%d" % i] = rng.normal(s_, c_, k_, n_)
    # Schedules: the tiny model's (shift 5, warp) and a no-warp one (CausVid: shift 8, 1000/757/522).
    sch = FlowMatchSchedule(model.cfg.sampler)
    d["output.schedule.sigmas"], d["output.schedule.timesteps"] = sch.sigmas, sch.timesteps
    d["output.schedule.steps"], d["output.schedule.step_sigmas"] = sch.steps, sch.step_sigmas
    sch2 = FlowMatchSchedule(SamplerConfig(shift=8.0, steps=[1000, 757, 522], warp=False))
    d["output.schedule_nowarp.steps"], d["output.schedule_nowarp.step_sigmas"] = sch2.steps, sch2.step_sigmas
    d.meta["eps"] = "1e-06"
    d.meta["rng_cases"] = json.dumps([[str(s_), c_, k_, n_] for s_, c_, k_, n_ in cases])
    d.save(os.path.join(out, "ops.safetensors"))


class FixedPast:
    """Stands in for a KVCache: fixed past keys/values with given positions."""

    def __init__(self, k, v, past_pos, new_pos):
        self.k, self.v, self.pp, self.np = k, v, past_pos, new_pos

    def positions(self, frame_index, n, anchors_only=False):
        return self.pp, self.np

    def past(self, layer, anchors_only=False):
        return self.k, self.v


@torch.no_grad()
def case_block(out, model, ctx_a):
    g = torch.Generator().manual_seed(SEED_INPUTS + 1)
    dit = model.dit
    d = Dump("dit_block", "tiny_model block 0 on a 2-frame chunk over 5 past frames; see README.md")
    x = torch.randn(1, 2, 16, 48, generator=g)
    e0 = 0.3 * torch.randn(1, 2, 6, 48, generator=g)           # different per frame
    pk = torch.randn(1, 5, 16, 3, 16, generator=g)
    pv = torch.randn(1, 5, 16, 3, 16, generator=g)
    ctx_emb = dit.embed_text(ctx_a)
    kv = dit.blocks[0].cross_attn.kv(ctx_emb)
    fake = FixedPast(pk, pv, list(range(5)), [5, 6])
    att = CachedAttender(dit, 4, 4, fake, 0, 2, stage=False, anchors_only=False)
    cap = {}
    y = dit.blocks[0](x, e0, kv, att, 0, cap)
    d["input.hidden"], d["input.e0"], d["input.context_emb"] = tok(x), tok(e0), ctx_emb[0]
    d["input.past_k"], d["input.past_v"] = tok(pk), tok(pv)
    d["input.past_pos"] = torch.arange(5)
    d["input.new_pos"] = torch.tensor([5, 6])
    d["inter.cross_k"], d["inter.cross_v"] = kv[0][0], kv[1][0]
    for n in ("self_attn_in", "q_normed", "k_normed", "v", "q_roped", "k_roped", "self_attn_out",
              "norm3_out", "cross_attn_out", "ffn_in", "ffn_out"):
        d["inter." + n] = tok(cap[n])
    d["output.hidden"] = tok(y)
    d.save(os.path.join(out, "dit_block.safetensors"))


def new_stream(model, ctx, seed):
    return Stream(model.dit, model.cfg, ctx, seeds=[seed], record=True)


def dump_steps(d, pre, rec, steps=True):
    if steps:
        for k, stp in enumerate(rec["steps"]):
            d["%s.s%d.x_in" % (pre, k)] = lat(stp["x_in"])
            d["%s.s%d.flow" % (pre, k)] = lat(stp["flow"])
            d["%s.s%d.x0" % (pre, k)] = lat(stp["x0"])
        d["%s.ctx.flow" % pre] = lat(rec["ctx_flow"])
    past_pos, new_pos = rec["positions"]
    d["%s.past_frames" % pre] = torch.tensor(rec["past_frames"], dtype=torch.int64)
    d["%s.positions" % pre] = torch.tensor(past_pos + new_pos, dtype=torch.int64)


def dump_noise(d, seed, chunk, shape):
    for k in range(4):
        d["input.c%d.noise.d%d" % (chunk, k)] = rng.chunk_noise(seed, chunk, k, shape)


def dump_cache(d, pre, cache, layers):
    for l in range(layers):
        k, v, idx = cache.snapshot(l)
        d["%s.kv.l%d.k" % (pre, l)] = tok(k)
        d["%s.kv.l%d.v" % (pre, l)] = tok(v)
    d["%s.kv.frames" % pre] = torch.tensor(cache.a_idx + cache.w_idx, dtype=torch.int64)
    d["%s.kv.n_anchor" % pre] = torch.tensor([cache.n_anchor], dtype=torch.int64)


def stream_meta(d, model, seed, extra=None):
    d.meta["config"] = model.cfg.to_json()
    d.meta["seed"] = str(seed)
    if extra:
        d.meta.update(extra)


@torch.no_grad()
def case_chunk(out, model, ctx_a):
    d = Dump("dit_chunk", "first chunk of a stream (prompt A, counter RNG); see README.md")
    s = new_stream(model, ctx_a, STREAM_SEED)
    shape = s.noise_shape()
    dump_noise(d, STREAM_SEED, 0, shape)
    d["input.context"] = ctx_a[0]
    cap = {}
    x = s.draw(0)
    model.dit.forward_cached(x, s.sched.steps[0], s.cross, s.cache, 0, cap=cap)
    d["inter.s0.sinusoid"] = cap["sinusoid"][0, 0]
    d["inter.s0.e"] = cap["e"][0, 0]
    d["inter.s0.e0"] = cap["e0"][0, 0]
    d["inter.context_emb"] = model.dit.embed_text(s.context)[0]
    d["inter.s0.patch_tokens"] = tok(cap["patch_tokens"])
    for n in ("self_attn_in", "q_normed", "k_normed", "q_roped", "k_roped", "self_attn_out",
              "norm3_out", "cross_attn_out", "ffn_in", "ffn_out", "out"):
        d["inter.s0.block0." + n] = tok(cap["block0." + n])
    d["inter.s0.block1.out"] = tok(cap["block1.out"])
    d["inter.s0.head_out"] = tok(cap["head_out"])
    x0 = s.next_chunk()
    dump_steps(d, "inter.c0", s.trace[0])
    dump_cache(d, "output", s.cache, len(model.dit.blocks))
    d["output.latents"] = lat(x0)
    stream_meta(d, model, STREAM_SEED, {"prompt": PROMPT_A})
    d.save(os.path.join(out, "dit_chunk.safetensors"))


@torch.no_grad()
def case_stream(out, model, ctx_a, n_chunks=5):
    d = Dump("stream", "%d chunks, window positions, anchors 2 + window 3, cache rolling; see README.md" % n_chunks)
    s = new_stream(model, ctx_a, STREAM_SEED)
    d["input.context"] = ctx_a[0]
    lats = []
    for c in range(n_chunks):
        dump_noise(d, STREAM_SEED, c, s.noise_shape())
        lats.append(s.next_chunk())
        dump_steps(d, "inter.c%d" % c, s.trace[-1])
        if c == 2:
            dump_cache(d, "inter.c2", s.cache, 1)
    dump_cache(d, "output", s.cache, len(model.dit.blocks))
    d["output.latents"] = lat(torch.cat(lats, 2))
    stream_meta(d, model, STREAM_SEED, {"prompt": PROMPT_A, "chunks": str(n_chunks)})
    d.save(os.path.join(out, "stream.safetensors"))
    return torch.cat(lats, 2)


@torch.no_grad()
def case_recache(out, model, ctx_a, ctx_b):
    d = Dump("switch_recache", "prompt A for chunks 0-2, switch to B with recache, chunks 3-4; see README.md")
    s = new_stream(model, ctx_a, STREAM_SEED)
    d["input.context_a"], d["input.context_b"] = ctx_a[0], ctx_b[0]
    lats = [s.next_chunk() for _ in range(3)]
    L = len(model.dit.blocks)
    dump_cache(d, "inter.before", s.cache, L)
    rc = s.set_prompt(ctx_b, "recache")
    d["inter.recache.latents"] = lat(rc["latents"])
    d["inter.recache.frames"] = torch.tensor(rc["frames"], dtype=torch.int64)
    n_a = s.cache.n_anchor
    d["inter.recache.positions"] = torch.arange(n_a, n_a + len(rc["frames"]))
    d["inter.recache.flow"] = lat(rc["flow"])
    dump_cache(d, "inter.after", s.cache, L)
    for c in (3, 4):
        dump_noise(d, STREAM_SEED, c, s.noise_shape())
        lats.append(s.next_chunk())
        dump_steps(d, "inter.c%d" % c, s.trace[-1], steps=(c == 3))
    d["output.latents"] = lat(torch.cat(lats, 2))
    stream_meta(d, model, STREAM_SEED, {"prompt_a": PROMPT_A, "prompt_b": PROMPT_B, "switch_chunk": "3",
                                        "transition": "recache"})
    d.save(os.path.join(out, "switch_recache.safetensors"))


@torch.no_grad()
def case_blend(out, model, ctx_a, ctx_b, N=2):
    d = Dump("switch_blend", "prompt A for chunks 0-1, blend to B over %d chunks from chunk 2; see README.md" % N)
    s = new_stream(model, ctx_a, STREAM_SEED)
    d["input.context_a"], d["input.context_b"] = ctx_a[0], ctx_b[0]
    lats = [s.next_chunk() for _ in range(2)]
    s.set_prompt(ctx_b, "blend", blend_chunks=N)
    for c in (2, 3, 4):
        lats.append(s.next_chunk())
        rec = s.trace[-1]
        d["inter.c%d.context" % c] = rec["context"][0]
        dump_steps(d, "inter.c%d" % c, rec, steps=(c == 2))
    d["output.latents"] = lat(torch.cat(lats, 2))
    stream_meta(d, model, STREAM_SEED, {"prompt_a": PROMPT_A, "prompt_b": PROMPT_B, "switch_chunk": "2",
                                        "transition": "blend", "blend_chunks": str(N)})
    d.save(os.path.join(out, "switch_blend.safetensors"))


@torch.no_grad()
def case_controls(out, model, ctx_a):
    d = Dump("controls", "pin after chunk 2, new seed from chunk 3, reset after chunk 4; see README.md")
    s = new_stream(model, ctx_a, STREAM_SEED)
    lats = [s.next_chunk() for _ in range(3)]
    s.pin()
    dump_cache(d, "inter.pinned", s.cache, 1)
    s.set_seed([SEED_B])
    lats += [s.next_chunk() for _ in range(2)]
    d["inter.c3.past_frames"] = torch.tensor(s.trace[3]["past_frames"], dtype=torch.int64)
    d["inter.c4.past_frames"] = torch.tensor(s.trace[4]["past_frames"], dtype=torch.int64)
    s.reset()
    lats.append(s.next_chunk())
    d["output.latents"] = lat(torch.cat(lats, 2))
    stream_meta(d, model, STREAM_SEED, {"prompt": PROMPT_A, "seed_after_chunk2": str(SEED_B)})
    d.save(os.path.join(out, "controls.safetensors"))


@torch.no_grad()
def case_guidance(out, model, ctx_a, guidance=3.0, n_chunks=2):
    """The tiny model with sampler.guidance 3: every denoising step is flow_u + 3 (flow_c -
    flow_u), flow_u under the empty prompt's conditioning; the context pass is conditional."""
    d = Dump("guidance", "classifier-free guidance %g, prompt A, %d chunks; see README.md"
             % (guidance, n_chunks))
    cfg = copy.deepcopy(model.cfg)
    cfg.sampler.guidance = guidance
    cfg.validate()
    ids_u, ctx_u = model.encode_prompt("")
    s = Stream(model.dit, cfg, ctx_a, seeds=[STREAM_SEED], record=True, uncond=ctx_u)
    d["input.context"] = ctx_a[0]
    d["input.uncond.ids"] = torch.tensor(ids_u, dtype=torch.int64)
    d["input.uncond.context"] = ctx_u[0]
    lats = []
    for c in range(n_chunks):
        dump_noise(d, STREAM_SEED, c, s.noise_shape())
        lats.append(s.next_chunk())
        rec = s.trace[-1]
        dump_steps(d, "inter.c%d" % c, rec)
        for k, stp in enumerate(rec["steps"]):
            d["inter.c%d.s%d.flow_c" % (c, k)] = lat(stp["flow_c"])
            d["inter.c%d.s%d.flow_u" % (c, k)] = lat(stp["flow_u"])
    d["output.latents"] = lat(torch.cat(lats, 2))
    d.meta["config"] = cfg.to_json()
    d.meta["seed"] = str(STREAM_SEED)
    d.meta.update({"prompt": PROMPT_A, "chunks": str(n_chunks), "guidance": repr(guidance)})
    d.save(os.path.join(out, "guidance.safetensors"))


@torch.no_grad()
def case_text(out, model):
    d = Dump("text_encoder", "tokenizer + umT5 encoder of tiny_model; see README.md")
    enc = model.text_encoder
    pieces = []
    for i, p in enumerate(PROMPTS):
        ids = model.tokenize(p)
        pieces.append(model.tokenizer.pieces(p))
        d["input.p%d.ids" % i] = torch.tensor(ids, dtype=torch.int64)
        cap = {} if i == 0 else None
        h = enc(torch.tensor([ids]), cap=cap)
        d["output.p%d.hidden" % i] = h[0]
        if cap is not None:
            for n in ("block0.attn_out", "block0.ffn_out", "block0.out", "block1.out"):
                d["inter.p0." + n] = cap[n][0]
            d["inter.p0.block0.pos_bias"] = cap["block0.pos_bias"]
    # A padded batch: prompts 0 and 1 in one [2, 16] batch with a mask (pad id 0).
    L = model.cfg.text_encoder.max_tokens
    rows = [model.tokenize(PROMPTS[0]), model.tokenize(PROMPTS[1])]
    ids = torch.zeros(2, L, dtype=torch.int64)
    mask = torch.zeros(2, L, dtype=torch.int64)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    d["input.batch.ids"], d["input.batch.mask"] = ids, mask
    d["output.batch.hidden"] = enc(ids, mask)
    cfg = model.cfg.text_encoder
    d["output.bucket_of_rel"] = relative_bucket(torch.arange(-(L - 1), L), cfg.num_buckets, cfg.max_distance)
    d.meta["prompts"] = json.dumps(PROMPTS)
    d.meta["pieces"] = json.dumps(pieces, ensure_ascii=True)
    d.save(os.path.join(out, "text_encoder.safetensors"))


@torch.no_grad()
def case_decoder(out, model, latents):
    d = Dump("decoder", "TAEHV of tiny_model: streaming decode of the stream case's clip, and encode")
    vae = model.vae
    z = latents.permute(0, 2, 1, 3, 4)                        # [1, T, C, h, w]
    frames = StreamDecoder(vae).decode(z)[0]
    par = vae.decode(z)[0]
    assert (frames - par).abs().max() < 1e-5
    d["input.latents"] = z[0]
    d["output.frames_u8"] = torch.round(frames * 255).to(torch.uint8)
    d["output.frames_head"] = frames[:5]
    g = torch.Generator().manual_seed(SEED_INPUTS + 2)
    img = torch.rand(1, 5, 3, 32, 32, generator=g)
    d["input.enc.frames"] = img[0]
    d["output.enc.latents"] = StreamEncoder(vae).encode(img)[0]
    d.meta["config"] = json.dumps(model.cfg.to_dict()["vae"])
    d.save(os.path.join(out, "decoder.safetensors"))


def generate(out):
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    model = make_model(out)
    _, ctx_a = model.encode_prompt(PROMPT_A)
    _, ctx_b = model.encode_prompt(PROMPT_B)
    case_ops(out, model)
    case_block(out, model, ctx_a)
    case_chunk(out, model, ctx_a)
    latents = case_stream(out, model, ctx_a)
    case_recache(out, model, ctx_a, ctx_b)
    case_blend(out, model, ctx_a, ctx_b)
    case_controls(out, model, ctx_a)
    case_guidance(out, model, ctx_a)
    case_text(out, model)
    case_decoder(out, model, latents)


FILES = ["tiny_model", "ops", "dit_block", "dit_chunk", "stream", "switch_recache", "switch_blend",
         "controls", "guidance", "text_encoder", "decoder"]
# Cases --only can write alone, on the committed tiny_model.safetensors.
ONLY = {"guidance": case_guidance}


def generate_only(out, name):
    """Writes one case from the tiny model already in `out` (the other files stay untouched)."""
    torch.set_num_threads(1)
    model = load_model(os.path.join(out, "tiny_model.safetensors"))
    _, ctx_a = model.encode_prompt(PROMPT_A)
    ONLY[name](out, model, ctx_a)


def compare(ref_dir, new_dir, rtol=1e-5):
    """Same names, shapes, dtypes and metadata; floats within rtol of max|ref|; others exact."""
    bad = []
    for f in FILES:
        a, ma = st.load(os.path.join(ref_dir, f + ".safetensors"), as_torch=False)
        b, mb = st.load(os.path.join(new_dir, f + ".safetensors"), as_torch=False)
        if ma != mb:
            bad.append("%s: metadata differs" % f)
        if sorted(a) != sorted(b):
            bad.append("%s: tensor names differ" % f)
            continue
        worst = 0.0
        for k in a:
            x, y = a[k], b[k]
            if x.dtype != y.dtype or x.shape != y.shape:
                bad.append("%s %s: dtype/shape differ" % (f, k))
            elif x.dtype.kind == "f":
                scale = max(float(np.abs(x).max()) if x.size else 0.0, 1e-30)
                err = float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0
                worst = max(worst, err / scale)
                if err > rtol * max(scale, 1.0):
                    bad.append("%s %s: differs by %.3e" % (f, k, err))
            elif x.dtype == np.uint8 and k != "tokenizer.spm":
                if np.abs(x.astype(np.int16) - y).max() > 1:
                    bad.append("%s %s: u8 differs by more than 1" % (f, k))
            elif not np.array_equal(x, y):
                bad.append("%s %s: values differ" % (f, k))
        print("  %-16s %3d tensors, max rel diff %.2e" % (f, len(a), worst))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=OUT_DEFAULT)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with --out")
    ap.add_argument("--only", choices=sorted(ONLY),
                    help="write only this case, from the tiny model already in --out")
    a = ap.parse_args()
    if a.only and not a.check:
        generate_only(a.out, a.only)
        f = os.path.join(a.out, a.only + ".safetensors")
        print("make_golden: wrote %s, %d bytes" % (a.only + ".safetensors", os.path.getsize(f)))
        return 0
    if not a.check:
        generate(a.out)
        total = sum(os.path.getsize(os.path.join(a.out, f + ".safetensors")) for f in FILES)
        for f in FILES:
            print("  %-30s %9d bytes" % (f + ".safetensors", os.path.getsize(os.path.join(a.out, f + ".safetensors"))))
        print("make_golden: wrote %d files, %d bytes" % (len(FILES), total))
        return 0
    tmp = tempfile.mkdtemp(prefix="golden-")
    try:
        generate(tmp)
        bad = compare(a.out, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if bad:
        print("make_golden --check: %d differences" % len(bad))
        for b in bad[:40]:
            print("  " + b)
        return 1
    print("make_golden --check: the committed golden files are reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
