"""Speed of the PyTorch reference's chunk generation (eager, CPU), for docs/performance.md.

    /usr/bin/python3 tools/bench_reference.py --model tests/data/golden/tiny_model.safetensors
    /usr/bin/python3 tools/bench_reference.py --config my_config.json --chunks 6 --decode

Generates chunks exactly as the engine does (K denoising forwards + the t=0 context pass over
the anchor + window cache, counter-RNG noise) and prints milliseconds per chunk and frames per
second, in the steady state (after the window has filled) and overall. With --config the
weights are random (timing does not depend on them). Runs on 2 threads unless told otherwise,
so it can be compared with `flipbook bench` on the same machine. On a loaded two-core machine
--threads 1 can be faster than 2 (OpenMP threads spin while a sibling is descheduled).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from flipbook_ref.config import ModelConfig  # noqa: E402
from flipbook_ref.dit import WanDiT  # noqa: E402
from flipbook_ref.export import load_model  # noqa: E402
from flipbook_ref.sampler import Stream  # noqa: E402
from flipbook_ref.taehv import TAEHV, StreamDecoder  # noqa: E402


def dit_flops(cfg, n_frames, n_keys_frames):
    """Multiply-adds x2 of one DiT forward over n_frames attending to n_keys_frames frames."""
    d = cfg.dit
    S = (cfg.stream.latent_height // d.patch_size[1]) * (cfg.stream.latent_width // d.patch_size[2])
    Lq, Lk = n_frames * S, n_keys_frames * S
    per_layer = Lq * (4 * d.dim * d.dim + 2 * d.dim * d.dim + 2 * d.dim * d.ffn_dim)
    per_layer += 2 * Lq * Lk * d.dim + 2 * Lq * d.text_len * d.dim
    return 2.0 * d.num_layers * per_layer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a flipbook model file")
    src.add_argument("--config", help="a JSON file with a flipbook.config object (random weights)")
    ap.add_argument("--chunks", type=int, default=0,
                    help="chunks to time (default: enough to fill anchors + window, plus 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", action="store_true", help="also time the streaming TAEHV decode")
    ap.add_argument("--prompt", default="a red ball rolls across a wooden floor")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    t_text = float("nan")
    if a.model:
        model = load_model(a.model)
        cfg, dit, vae = model.cfg, model.dit, model.vae
        t0 = time.perf_counter()
        _, ctx = model.encode_prompt(a.prompt)
        t_text = time.perf_counter() - t0
    else:
        # Only the DiT and the decoder are built: a full-size text encoder would not fit.
        with open(a.config) as f:
            cfg = ModelConfig.from_dict(json.load(f))
        dit = WanDiT(cfg.dit).init_weights().eval()
        torch.nn.init.normal_(dit.head.head.weight, std=0.02)     # non-zero flow, realistic work
        vae = TAEHV(cfg.vae).eval()
        ctx = torch.randn(1, min(32, cfg.dit.text_len), cfg.dit.text_dim)
    sc = cfg.stream
    warm_chunks = -(-(sc.anchor_frames + max(sc.window_frames, 0)) // sc.chunk_frames)
    n = a.chunks or warm_chunks + 2
    with torch.no_grad():   # warm-up: thread pool, allocator and first-call costs
        Stream(dit, cfg, ctx, seeds=[0]).next_chunk()
    s = Stream(dit, cfg, ctx, seeds=[1])
    dec = StreamDecoder(vae) if a.decode else None
    times, dec_times, frames = [], [], []
    with torch.no_grad():
        for c in range(n):
            keys = s.cache.n_anchor + s.cache.n_window + sc.chunk_frames
            t0 = time.perf_counter()
            x0 = s.next_chunk()
            times.append(time.perf_counter() - t0)
            frames.append(keys)
            if dec is not None:
                t0 = time.perf_counter()
                for f in range(x0.shape[2]):
                    dec.push(x0[:, :, f].contiguous())
                dec_times.append(time.perf_counter() - t0)
    steps = len(s.sched.steps)
    steady = times[warm_chunks:] or times
    ms = 1000 * sum(steady) / len(steady)
    lat_fps = sc.chunk_frames / (ms / 1000)
    vid_fps = lat_fps * cfg.vae.t_upscale
    flop = dit_flops(cfg, sc.chunk_frames, frames[-1]) * (steps + 1)
    res = {"threads": a.threads, "chunks": n, "chunk_frames": sc.chunk_frames,
           "forwards_per_chunk": steps + 1, "ms_per_chunk": round(ms, 3),
           "ms_per_chunk_all": round(1000 * sum(times) / len(times), 3),
           "latent_frames_per_s": round(lat_fps, 3), "video_frames_per_s": round(vid_fps, 3),
           "dit_gflop_per_chunk": round(flop / 1e9, 4), "gflop_per_s": round(flop / 1e9 / (ms / 1000), 3),
           "text_encoder_ms": round(1000 * t_text, 3)}
    if dec_times:
        dms = 1000 * sum(dec_times) / len(dec_times)
        res["decode_ms_per_chunk"] = round(dms, 3)
        res["video_frames_per_s_with_decode"] = round(sc.chunk_frames * cfg.vae.t_upscale / ((ms + dms) / 1000), 3)
    if a.json:
        print(json.dumps(res))
        return 0
    print("reference bench (eager PyTorch, CPU, %d threads): %d chunks of %d latent frames, %d forwards each"
          % (a.threads, n, sc.chunk_frames, steps + 1))
    print("  steady state: %.2f ms per chunk, %.2f latent frames/s, %.2f video frames/s, %.2f GFLOP/s"
          % (ms, lat_fps, vid_fps, res["gflop_per_s"]))
    print("  all chunks:   %.2f ms per chunk (first chunks attend to fewer frames)" % res["ms_per_chunk_all"])
    if dec_times:
        print("  decode:       %.2f ms per chunk; %.2f video frames/s with decode"
              % (res["decode_ms_per_chunk"], res["video_frames_per_s_with_decode"]))
    if a.model:
        print("  text encoder: %.2f ms per prompt" % res["text_encoder_ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
