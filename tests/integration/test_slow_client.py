#!/usr/bin/env python3
"""A client that stops reading must not slow anybody else down.

A session with an owner and two viewers that read normally; then a viewer of the same session
and the owner of a second session that connect with a tiny receive buffer and never read.
Checks: the normal clients keep the full frame rate (frames received per second over 3 s
windows, early and late), the daemon's memory stays bounded while the stalled ones back up,
and the stalled clients are eventually dropped (flipbook_clients_closed_slow_total rises, the
socket ends with close code 1008 or is cut).
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

FPS = 30
DROP_WAIT_S = 45


def main():
    a = fbtest.common_args(__doc__).parse_args()
    c = fbtest.Checks("integration_slow_client")
    with fbtest.TempDir(a.keep) as tmp:
        d = fbtest.Daemon(a.flipbookd, tmp, fps=FPS, web_root=a.web_root)
        readers = []
        rss = []
        stop_sampling = threading.Event()

        def sample():
            while not stop_sampling.is_set():
                v = d.rss_kib()
                if v:
                    rss.append(v)
                stop_sampling.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            owner, hello, _ = fbtest.start_session(d, "slow client test")
            sid = hello["session"]
            readers.append(fbtest.FrameCounter(owner, "owner"))
            for i in range(2):
                v = fbtest.join_session(d, sid)
                readers.append(fbtest.FrameCounter(v, f"viewer{i}"))
            time.sleep(1.5)  # joins settle, everyone has had a keyframe
            sampler.start()
            time.sleep(0.5)
            rss_before = rss[-1] if rss else d.rss_kib()
            closed_before = fbtest.metric_sum(d.metrics(), r"^flipbook_clients_closed_slow_total")

            # The stalled ones: a viewer of the same session and the owner of another session.
            slow_viewer = fbtest.join_session(d, sid, rcvbuf=4096)
            slow_owner = fbtest.WS(d.host, d.port, rcvbuf=4096)
            slow_owner.send_json({"type": "start", "prompt": "never read"})
            t_stall = time.monotonic()

            def window_rates(label):
                t0 = time.monotonic()
                time.sleep(3.0)
                t1 = time.monotonic()
                rates = [r.frames_between(t0, t1) / (t1 - t0) for r in readers]
                c.check(all(x >= 0.9 * FPS for x in rates),
                        f"{label}: every normal client at full rate",
                        ", ".join(f"{x:.1f}" for x in rates) + " fps")
                return rates

            early = window_rates("first 3 s of the stall")
            time.sleep(2.0)
            late = window_rates("5-8 s into the stall")
            c.figure("normal clients during the stall: early " +
                     "/".join(f"{x:.1f}" for x in early) + " fps, later " +
                     "/".join(f"{x:.1f}" for x in late) + " fps")

            # Wait for the daemon to give up on the stalled clients.
            dropped_after = None
            closed = closed_before
            while time.monotonic() - t_stall < DROP_WAIT_S:
                closed = fbtest.metric_sum(d.metrics(), r"^flipbook_clients_closed_slow_total")
                if closed >= closed_before + 2:
                    dropped_after = time.monotonic() - t_stall
                    break
                time.sleep(0.5)
            c.check(dropped_after is not None, "both stalled clients dropped",
                    f"closed_slow {closed_before:.0f} -> {closed:.0f}" +
                    (f" after {dropped_after:.1f} s" if dropped_after else ""))
            if dropped_after:
                c.figure(f"stalled clients dropped {dropped_after:.1f} s after they stopped reading")
            m = d.metrics()
            c.figure("flipbook_frames_dropped_total = "
                     f"{fbtest.metric_sum(m, r'^flipbook_frames_dropped_total'):.0f}")

            window_rates("after the drop")
            stop_sampling.set()
            sampler.join(2)
            peak = max(rss) if rss else 0
            growth_mib = (peak - (rss_before or peak)) / 1024
            c.figure(f"daemon RSS {(rss_before or 0) / 1024:.1f} MiB before the stall, peak "
                     f"{peak / 1024:.1f} MiB during it")
            c.check(growth_mib < 64, "daemon memory stays bounded", f"+{growth_mib:.1f} MiB")

            # The stalled sockets end: a 1008 close once we read, or a cut connection.
            for ws, label in ((slow_viewer, "slow viewer"), (slow_owner, "slow owner")):
                code = None
                deadline = time.monotonic() + 10
                try:
                    while time.monotonic() < deadline:
                        ws.recv(timeout=2)
                except fbtest.Closed as e:
                    code = e.code
                except (socket.timeout, OSError) as e:
                    code = f"error {e}"
                c.check(code in (1008, 1006), f"{label}: connection ended (1008 or cut)",
                        str(code))
                ws.close()
            for r in readers:
                c.check(r.error is None, f"{r.name} connection intact", str(r.error))
            c.check(d.alive(), "daemon still running")
        finally:
            stop_sampling.set()
            for r in readers:
                r.stop()
            rc = d.stop()
            c.check(rc == 0, "daemon exits 0", f"rc {rc}")
            if c.failed:
                print("---- daemon log (tail)\n" + "\n".join(d.log_lines[-40:]))
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
