"""Quick evaluation hook: sample clips from a model file with the reference sampler, write PNG
strips, and score them with the world's scene parser.

For held-out scenes (seeds the training never saw) the canonical caption is the prompt; every
other clip switches prompt at a chunk boundary (transition "cut"), as the world's own clip did.
Each frame is parsed and compared with the caption of its chunk:
    background  the parsed sky is the caption's sky
    colours     the set of object colours found equals the caption's set
    count       the number of objects found equals the caption's count
The same figures on the rendered clip of that scene (the "world" column) show what the parser
and captions allow at best (objects hidden by occluders or off screen count against both).
The full evaluation suite (permanence, drift, Frechet distance) is tools/eval's job.
"""
import os
import time

import numpy as np
import torch

from flipbook_ref.export import load_model

from world import write_png
from world.caption import parse_caption
from world.parser import parse_frame

from . import config as C
from . import data, state


def _expected(caption):
    d = parse_caption(caption)
    colours = sorted({g["colour"] for g in d["groups"]})
    return d["sky"], colours, sum(g["count"] for g in d["groups"])


def score_frames(frames_u8, frame_captions):
    """frames [T, H, W, 3] uint8 and one caption per frame -> counts of agreeing frames."""
    s = {"frames": 0, "background": 0, "colours": 0, "count": 0}
    for f, cap in zip(frames_u8, frame_captions):
        sky, colours, count = _expected(cap)
        p = parse_frame(f)
        found = sorted({o["colour"] for o in p["objects"]})
        s["frames"] += 1
        s["background"] += int(p["sky"] == sky)
        s["colours"] += int(found == colours)
        s["count"] += int(len(p["objects"]) == count)
    return s


def _to_u8(video):
    """[T, 3, H, W] float in [0, 1] -> [T, H, W, 3] uint8."""
    return (video.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def strip(gen, real, per_row):
    """Rows of per_row frames: generated on the left, the world's clip on the right."""
    T, H, W, _ = gen.shape
    rows = []
    gap = np.full((H, 8, 3), 255, np.uint8)
    for r in range(0, T, per_row):
        g = np.concatenate(list(gen[r:r + per_row]), axis=1)
        w = np.concatenate(list(real[r:r + per_row]), axis=1)
        rows.append(np.concatenate([g, gap, w], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


@torch.no_grad()
def generate(model, prompts, switch_chunk, chunks, seed):
    """Latent-chunk loop of the reference sampler -> video [T, 3, H, W] in [0, 1]."""
    _, ctx = model.encode_prompt(prompts[0])
    stream = model.stream(ctx, seeds=[seed])
    lat = []
    for c in range(chunks):
        if c == switch_chunk:
            stream.set_prompt(model.encode_prompt(prompts[1])[1], "cut")
        lat.append(stream.next_chunk())
    z = torch.cat(lat, dim=2).permute(0, 2, 1, 3, 4)          # [1, F, C, h, w]
    return model.vae.decode(z)[0]


def run(root, model_path, tc, clips=4, chunks=6, out_dir=None):
    if not os.path.exists(model_path):
        raise SystemExit("train: no model file at %s (run with --export first)" % model_path)
    model = load_model(model_path)
    if out_dir is None:
        out_dir = os.path.join(root, "eval", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    n_video = chunks * C.CHUNK_VIDEO
    tot = {"gen": {}, "world": {}}
    rows = []
    t0 = time.time()
    for i in range(clips):
        real, _, caps = data.make_dit_clip(tc.seed, 100000 + i, n_video, float(i % 2), 1,
                                           purpose=data.EVAL_DATA)
        sw = caps["switch_chunk"]
        prompts = [caps["before"][0], caps["after"][0] if caps["after"] else caps["before"][0]]
        video = generate(model, prompts, sw, chunks, seed=1000 + i)
        gen = _to_u8(video)
        real = real[:gen.shape[0]]
        per_frame = [prompts[1] if sw >= 0 and t // C.CHUNK_VIDEO >= sw else prompts[0]
                     for t in range(gen.shape[0])]
        sg, sr = score_frames(gen, per_frame), score_frames(real, per_frame)
        for name, s in (("gen", sg), ("world", sr)):
            for k, v in s.items():
                tot[name][k] = tot[name].get(k, 0) + v
        write_png(os.path.join(out_dir, "clip%02d.png" % i), strip(gen, real, C.CHUNK_VIDEO))
        rows.append({"clip": i, "prompts": prompts, "switch_chunk": sw, "generated": sg, "world": sr})
        print("eval clip %d%s: %s" % (i, " (switch at chunk %d)" % sw if sw >= 0 else "",
                                      " -> ".join(dict.fromkeys(prompts))), flush=True)
        print("   generated  bg %3.0f%%  colours %3.0f%%  count %3.0f%% | world  bg %3.0f%%  "
              "colours %3.0f%%  count %3.0f%%" % tuple(
                  100.0 * s[k] / s["frames"] for s in (sg, sr) for k in ("background", "colours", "count")),
              flush=True)
    summary = {k: {m: tot[k][m] / max(1, tot[k]["frames"]) for m in ("background", "colours", "count")}
               for k in tot}
    print("eval: %d clips x %d frames, %.0f s; generated: background %.1f%%, colours %.1f%%, count "
          "%.1f%% | world: background %.1f%%, colours %.1f%%, count %.1f%%; strips in %s" % (
              clips, n_video, time.time() - t0,
              *[100 * summary[k][m] for k in ("gen", "world") for m in ("background", "colours", "count")],
              out_dir), flush=True)
    state.write_json(os.path.join(out_dir, "summary.json"),
                     {"model": os.path.abspath(model_path), "summary": summary, "clips": rows})
    return summary
