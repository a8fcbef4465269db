#!/usr/bin/env python3
"""The CLI's WebM saving without a daemon: encoder -> clients/cli/webm_out -> file; ffprobe
sees VP9 at the right size, frame count, duration and increasing timestamps, ffmpeg decodes it
without a word, and the test pattern's counters read back consecutive. A second file starts
mid-stream at a keyframe, as `flipbook record` does after joining."""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402


def check_file(c, a, path, frames, w, h, fps, label):
    info = fbtest.probe_video(a.ffprobe, path)
    c.check(info["codec"] == "vp9", f"{label}: codec vp9", str(info["codec"]))
    c.check((info["width"], info["height"]) == (w, h), f"{label}: {w}x{h}",
            f"{info['width']}x{info['height']}")
    c.check(info["frames"] == frames, f"{label}: {frames} frames", str(info["frames"]))
    want = frames / fps
    c.check(info["duration"] is not None and abs(info["duration"] - want) < 0.05,
            f"{label}: duration {want:.3f} s", str(info["duration"]))
    pts = info["pts"]
    c.check(len(pts) == frames and all(b > a_ for a_, b in zip(pts, pts[1:])),
            f"{label}: packet timestamps increase", f"{len(pts)} packets")
    c.check(pts and abs(pts[0]) < 1e-6, f"{label}: starts at 0", str(pts[:1]))
    errs = fbtest.decode_errors(a.ffmpeg, path)
    c.check(errs == "", f"{label}: ffmpeg decodes without errors", errs[:200])
    counters = fbtest.read_counters(a.ffmpeg, a.read_counters, path, w, h)
    bad = fbtest.consecutive(counters)
    c.check(len(counters) == frames and not bad, f"{label}: counters consecutive",
            f"first {counters[:3]}, breaks at {bad[:5]}")
    return counters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--writer", required=True)
    p.add_argument("--read-counters", required=True)
    p.add_argument("--ffprobe", default="ffprobe")
    p.add_argument("--ffmpeg", default="ffmpeg")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    c = fbtest.Checks("integration_cli_webm")
    with fbtest.TempDir(a.keep) as tmp:
        path = os.path.join(tmp, "a.webm")
        r = subprocess.run([a.writer, path, "90", "256", "256", "30"], capture_output=True,
                           text=True, timeout=60)
        c.check(r.returncode == 0, "writer ran", (r.stdout + r.stderr).strip())
        if r.returncode == 0:
            counters = check_file(c, a, path, 90, 256, 256, 30, "from frame 0")
            c.check(counters[:1] == [0], "first counter is 0", str(counters[:1]))
        # Start 10 frames in: the file must begin at the next keyframe (frame 30).
        path = os.path.join(tmp, "b.webm")
        r = subprocess.run([a.writer, path, "45", "320", "240", "30", "10"], capture_output=True,
                           text=True, timeout=60)
        c.check(r.returncode == 0, "writer ran (late start)", (r.stdout + r.stderr).strip())
        if r.returncode == 0:
            counters = check_file(c, a, path, 45, 320, 240, 30, "late start")
            c.check(counters[:1] == [30], "late start begins at the keyframe (30)",
                    str(counters[:1]))
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
