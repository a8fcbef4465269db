"""Self-checks of the reference (no golden files needed).

    /usr/bin/python3 -m flipbook_ref.selftest        (from tools/)

Each check prints one line; the exit status is the number of failures (0 = all passed).
The central check is train_equals_inference: the training forward (whole clip, teacher forcing)
must give the same flows as the chunk loop over the KV cache, in both position modes and for
anchor/window/chunk sizes that do and do not divide each other. That is what makes an endless
stream at inference look exactly like the clips the model was trained on.
"""
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

from . import rng, st
from .config import DiTConfig, ModelConfig, SamplerConfig, StreamConfig, TextEncoderConfig, VAEConfig
from .dit import WanDiT
from .export import Model, load_model, save_model
from .kvcache import ClipPlan, chunk_frames
from .sampler import Stream
from .taehv import TAEHV, StreamDecoder, StreamEncoder

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def tiny_dit(seed=0, **kw):
    cfg = DiTConfig(patch_size=[1, 2, 2], in_dim=4, out_dim=4, dim=32, ffn_dim=64, freq_dim=32,
                    text_dim=16, text_len=8, num_heads=2, num_layers=2)
    for k, v in kw.items():
        setattr(cfg, k, v)
    dit = WanDiT(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(np.prod(p.shape[1:])))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name and "weight" in name else 0.0))
    return dit.eval()


def model_cfg(dit, C, A, W, mode, H=4, Wd=4):
    return ModelConfig(dit=dit.cfg, text_encoder=TextEncoderConfig(dim=dit.cfg.text_dim),
                       vae=VAEConfig(latent_channels=dit.cfg.out_dim),
                       sampler=SamplerConfig(), stream=StreamConfig(
                           chunk_frames=C, anchor_frames=A, window_frames=W, positions=mode,
                           latent_height=H, latent_width=Wd)).validate()


def py_splitmix64(x):
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


@check
def rng_matches_scalar_definition():
    assert rng.splitmix64(0) == 0xE220A8397B1DCDAF          # the published first output
    for v in (1, 12345, (1 << 64) - 1, 1 << 63):
        assert rng.splitmix64(v) == py_splitmix64(v)
    for seed, chunk, draw, n in ((42, 0, 0, 9), ((1 << 64) - 1, 7, 3, 4)):
        k = py_splitmix64(seed) ^ py_splitmix64((chunk << 8) | draw)
        assert rng.key(seed, chunk, draw) == k
        got = rng.normal(seed, chunk, draw, n)
        for j in range((n + 1) // 2):
            r = py_splitmix64((k + j) & ((1 << 64) - 1))
            u1 = ((r >> 40) + 1) / 16777216.0
            u2 = ((r >> 16) & 0xFFFFFF) / 16777216.0
            rad = math.sqrt(-2.0 * math.log(u1))
            assert got[2 * j] == np.float32(rad * math.cos(2.0 * math.pi * u2))
            if 2 * j + 1 < n:
                assert got[2 * j + 1] == np.float32(rad * math.sin(2.0 * math.pi * u2))
    x = rng.normal(5, 1, 0, 100000)
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    assert not np.array_equal(rng.normal(5, 1, 0, 8), rng.normal(5, 1, 1, 8))


@check
def safetensors_roundtrip():
    t = {"a": torch.randn(3, 5), "b": torch.arange(7), "c": torch.randn(4).to(torch.bfloat16),
         "d": np.arange(5, dtype=np.uint8)}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        st.save(p, t, {"k": "v"})
        back, meta = st.load(p)
        raw = open(p, "rb").read()
    assert meta == {"k": "v"}
    assert (int.from_bytes(raw[:8], "little") % 8) == 0
    assert torch.equal(back["a"], t["a"]) and torch.equal(back["b"], t["b"])
    assert torch.equal(back["c"].float(), t["c"].float()) and back["d"].tolist() == [0, 1, 2, 3, 4]


def _run_stream(dit, cfg, ctx, n_chunks, seed=3):
    s = Stream(dit, cfg, ctx, seeds=[seed], record=True)
    lat = [s.next_chunk() for _ in range(n_chunks)]
    return s, torch.cat(lat, 2)


@check
def train_equals_inference():
    torch.manual_seed(0)
    cases = [(2, 2, 3, "window"), (2, 3, 2, "window"), (3, 3, 3, "absolute"), (2, 0, -1, "window"),
             (1, 1, 2, "absolute"), (2, 2, 0, "window")]
    for C, A, W, mode in cases:
        dit = tiny_dit(1)
        cfg = model_cfg(dit, C, A, W, mode)
        ctx = torch.randn(1, 5, dit.cfg.text_dim)
        n = 5
        s, clean = _run_stream(dit, cfg, ctx, n)
        plan = ClipPlan(n * C, C, A, W, mode)
        for k in (0, 2):
            x = torch.cat([tr["steps"][k]["x_in"] for tr in s.trace], 2)
            want = torch.cat([tr["steps"][k]["flow"] for tr in s.trace], 2)
            t = torch.full((1, n * C), float(s.sched.steps[k]))
            with torch.no_grad():
                got = dit.forward_train(x, t, ctx, plan, clean=clean, t_clean=0.0)
            err = (got - want).abs().max().item()
            assert err < 2e-5, "C=%d A=%d W=%d %s step %d: %.2e" % (C, A, W, mode, k, err)
        # The plan names the same frames the cache attended to.
        for c, tr in enumerate(s.trace):
            a, w, _ = chunk_frames(c, C, A, W)
            assert tr["past_frames"] == a + w, (C, A, W, c, tr["past_frames"], a + w)


@check
def window_positions_stay_bounded():
    dit = tiny_dit(2)
    C, A, W = 2, 2, 3
    s, _ = _run_stream(dit, model_cfg(dit, C, A, W, "window"), torch.randn(1, 3, 16), 12)
    top = max(max(tr["positions"][0] + tr["positions"][1]) for tr in s.trace)
    assert top == A + W + C - 1, top
    assert s.cache.n_anchor == A and s.cache.n_window == W
    assert s.cache.a_idx == [0, 1] and s.cache.w_idx == [21, 22, 23]


@check
def batch_equals_single_streams():
    dit = tiny_dit(3)
    cfg = model_cfg(dit, 2, 2, 2, "window")
    ctx = torch.randn(2, 4, 16)
    sb = Stream(dit, cfg, ctx, seeds=[11, 12])
    lb = torch.cat([sb.next_chunk() for _ in range(4)], 2)
    for b, seed in enumerate((11, 12)):
        s1 = Stream(dit, cfg, ctx[b:b + 1], seeds=[seed])
        l1 = torch.cat([s1.next_chunk() for _ in range(4)], 2)
        assert (l1[0] - lb[b]).abs().max() < 2e-5


@check
def training_backward():
    dit = tiny_dit(4).train()
    dit.rope_dtype = torch.float32
    C, n = 2, 4
    plan = ClipPlan(C * n, C, 2, 2, "window")
    x = torch.randn(2, 4, C * n, 4, 4)
    clean = torch.randn(2, 4, C * n, 4, 4)
    t = torch.rand(2, n).repeat_interleave(C, 1) * 1000          # one timestep per chunk
    ctx = torch.randn(2, 6, 16)
    for teacher in (True, False):
        dit.zero_grad()
        out = dit.forward_train(x, t, ctx, plan, clean=clean if teacher else None)
        assert out.shape == x.shape
        loss = (out - clean).pow(2).mean()
        loss.backward()
        for name, p in dit.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert dit.blocks[0].self_attn.q.weight.grad.abs().sum() > 0


@check
def training_reduces_loss():
    from .sampler import FlowMatchSchedule
    from .training import flow_matching_loss
    torch.manual_seed(0)
    dit = tiny_dit(7).train()
    dit.rope_dtype = torch.float32
    cfg = model_cfg(dit, 2, 2, 2, "window")
    sched = FlowMatchSchedule(cfg.sampler)
    clean = torch.randn(2, 4, 8, 4, 4)
    ctx = torch.randn(2, 5, 16)
    opt = torch.optim.Adam(dit.parameters(), lr=3e-3)
    losses = []
    for i in range(30):
        g = torch.Generator().manual_seed(i % 3)
        loss = flow_matching_loss(dit, clean, ctx, cfg, sched, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@check
def prompt_transitions():
    dit = tiny_dit(5)
    cfg = model_cfg(dit, 2, 2, 3, "window")
    a, b = torch.randn(1, 5, 16), torch.randn(1, 7, 16)
    # blend over one chunk == cut
    s1 = Stream(dit, cfg, a, seeds=[1])
    s2 = Stream(dit, cfg, a, seeds=[1])
    for s in (s1, s2):
        s.next_chunk()
        s.next_chunk()
    s1.set_prompt(b, "cut")
    s2.set_prompt(b, "blend", blend_chunks=1)
    assert torch.equal(s1.next_chunk(), s2.next_chunk())
    # blend over 3 chunks: a = 1/3, 2/3, then exactly the new context
    s3 = Stream(dit, cfg, a, seeds=[1], record=True)
    s3.next_chunk()
    s3.set_prompt(b, "blend", blend_chunks=3)
    for _ in range(4):
        s3.next_chunk()
    pa, pb = s3._pad(a), s3._pad(b)
    third = torch.tensor(1 / 3, dtype=torch.float32)
    assert torch.equal(s3.trace[1]["context"], pa + third * (pb - pa))
    assert torch.equal(s3.trace[3]["context"], pb) and torch.equal(s3.trace[4]["context"], pb)
    # recache: anchors untouched, window re-computed in place
    s4 = Stream(dit, cfg, a, seeds=[1])
    for _ in range(4):
        s4.next_chunk()
    ak = [t.clone() for t in s4.cache.ak]
    wk = [t.clone() for t in s4.cache.wk]
    idx = list(s4.cache.w_idx)
    s4.set_prompt(b, "recache")
    assert s4.cache.w_idx == idx
    assert all(torch.equal(x, y) for x, y in zip(ak, s4.cache.ak))
    # layer 0 K/V do not see the prompt: recomputed, they differ only by the rounding of a
    # product of another shape (BLAS kernels may sum in a shape-dependent order); layer 1's do
    assert (wk[0] - s4.cache.wk[0]).abs().max() < 1e-5
    assert (wk[1] - s4.cache.wk[1]).abs().max() > 1e-2
    s4.next_chunk()


@check
def pin_seed_reset():
    dit = tiny_dit(6)
    cfg = model_cfg(dit, 2, 2, 3, "window")
    ctx = torch.randn(1, 5, 16)
    s = Stream(dit, cfg, ctx, seeds=[9])
    for _ in range(3):
        s.next_chunk()
    last_k = s.cache.wk[0][:, -2:].clone()
    s.pin()
    assert s.cache.a_idx == [4, 5] and torch.equal(s.cache.ak[0], last_k)
    s.next_chunk()
    assert s.cache.a_idx == [4, 5]                          # locked: new frames go to the window
    s.reset()
    x0 = s.next_chunk()
    fresh = Stream(dit, cfg, ctx, seeds=[9])
    assert torch.equal(x0, fresh.next_chunk())


@check
def classifier_free_guidance():
    dit = tiny_dit(7)
    cfg = model_cfg(dit, 2, 2, 3, "window")
    ctx, null = torch.randn(1, 5, 16), torch.randn(1, 1, 16)
    plain = Stream(dit, cfg, ctx, seeds=[3])
    cfg.sampler.guidance = 3.0
    try:
        Stream(dit, cfg, ctx, seeds=[3])
        raise AssertionError("guidance without the empty prompt's context was accepted")
    except ValueError:
        pass
    # With the prompt as its own "unconditional" context the guided flow is the plain one.
    same = Stream(dit, cfg, ctx, seeds=[3], uncond=ctx)
    guided = Stream(dit, cfg, ctx, seeds=[3], uncond=null, record=True)
    for _ in range(3):
        x_plain, x_same, x_guided = plain.next_chunk(), same.next_chunk(), guided.next_chunk()
        assert (x_plain - x_same).abs().max() < 1e-5
    assert (x_plain - x_guided).abs().max() > 1e-3
    st = guided.trace[2]["steps"][1]
    assert torch.equal(st["flow"], st["flow_u"] + 3.0 * (st["flow_c"] - st["flow_u"]))
    # The unconditional pass reads the cache and never writes it.
    assert guided.cache.w_idx == plain.cache.w_idx


@check
def anchor_latents_equal_first_chunk():
    # Anchors set from latents go through the same t=0 pass as a first chunk's commit.
    dit = tiny_dit(8)
    cfg = model_cfg(dit, 2, 2, 3, "window")
    ctx = torch.randn(1, 5, 16)
    s1 = Stream(dit, cfg, ctx, seeds=[4])
    x0 = s1.next_chunk()
    s2 = Stream(dit, cfg, ctx, seeds=[5])
    for _ in range(3):
        s2.next_chunk()
    s2.set_anchor_latents(x0)
    assert s2.cache.a_idx == [0, 1] and s2.cache.n_window == 0 and s2.cache.anchors_locked
    for l in range(2):
        assert (s2.cache.ak[l] - s1.cache.ak[l]).abs().max() < 1e-6
        assert (s2.cache.av[l] - s1.cache.av[l]).abs().max() < 1e-6
    s2.next_chunk()
    assert s2.cache.a_idx == [0, 1] and s2.cache.w_idx == [6, 7]


@check
def taehv_parallel_equals_streaming():
    for p in (1, 2):
        cfg = VAEConfig(latent_channels=4, decoder_channels=[8, 8, 6, 4], encoder_channels=6, patch_size=p)
        vae = TAEHV(cfg).eval()
        g = torch.Generator().manual_seed(p)
        with torch.no_grad():
            for prm in vae.parameters():
                prm.copy_(torch.randn(prm.shape, generator=g) / math.sqrt(max(1, np.prod(prm.shape[1:]))))
            z = torch.randn(2, 3, 4, 4, 4, generator=g)
            a, b = vae.decode(z), StreamDecoder(vae).decode(z)
            assert a.shape == (2, 4 * 3 - 3, 3, 32 * p, 32 * p), a.shape
            assert (a - b).abs().max() < 1e-5
            frames = torch.rand(2, 6, 3, 16 * p, 16 * p, generator=g)
            e1, e2 = vae.encode(frames), StreamEncoder(vae).encode(frames)
            assert e1.shape == (2, 2, 4, 2, 2) and (e1 - e2).abs().max() < 1e-5


@check
def taehv_warm_start():
    """warm_start: decoding [z0, z1, ...] is decoding [z0, z0, z1, ...] without the first
    latent's frames; encoding [f0, f1, ...] is encoding [f0 x t_down, f0, f1, ...] without the
    first latent; streaming and parallel agree."""
    import dataclasses
    cfg = VAEConfig(latent_channels=4, decoder_channels=[8, 8, 6, 4], encoder_channels=6)
    vae = TAEHV(cfg).eval()
    warm = TAEHV(dataclasses.replace(cfg, warm_start=True)).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for prm in vae.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) / math.sqrt(max(1, np.prod(prm.shape[1:]))))
        warm.load_state_dict(vae.state_dict())
        z = torch.randn(2, 3, 4, 4, 4, generator=g)
        want = vae.decode(torch.cat([z[:, :1], z], 1))[:, 4:]
        a, b = warm.decode(z), StreamDecoder(warm).decode(z)
        assert a.shape == vae.decode(z).shape and (a - want).abs().max() < 1e-6
        assert (b - want).abs().max() < 1e-5 and (a - vae.decode(z)).abs().max() > 1e-3
        frames = torch.rand(2, 6, 3, 16, 16, generator=g)
        want = vae.encode(torch.cat([frames[:, :1].expand(-1, 4, -1, -1, -1), frames], 1))[:, 1:]
        e1, e2 = warm.encode(frames), StreamEncoder(warm).encode(frames)
        assert e1.shape == (2, 2, 4, 2, 2) and (e1 - want).abs().max() < 1e-6
        assert (e2 - want).abs().max() < 1e-5
    d = ModelConfig(vae=dataclasses.replace(cfg, warm_start=True)).to_dict()
    assert d["vae"]["warm_start"] is True and "warm_start" not in ModelConfig().to_dict()["vae"]
    try:
        VAEConfig(warm_start=1).validate()
        assert False, "a non-boolean warm_start is refused"
    except ValueError as e:
        assert "warm_start" in str(e)


@check
def model_file_roundtrip():
    from .tokenizer import train_tiny, Tokenizer
    tok = train_tiny(["a red ball", "two blue cubes", "the camera pans over a village"] * 4, 40)
    vocab = Tokenizer(tok).vocab_size
    cfg = ModelConfig(dit=DiTConfig(in_dim=4, out_dim=4, dim=24, ffn_dim=32, freq_dim=16, text_dim=16,
                                    text_len=8, num_heads=2, num_layers=1),
                      text_encoder=TextEncoderConfig(vocab=vocab, dim=16, dim_attn=16, dim_ffn=32,
                                                     num_heads=2, num_layers=1, max_tokens=8),
                      vae=VAEConfig(latent_channels=4, decoder_channels=[8, 8, 8, 8], encoder_channels=8),
                      stream=StreamConfig(latent_height=4, latent_width=4))
    m = Model(cfg, "roundtrip", tok)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.safetensors")
        save_model(p, m)
        m2 = load_model(p)
        _, meta = st.load(p)
    assert meta["flipbook.format"] == "1" and meta["flipbook.name"] == "roundtrip"
    assert m2.cfg.to_dict() == cfg.to_dict()
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert m2.tokenize("a red ball")[-1] == 1 and len(m2.tokenize("two blue cubes " * 9)) == 8
    try:
        ModelConfig.from_dict({"dit": {"dimm": 3}})
        raise AssertionError("unknown key accepted")
    except ValueError:
        pass


def main():
    # One thread: the suite runs tests side by side on two cores, where OpenMP threads that
    # spin-wait for a descheduled sibling make timings erratic.
    torch.set_num_threads(1)
    failed = 0
    for fn in CHECKS:
        t0 = time.time()
        try:
            fn()
            print("ok    %-34s %.2fs" % (fn.__name__, time.time() - t0))
        except Exception as e:  # report every failing check, not just the first
            failed += 1
            print("FAIL  %-34s %s: %s" % (fn.__name__, type(e).__name__, e))
    print("selftest: %d of %d checks passed" % (len(CHECKS) - failed, len(CHECKS)))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
