#!/usr/bin/env python3
"""`flipbook record` against a real flipbookd: ~3 s at 256x256 from the test pattern. ffprobe
sees VP9 at 256x256 with about fps*seconds frames and increasing timestamps, ffmpeg decodes it
without a word, and the test pattern's frame counters read back consecutive (no frame lost,
repeated or reordered between the encoder and the file). Also: the summary line, the session
is stopped afterwards, and a missing --seed/size is fine."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

FPS = 30
SECONDS = 3


def main():
    a = fbtest.common_args(__doc__).parse_args()
    c = fbtest.Checks("integration_record")
    with fbtest.TempDir(a.keep) as tmp:
        d = fbtest.Daemon(a.flipbookd, tmp, 256, 256, FPS, web_root=a.web_root)
        try:
            out = os.path.join(tmp, "out.webm")
            t0 = time.monotonic()
            rc, so, se = fbtest.run_cli(a.flipbook, "record", "--url", d.url(), "--prompt",
                                        "integration test", "--seconds", str(SECONDS),
                                        "-o", out, "--seed", "7", "--width", "256",
                                        "--height", "256", timeout=60)
            wall = time.monotonic() - t0
            c.check(rc == 0, "flipbook record exits 0", f"rc {rc}: {se.strip()[-300:]}")
            c.figure(f"record of {SECONDS} s took {wall:.2f} s wall")
            m = re.search(r"recorded (\d+) frames, ([\d.]+) s, (\d+)x(\d+) at (\d+) fps, (\d+) "
                          r"bytes of video \((\d+) bytes file\), (\d+) keyframes, (\d+) dropped",
                          so)
            c.check(m is not None, "summary line printed", so.strip())
            c.check("session " in se and "owner token" in se, "session id and token on stderr",
                    se.strip()[:200])
            if not os.path.exists(out):
                c.check(False, "output file exists")
                return c.finish()
            info = fbtest.probe_video(a.ffprobe, out)
            c.check(info["codec"] == "vp9", "codec is vp9", str(info["codec"]))
            c.check((info["width"], info["height"]) == (256, 256), "size 256x256",
                    f"{info['width']}x{info['height']}")
            want = FPS * SECONDS
            c.check(abs(info["frames"] - want) <= 2, f"about {want} frames",
                    str(info["frames"]))
            c.check(info["duration"] is not None and abs(info["duration"] - SECONDS) < 0.2,
                    "finalized: duration about 3 s", str(info["duration"]))
            pts = info["pts"]
            c.check(len(pts) > 0 and all(y > x for x, y in zip(pts, pts[1:])),
                    "timestamps strictly increase", f"{len(pts)} packets")
            if len(pts) > 1:
                steps = [y - x for x, y in zip(pts, pts[1:])]
                c.check(max(steps) < 3.0 / FPS, "no timestamp gaps",
                        f"max step {max(steps) * 1000:.1f} ms")
            c.check(info["keyframes"] >= 1, "starts with a keyframe",
                    f"{info['keyframes']} keyframes")
            if m:
                c.check(int(m.group(1)) == info["frames"], "summary frame count matches ffprobe",
                        f"{m.group(1)} vs {info['frames']}")
                c.check(int(m.group(7)) == os.path.getsize(out), "summary file size matches",
                        f"{m.group(7)} vs {os.path.getsize(out)}")
                c.check(int(m.group(9)) == 0, "no frames dropped on loopback", m.group(9))
            errs = fbtest.decode_errors(a.ffmpeg, out)
            c.check(errs == "", "ffmpeg -v error decodes with no message", errs[:300])
            counters = fbtest.read_counters(a.ffmpeg, a.read_counters, out, 256, 256)
            bad = fbtest.consecutive(counters)
            c.check(len(counters) == info["frames"] and not bad,
                    "test-pattern counters are consecutive",
                    f"{counters[:3]}...{counters[-2:]}, breaks at {bad[:5]}")

            # The CLI stops the session it started: /metrics shows no session left.
            time.sleep(0.5)
            metrics = d.metrics()
            live = fbtest.metric_sum(metrics, r"^flipbook_sessions(_active)?(\{.*\})?$")
            c.check(live == 0, "session stopped after recording", f"sessions {live}")
            c.check(d.alive(), "daemon still running")

            # Ctrl-C in the middle: exit 130, and the file is finished and plays.
            out2 = os.path.join(tmp, "interrupted.webm")
            proc = subprocess.Popen([a.flipbook, "record", "--url", d.url(), "--prompt", "stop me",
                                     "--seconds", "60", "-o", out2], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(2.5)
            proc.send_signal(signal.SIGINT)
            try:
                so, se = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                so, se = proc.communicate()
            c.check(proc.returncode == 130 and "interrupted" in se,
                    "Ctrl-C -> exit 130 with a message", f"rc {proc.returncode}: {se.strip()[-120:]}")
            info = fbtest.probe_video(a.ffprobe, out2) if os.path.exists(out2) else None
            c.check(info is not None and info["duration"] is not None and info["frames"] >= 45
                    and fbtest.decode_errors(a.ffmpeg, out2) == "",
                    "interrupted file is finalized and decodes",
                    f"{info and info['frames']} frames, duration {info and info['duration']}")
            c.check("recorded " in so, "summary printed after Ctrl-C", so.strip()[:120])
        finally:
            rc = d.stop()
            c.check(rc == 0, "daemon exits 0 on SIGTERM", f"rc {rc}")
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
