#!/usr/bin/env python3
"""Server-side recording (`record` start/stop over the protocol).

1. start -> 2 s -> stop: the `recording` messages, the download at /recordings/NAME.webm
   (200, video/webm, the same bytes as the file, a byte range answered 206), a finalized file
   (ffprobe shows a duration), clean decode and consecutive test-pattern counters.
2. Recording while the daemon gets SIGTERM: it exits 0 and the file is finalized (duration and
   cues written) and decodes.
3. Recording while the daemon gets SIGKILL: the file, cut off, still decodes.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

FPS = 30


def start_recording(c, ws, label):
    ws.send_json({"type": "record", "action": "start", "id": 5})
    ack = ws.recv_json(want=("ack", "error"))
    c.check(ack.get("type") == "ack" and ack.get("of") == "record" and ack.get("id") == 5,
            f"{label}: record start acked", str(ack))
    rec = ws.recv_json(want="recording")
    c.check(rec.get("state") == "started" and rec.get("name"), f"{label}: recording started",
            str(rec))
    return rec.get("name")


def file_name(name):
    """docs/protocol.md leaves open whether `name` carries the .webm suffix; accept both."""
    return name if name.endswith(".webm") else name + ".webm"


def check_finalized(c, a, path, label, min_seconds):
    info = fbtest.probe_video(a.ffprobe, path)
    c.check(info["codec"] == "vp9" and (info["width"], info["height"]) == (256, 256),
            f"{label}: vp9 256x256", f"{info['codec']} {info['width']}x{info['height']}")
    c.check(info["duration"] is not None and info["duration"] >= min_seconds,
            f"{label}: ffprobe shows a duration", str(info["duration"]))
    c.check(info["frames"] >= int(min_seconds * FPS * 0.8), f"{label}: frames",
            str(info["frames"]))
    errs = fbtest.decode_errors(a.ffmpeg, path)
    c.check(errs == "", f"{label}: decodes with no error", errs[:300])
    counters = fbtest.read_counters(a.ffmpeg, a.read_counters, path, 256, 256)
    bad = fbtest.consecutive(counters)
    c.check(counters and not bad, f"{label}: counters consecutive",
            f"{counters[:2]}..{counters[-2:]} breaks {bad[:5]}")
    return info


def normal(c, a, tmp):
    d = fbtest.Daemon(a.flipbookd, os.path.join(tmp, "normal"), fps=FPS, web_root=a.web_root)
    try:
        ws, hello, _ = fbtest.start_session(d, "recording test")
        name = start_recording(c, ws, "normal")
        time.sleep(2.0)
        ws.send_json({"type": "record", "action": "stop", "id": 6})
        rec = ws.recv_json(want="recording", timeout=10)
        c.check(rec.get("state") == "stopped" and rec.get("name") == name,
                "recording stopped", str(rec))
        url = rec.get("url", "")
        c.check(url == f"/recordings/{file_name(name)}", "download url in the message", url)
        path = os.path.join(d.record_dir, file_name(name))
        c.check(os.path.isfile(path), "file in the record dir", path)
        if not os.path.isfile(path):
            return
        size = os.path.getsize(path)
        c.check(rec.get("bytes") == size, "bytes in the message = file size",
                f"{rec.get('bytes')} vs {size}")
        status, hdrs, body = d.http_get(url, timeout=10)
        c.check(status == 200, "GET recording -> 200", str(status))
        c.check(hdrs.get("content-type", "").startswith("video/webm"), "content-type video/webm",
                hdrs.get("content-type", ""))
        with open(path, "rb") as f:
            data = f.read()
        c.check(body == data, "download equals the file", f"{len(body)} vs {len(data)} bytes")
        status, hdrs, body = d.http_get(url, headers={"Range": "bytes=0-99"})
        c.check(status == 206 and body == data[:100], "byte range -> 206 with those bytes",
                f"{status}, {len(body)} bytes")
        check_finalized(c, a, path, "normal", 1.5)
        ws.send_json({"type": "stop"})
        ws.close()
    finally:
        c.check(d.stop() == 0, "normal: daemon exits 0")


def killed(c, a, tmp, sig):
    label = signal.Signals(sig).name
    d = fbtest.Daemon(a.flipbookd, os.path.join(tmp, label), fps=FPS, web_root=a.web_root)
    try:
        ws, hello, _ = fbtest.start_session(d, "recording interrupted")
        reader = None
        name = start_recording(c, ws, label)
        reader = fbtest.FrameCounter(ws)
        time.sleep(2.0)
        t0 = time.monotonic()
        d.send_signal(sig)
        rc = d.wait(15)
        dt = time.monotonic() - t0
        if sig == signal.SIGTERM:
            c.check(rc == 0, f"{label}: daemon exits 0", f"rc {rc} after {dt:.2f} s")
            ends = [m for m in reader.texts if m.get("type") in ("end", "recording")]
            c.check(any(m.get("type") == "end" for m in ends) or reader.error is not None,
                    f"{label}: clients told or closed", str(ends)[:200])
        else:
            c.check(rc == -signal.SIGKILL, f"{label}: daemon killed", f"rc {rc}")
        reader.stop()
        path = os.path.join(d.record_dir, file_name(name))
        c.check(os.path.isfile(path), f"{label}: file exists", path)
        if not os.path.isfile(path):
            return
        if sig == signal.SIGTERM:
            check_finalized(c, a, path, label, 1.5)
        else:
            info = fbtest.probe_video(a.ffprobe, path)
            c.check(info["codec"] == "vp9" and info["frames"] >= int(1.5 * FPS),
                    f"{label}: cut-off file still decodes",
                    f"{info['frames']} frames, duration {info['duration']}")
            errs = fbtest.decode_errors(a.ffmpeg, path)
            c.figure(f"{label}: ffmpeg on the cut-off file says: {errs[:200] or 'nothing'}")
            counters = fbtest.read_counters(a.ffmpeg, a.read_counters, path, 256, 256)
            bad = fbtest.consecutive(counters)
            c.check(len(counters) >= int(1.5 * FPS) and not bad,
                    f"{label}: decoded frames are consecutive",
                    f"{len(counters)} frames, breaks {bad[:5]}")
    finally:
        d.stop(timeout=5)


def main():
    a = fbtest.common_args(__doc__).parse_args()
    c = fbtest.Checks("integration_server_recording")
    with fbtest.TempDir(a.keep) as tmp:
        normal(c, a, tmp)
        killed(c, a, tmp, signal.SIGTERM)
        killed(c, a, tmp, signal.SIGKILL)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
