#!/usr/bin/env python3
"""How many viewers can one session feed? (A benchmark, not a ctest.)

Starts flipbookd with the test pattern (256x256 at 30 fps by default), one session, and then,
for each N in --viewers, N viewer WebSockets of that session on loopback, all read by one
selector loop in this process. Over --seconds it counts the video frames each viewer receives
and reports how many held the full frame rate (>= 90 % of fps), the frames the server skipped
for them, the daemon's CPU use and its RSS per viewer.

  bench_viewers.py --flipbookd build/bin/flipbookd [--viewers 50,100,200,300] [--seconds 5]

The reader shares the machine with the daemon: on a 2-core box the Python side costs CPU too,
so the figures are a lower bound of what the daemon alone could serve.
"""

import argparse
import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402


class Viewer:
    __slots__ = ("ws", "sock", "buf", "frames", "window_frames", "gaps", "last_no", "closed",
                 "msg_opcode")

    def __init__(self, ws):
        self.ws = ws
        self.sock = ws.sock
        self.buf = bytearray(ws.buf)
        self.frames = 0
        self.window_frames = 0
        self.gaps = 0
        self.last_no = None
        self.closed = False
        self.msg_opcode = 0

    def feed(self, counting):
        """Parses every complete WebSocket frame in the buffer."""
        buf = self.buf
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = struct.unpack_from("!H", buf, pos + 2)[0]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                hl = 10
            if n - pos < hl + ln:
                break
            op = b0 & 0x0F
            if op in (1, 2):
                self.msg_opcode = op
            if op == 8:
                self.closed = True
            if op == 2 and ln >= 16:
                no = struct.unpack_from("<I", buf, pos + hl + 4)[0]
                if self.last_no is not None and no > self.last_no + 1:
                    self.gaps += no - self.last_no - 1
                self.last_no = no
                self.frames += 1
                if counting:
                    self.window_frames += 1
            pos += hl + ln
        if pos:
            del buf[:pos]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(d, sid, n, seconds, fps):
    viewers = []
    t_open = time.monotonic()
    for _ in range(n):
        ws = fbtest.WS(d.host, d.port, timeout=10)
        ws.send_json({"type": "join", "session": sid})
        viewers.append(Viewer(ws))
    open_s = time.monotonic() - t_open
    sel = selectors.DefaultSelector()
    for v in viewers:
        v.sock.setblocking(False)
        sel.register(v.sock, selectors.EVENT_READ, v)
    chunk = bytearray(1 << 18)
    view = memoryview(chunk)

    def pump(until, counting):
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            for key, _ in sel.select(min(left, 0.2)):
                v = key.data
                try:
                    got = v.sock.recv_into(chunk)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    got = 0
                if not got:
                    v.closed = True
                    sel.unregister(v.sock)
                    continue
                v.buf += view[:got]
                v.feed(counting)

    pump(time.monotonic() + 2.0, False)          # joins settle, first keyframes arrive
    rss0 = d.rss_kib()
    cpu0 = proc_cpu_seconds(d.pid)
    t0 = time.monotonic()
    pump(t0 + seconds, True)
    t1 = time.monotonic()
    cpu1 = proc_cpu_seconds(d.pid)
    rss1 = d.rss_kib()
    rates = [v.window_frames / (t1 - t0) for v in viewers]
    full = sum(1 for r in rates if r >= 0.9 * fps)
    result = {
        "viewers": n,
        "full_rate": full,
        "closed": sum(1 for v in viewers if v.closed),
        "min_fps": min(rates) if rates else 0,
        "median_fps": sorted(rates)[len(rates) // 2] if rates else 0,
        "gaps": sum(v.gaps for v in viewers),
        "daemon_cpu": (cpu1 - cpu0) / (t1 - t0),
        "rss_kib": max(rss0 or 0, rss1 or 0),
        "open_s": open_s,
    }
    for v in viewers:
        try:
            sel.unregister(v.sock)
        except (KeyError, ValueError):
            pass
        v.sock.setblocking(True)
        v.ws.close()
    sel.close()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--flipbookd", required=True)
    p.add_argument("--viewers", default="50,100,200,300")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--extra", default="", help="more flipbookd flags, space separated")
    a = p.parse_args()
    counts = [int(x) for x in a.viewers.split(",") if x]
    with fbtest.TempDir() as tmp:
        d = fbtest.Daemon(a.flipbookd, tmp, a.width, a.height, a.fps, log_level="warn",
                          extra=a.extra.split())
        try:
            owner, hello, _ = fbtest.start_session(d, "viewer benchmark")
            reader = fbtest.FrameCounter(owner, "owner")
            time.sleep(1.0)
            base_rss = d.rss_kib()
            print(f"flipbookd {a.width}x{a.height} at {a.fps} fps, one session; "
                  f"RSS with no viewers {base_rss / 1024:.1f} MiB; {os.cpu_count()} CPUs shared "
                  "with this reader")
            print(f"{'viewers':>8} {'full-rate':>9} {'min fps':>8} {'median':>7} {'skipped':>8} "
                  f"{'closed':>6} {'daemon CPU':>10} {'RSS MiB':>8} {'KiB/viewer':>10}")
            for n in counts:
                r = run_round(d, hello["session"], n, a.seconds, a.fps)
                per = (r["rss_kib"] - base_rss) / n
                print(f"{n:>8} {r['full_rate']:>9} {r['min_fps']:>8.1f} {r['median_fps']:>7.1f} "
                      f"{r['gaps']:>8} {r['closed']:>6} {r['daemon_cpu'] * 100:>9.0f}% "
                      f"{r['rss_kib'] / 1024:>8.1f} {per:>10.1f}", flush=True)
                time.sleep(2.0)
            owner_rate = reader.rate(2.0)
            print(f"owner still receives {owner_rate:.1f} fps")
            reader.stop()
        finally:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
