"""Checks the reference (tools/flipbook_ref) against the upstream golden vectors.

    /usr/bin/python3 tools/check_upstream.py [--dir ../shared/golden/upstream] [--only CASE]

The directory holds outputs of the upstream Python code (Wan2.1 WanModel, Self-Forcing's causal
pipeline, umT5 T5Encoder, TAEHV) on tiny random weights; its README.md describes every tensor.
This script rebuilds each case with the reference, prints the maximum error of every tensor and
exits 1 if any exceeds its tolerance (77, "skipped", if the directory is missing). The Self-Forcing runs are
replayed in "absolute" positions with anchor_frames = sink_size and window_frames =
local_attn_size - sink_size - chunk_frames (unbounded for local_attn_size = -1).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from flipbook_ref import hashweights, st  # noqa: E402
from flipbook_ref.config import DiTConfig, ModelConfig, SamplerConfig, StreamConfig, \
    TextEncoderConfig, VAEConfig  # noqa: E402
from flipbook_ref.dit import WanDiT  # noqa: E402
from flipbook_ref.sampler import Stream  # noqa: E402
from flipbook_ref.t5 import T5Encoder, relative_bucket  # noqa: E402
from flipbook_ref.taehv import TAEHV, StreamDecoder, StreamEncoder  # noqa: E402
from flipbook_ref import ops  # noqa: E402


class Report:
    def __init__(self):
        self.failures = []
        self.rows = []

    def cmp(self, case, name, got, ref, atol, rtol=0.0):
        got = torch.as_tensor(got).detach().double()
        ref = torch.as_tensor(ref).detach().double()
        if tuple(got.shape) != tuple(ref.shape):
            try:
                got = got.reshape(ref.shape)
            except RuntimeError:
                self.failures.append("%s %s: shape %s vs %s" % (case, name, list(got.shape), list(ref.shape)))
                print("  %-34s SHAPE MISMATCH %s vs %s" % (name, list(got.shape), list(ref.shape)))
                return
        err = (got - ref).abs().max().item() if ref.numel() else 0.0
        scale = ref.abs().max().item() if ref.numel() else 0.0
        tol = atol + rtol * scale
        ok = err <= tol
        rel = err / scale if scale > 0 else err
        self.rows.append((case, name, err, rel))
        print("  %-34s max|err| %.3e  rel %.3e  (max|ref| %.3g, tol %.1e)%s"
              % (name, err, rel, scale, tol, "" if ok else "  FAIL"))
        if not ok:
            self.failures.append("%s %s: %.3e > %.1e" % (case, name, err, tol))

    def exact(self, case, name, got, ref):
        same = torch.equal(torch.as_tensor(got).long(), torch.as_tensor(ref).long())
        print("  %-34s %s" % (name, "exact" if same else "MISMATCH  FAIL"))
        if not same:
            self.failures.append("%s %s: integer mismatch" % (case, name))


def dit_config(meta):
    c = json.loads(meta["config"])
    keys = {f for f in DiTConfig.__dataclass_fields__}
    return DiTConfig(**{k: v for k, v in c.items() if k in keys})


def load_dit(t, meta):
    dit = WanDiT(dit_config(meta))
    sd = {k[len("weight."):]: v for k, v in t.items() if k.startswith("weight.")}
    dit.load_state_dict(sd, strict=True)
    return dit.eval()


@torch.no_grad()
def check_wan_dit(path, rep):
    print("wan_dit (Wan2.1 WanModel, one forward)")
    t, meta = st.load(path)
    dit = load_dit(t, meta)
    cap = {}
    x = t["input.x"][None]
    flow = dit(x, t["input.t"], t["input.context"][None], cap=cap)
    tol = 2e-5
    rep.cmp("wan_dit", "inter.sinusoid", cap["sinusoid"][:, 0], t["inter.sinusoid"], tol)
    rep.cmp("wan_dit", "inter.e", cap["e"][:, 0], t["inter.e"], tol)
    rep.cmp("wan_dit", "inter.e0", cap["e0"][:, 0], t["inter.e0"], tol)
    rep.cmp("wan_dit", "inter.context_emb", cap["context_emb"], t["inter.context_emb"], tol)
    rep.cmp("wan_dit", "inter.patch_tokens", cap["patch_tokens"], t["inter.patch_tokens"], tol)
    for n in ["self_attn_in", "q_normed", "k_normed", "q_roped", "k_roped", "self_attn_out",
              "norm3_out", "cross_attn_out", "ffn_in", "ffn_out", "out"]:
        rep.cmp("wan_dit", "inter.block0." + n, cap["block0." + n], t["inter.block0." + n], tol)
    rep.cmp("wan_dit", "inter.block1.out", cap["block1.out"], t["inter.block1.out"], tol)
    rep.cmp("wan_dit", "inter.head_in", cap["head_in"], t["inter.head_in"], tol)
    rep.cmp("wan_dit", "inter.head_out", cap["head_out"], t["inter.head_out"], tol)
    p = torch.arange(32)
    ang = ops.rope_angles(dit.cfg.head_dim, p, p, p)
    rep.cmp("wan_dit", "inter.rope_freqs", torch.stack([ang.cos(), ang.sin()], -1), t["inter.rope_freqs"], 1e-7)
    rep.cmp("wan_dit", "output.flow", flow[0], t["output.flow"], tol)


@torch.no_grad()
def check_causal_dit(path, rep):
    print("causal_dit (Self-Forcing causal pipeline, KV cache, absolute positions)")
    t, meta = st.load(path)
    dit = load_dit(t, meta)
    runs = json.loads(meta["runs"])
    C = int(meta["num_frame_per_block"])
    ctx = t["input.context"][None]
    for r, info in runs.items():
        L, sink = info["local_attn_size"], info["sink_size"]
        window = -1 if L == -1 else L - sink - C
        noise = t["input.%s.noise" % r]
        _, F_, _, H, W = noise.shape
        cfg = ModelConfig(dit=dit.cfg, text_encoder=TextEncoderConfig(dim=dit.cfg.text_dim),
                          vae=VAEConfig(latent_channels=dit.cfg.out_dim),
                          sampler=SamplerConfig(shift=5.0, steps=[1000, 750, 500, 250], warp=True),
                          stream=StreamConfig(chunk_frames=C, anchor_frames=sink, window_frames=window,
                                              positions="absolute", latent_height=H, latent_width=W))
        cfg.validate()
        case = "causal_dit." + r
        print(" run %s: local_attn_size %d, sink %d -> anchor_frames %d, window_frames %d"
              % (r, L, sink, sink, window))
        s = Stream(dit, cfg, ctx, seeds=[0], record=True)
        rep.cmp(case, "timesteps", s.sched.steps, t["input.%s.timesteps" % r], 0.0)
        rep.cmp(case, "sigmas", s.sched.step_sigmas, t["inter.%s.sigmas" % r], 0.0)
        perm = lambda a: a.permute(0, 2, 1, 3, 4)   # [B, F, C, H, W] <-> [B, C, F, H, W]
        n_chunks = info["chunks"]
        lat = []
        worst = {"x_in": 0.0, "flow": 0.0, "x0": 0.0, "ctx.flow": 0.0}
        attended = []
        for c in range(n_chunks):
            noises = [perm(noise[:, C * c:C * c + C])]
            noises += [perm(t["input.%s.c%d.s%d.eps" % (r, c, k)]) for k in (1, 2, 3)]
            attended.append(s.cache.n_anchor + s.cache.n_window + C)
            lat.append(s.next_chunk(noises))
            tr = s.trace[-1]
            for k, stp in enumerate(tr["steps"]):
                for n in ("x_in", "flow", "x0"):
                    ref = t["inter.%s.c%d.s%d.%s" % (r, c, k, n)]
                    e = (perm(stp[n]) - ref).abs().max().item()
                    worst[n] = max(worst[n], e)
                    if e > 1e-4:
                        rep.failures.append("%s c%d s%d %s: %.3e" % (case, c, k, n, e))
            e = (perm(tr["ctx_flow"]) - t["inter.%s.c%d.ctx.flow" % (r, c)]).abs().max().item()
            worst["ctx.flow"] = max(worst["ctx.flow"], e)
            if e > 1e-4:
                rep.failures.append("%s c%d ctx.flow: %.3e" % (case, c, e))
        for n, e in worst.items():
            print("  %-34s max|err| %.3e over %d chunks (tol 1.0e-04)" % ("every c*.s*." + n if n != "ctx.flow" else "every c*.ctx.flow", e, n_chunks))
            rep.rows.append((case, n, e, float("nan")))
        rep.cmp(case, "output.latents", perm(torch.cat(lat, 2)), t["output.%s.latents" % r], 1e-4)
        # Attended key frames per call = upstream's local_end_index / frame_seq_length.
        ci = t["inter.%s.cache_index" % r]
        fsl = int(meta["frame_seq_length"])
        ups = [int(row[4]) // fsl for row in ci if int(row[1]) == 0]
        rep.exact(case, "attended frames per chunk", torch.tensor(attended), torch.tensor(ups))
        # Layer-0 cache: upstream keeps post-RoPE keys; rotate ours at their absolute frames and
        # compare the slots both hold (upstream also still holds the frames of the chunk the
        # next roll will evict, which flipbook's window has already dropped).
        k, v, idx = s.cache.snapshot(0)
        n_slots = t["inter.%s.kv.l0.k" % r].shape[1] // fsl
        total = F_
        up_idx = [j if j < sink else total - (n_slots - j) for j in range(n_slots)]
        gh, gw = dit.grid(H, W)
        from flipbook_ref.dit import token_angles
        kr = ops.rope_apply(k, token_angles(dit.cfg.head_dim, idx, gh, gw))
        ref_k = t["inter.%s.kv.l0.k" % r].reshape(1, n_slots, fsl, dit.cfg.num_heads, -1)
        ref_v = t["inter.%s.kv.l0.v" % r].reshape(1, n_slots, fsl, dit.cfg.num_heads, -1)
        sel = [up_idx.index(f) for f in idx]
        rep.cmp(case, "kv.l0.k (frames %s)" % _ranges(idx), kr, ref_k[:, sel], 1e-4)
        rep.cmp(case, "kv.l0.v", v, ref_v[:, sel], 1e-4)
        if L != -1 and n_chunks * C > L:
            check_window_mode(dit, cfg, ctx, t, r, C, L, n_chunks, rep)


@torch.no_grad()
def check_window_mode(dit, cfg, ctx, t, r, C, L, n_chunks, rep):
    """flipbook's "window" positions against upstream's absolute ones. Before the first
    eviction slot order is frame order, so they are identical. After it, without anchors every
    attended frame shifts by the same amount and RoPE scores depend only on position
    differences, so the results agree up to rounding; with anchors the anchor-to-window gap
    shrinks, so they must differ."""
    cfg.stream.positions = "window"
    sink = cfg.stream.anchor_frames
    s = Stream(dit, cfg, ctx, seeds=[0])
    noise = t["input.%s.noise" % r]
    perm = lambda a: a.permute(0, 2, 1, 3, 4)
    first_roll = next(c for c in range(n_chunks) if (c + 1) * C > L)   # first chunk that evicts
    lat = []
    for c in range(n_chunks):
        noises = [perm(noise[:, C * c:C * c + C])]
        noises += [perm(t["input.%s.c%d.s%d.eps" % (r, c, k)]) for k in (1, 2, 3)]
        lat.append(perm(s.next_chunk(noises)))
    ref = t["output.%s.latents" % r]
    case = "causal_dit." + r
    if sink == 0:
        rep.cmp(case, "window mode, all chunks", torch.cat(lat, 1), ref, 1e-4)
        return
    rep.cmp(case, "window mode, chunks 0-%d" % (first_roll - 1), torch.cat(lat[:first_roll], 1),
            ref[:, :first_roll * C], 1e-4)
    diff = (torch.cat(lat[first_roll:], 1) - ref[:, first_roll * C:]).abs().max().item()
    print("  %-34s max|diff| %.3e (must differ: anchors sit closer to the window)"
          % ("window mode, chunks %d-%d" % (first_roll, n_chunks - 1), diff))
    if diff < 1e-3:
        rep.failures.append("%s: window mode does not differ from absolute after the roll" % case)


def _ranges(idx):
    out, start = [], None
    for i, f in enumerate(idx):
        if start is None:
            start = f
        if i + 1 == len(idx) or idx[i + 1] != f + 1:
            out.append("%d-%d" % (start, f) if f != start else str(f))
            start = None
    return ",".join(out)


@torch.no_grad()
def check_umt5(path, rep):
    print("umt5 (Wan2.1 T5Encoder)")
    t, meta = st.load(path)
    c = json.loads(meta["config"])
    cfg = TextEncoderConfig(vocab=c["vocab"], dim=c["dim"], dim_attn=c["dim_attn"], dim_ffn=c["dim_ffn"],
                            num_heads=c["num_heads"], num_layers=c["num_layers"],
                            num_buckets=c["num_buckets"], shared_pos=c["shared_pos"])
    enc = T5Encoder(cfg)
    enc.load_state_dict({k[7:]: v for k, v in t.items() if k.startswith("weight.")}, strict=True)
    enc.eval()
    cap = {}
    ids, mask = t["input.ids"], t["input.mask"]
    out = enc(ids, mask, cap=cap)
    tol = 2e-5
    rep.cmp("umt5", "output.hidden", out, t["output.hidden"], tol)
    for n in ("block0.out", "block1.out", "block0.attn_out", "block0.ffn_out"):
        rep.cmp("umt5", "inter." + n, cap[n], t["inter." + n], tol)
    rep.cmp("umt5", "inter.block0.pos_bias", cap["block0.pos_bias"][:, :8, :8], t["inter.block0.pos_bias"], 0.0)
    rep.exact("umt5", "inter.bucket_of_rel",
              relative_bucket(torch.arange(-99, 100), cfg.num_buckets, cfg.max_distance), t["inter.bucket_of_rel"])
    # Running on the valid tokens only gives the valid rows (the engine's shortcut).
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        short = enc(ids[b:b + 1, :n])
        rep.cmp("umt5", "valid-only rows, sequence %d" % b, short[0], t["output.hidden"][b, :n], tol)


@torch.no_grad()
def check_taehv(path, rep):
    print("taehv (TAEW2.1 shapes, hash-generated weights)")
    t, meta = st.load(path)
    c = json.loads(meta["config"])
    gen = json.loads(meta["weight_generator"])
    shapes = json.loads(meta["weight_shapes"])
    cfg = VAEConfig(latent_channels=c["latent_channels"], patch_size=c["patch_size"],
                    decoder_channels=c["decoder_widths"], encoder_channels=c["encoder_width"],
                    encoder_time_downscale=c["encoder_time_downscale"],
                    decoder_time_upscale=c["decoder_time_upscale"],
                    decoder_space_upscale=c["decoder_space_upscale"], frames_to_trim=c["frames_to_trim"])
    vae = TAEHV(cfg).eval()
    sd = {}
    bad = 0
    for name, shape in shapes.items():
        e, off = gen[name]
        w = hashweights.generate(name, shape, e, off)
        chk = t["gen.check." + name].numpy()
        flat = w.reshape(-1)
        if not (flat[0] == chk[0] and flat[-1] == chk[1] and abs(flat.astype(np.float64).sum() - chk[2]) <= 1e-9 * max(1.0, abs(chk[2]))):
            bad += 1
        sd[name] = torch.from_numpy(w)
    print("  %-34s %d tensors, %d mismatches%s" % ("gen.check (first, last, sum)", len(shapes), bad, "  FAIL" if bad else ""))
    if bad:
        rep.failures.append("taehv weight generator: %d mismatches" % bad)
    vae.load_state_dict(sd, strict=True)
    lat, frames = t["input.latents"], t["input.frames"]
    rep.cmp("taehv", "output.decoded", vae.decode(lat), t["output.decoded"], 1e-4)
    rep.cmp("taehv", "output.decoded_stream", StreamDecoder(vae).decode(lat), t["output.decoded_stream"], 1e-4)
    rep.cmp("taehv", "output.encoded", vae.encode(frames), t["output.encoded"], 1e-4)
    rep.cmp("taehv", "output.encoded_stream", StreamEncoder(vae).encode(frames), t["output.encoded_stream"], 1e-4)


CASES = {"wan_dit": check_wan_dit, "causal_dit": check_causal_dit, "umt5": check_umt5, "taehv": check_taehv}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(here, "..", "..", "shared", "golden", "upstream"),
                    help="folder with the upstream golden files (default: ../shared/golden/upstream)")
    ap.add_argument("--only", choices=sorted(CASES), action="append")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not os.path.isdir(a.dir):
        print("check_upstream: SKIP: no upstream golden folder at %s" % a.dir)
        return 77
    rep = Report()
    for name in a.only or list(CASES):
        CASES[name](os.path.join(a.dir, name + ".safetensors"), rep)
    if rep.failures:
        print("check_upstream: %d FAILED" % len(rep.failures))
        for f in rep.failures:
            print("  " + f)
        return 1
    print("check_upstream: all %d comparisons within tolerance" % len(rep.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
