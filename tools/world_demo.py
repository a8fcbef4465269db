#!/usr/bin/env python3
"""Write a few clips of the synthetic world as PNG strips plus their captions, to look at.

    /usr/bin/python3 tools/world_demo.py --out /tmp/world-demo [--clips 8] [--size 128]

Each clip_NNN.png is a grid of frames (every --every-th frame, left to right, --columns per row),
scaled up by --scale; a clip with a prompt switch has the first frame after the switch framed
in red. captions.txt lists, per clip, the canonical caption (before and after a switch) and the
other phrasings. Same --seed, same pictures.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from world import Scene, clip_captions, render_clip  # noqa: E402
from world.png import write_png  # noqa: E402


def strip(frames, every, columns, scale, switch_frame):
    idx = list(range(0, len(frames), every))
    if 0 <= switch_frame and switch_frame not in idx:
        idx = sorted(set(idx) | {switch_frame})
    columns = columns or min(len(idx), 12)
    H, W = frames.shape[1:3]
    pad = 2
    rows = (len(idx) + columns - 1) // columns
    out = np.full((rows * (H + pad) + pad, columns * (W + pad) + pad, 3), 255, np.uint8)
    for n, t in enumerate(idx):
        r, c = divmod(n, columns)
        y, x = pad + r * (H + pad), pad + c * (W + pad)
        out[y:y + H, x:x + W] = frames[t]
        if t == switch_frame:
            out[y - pad:y, x - pad:x + W + pad] = (230, 30, 30)
            out[y + H:y + H + pad, x - pad:x + W + pad] = (230, 30, 30)
            out[y - pad:y + H + pad, x - pad:x] = (230, 30, 30)
            out[y - pad:y + H + pad, x + W:x + W + pad] = (230, 30, 30)
    if scale > 1:
        out = out.repeat(scale, 0).repeat(scale, 1)
    return out, idx


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write clips of the synthetic world as PNG strips.")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=128, help="frame width and height in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=4, help="keep every Nth frame")
    ap.add_argument("--columns", type=int, default=0, help="frames per row (default: all, up to 12)")
    ap.add_argument("--scale", type=int, default=2, help="integer upscale of the strips")
    ap.add_argument("--switch-fraction", type=float, default=0.5)
    a = ap.parse_args(argv)
    if a.clips < 1 or a.frames < 1 or a.every < 1 or a.columns < 0 or a.scale < 1 or a.size < 16:
        ap.error("--clips, --frames, --every and --scale must be positive, --size >= 16")
    os.makedirs(a.out, exist_ok=True)
    lines = []
    for i in range(a.clips):
        rng = np.random.default_rng([a.seed, i])
        scene = Scene.sample(rng)
        switch = None
        if a.frames >= 4 and rng.random() < a.switch_fraction:
            switch = scene.sample_switch(rng, a.frames)
        frames, records = render_clip(scene, a.frames, size=(a.size, a.size), switch=switch)
        caps = clip_captions(records, switch.frame if switch else -1, rng, 4)
        img, idx = strip(frames, a.every, a.columns, a.scale, switch.frame if switch else -1)
        name = "clip_%03d.png" % i
        write_png(os.path.join(a.out, name), img)
        lines.append("%s  frames %s" % (name, " ".join(str(t) for t in idx)))
        lines.append("  caption: %s" % caps["before"][0])
        if switch is not None:
            lines.append("  switch at frame %d (%s): %s" % (switch.frame, switch.kind, caps["after"][0]))
        for c in caps["before"][1:]:
            lines.append("    also: %s" % c)
        for c in (caps["after"] or [])[1:]:
            lines.append("    after: %s" % c)
    with open(os.path.join(a.out, "captions.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("world-demo: wrote %d clips to %s" % (a.clips, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
