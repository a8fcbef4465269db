#!/usr/bin/env python3
"""`flipbook prompt` and `flipbook watch` against a live session: the prompt is acknowledged
(exit 0, the ack printed), the server's refusals come back as exit 1 with the error code and
message (wrong token, unknown session, over-long prompt), and `watch` prints the server's
stats lines while receiving video at the stream's rate."""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

FPS = 30


def main():
    a = fbtest.common_args(__doc__).parse_args()
    c = fbtest.Checks("integration_cli_steering")
    fb = a.flipbook
    with fbtest.TempDir(a.keep) as tmp:
        d = fbtest.Daemon(a.flipbookd, tmp, fps=FPS, web_root=a.web_root,
                          extra=["--max-sessions", "1"])
        try:
            owner, hello, _ = fbtest.start_session(d, "steering test")
            sid, token = hello["session"], hello["token"]
            reader = fbtest.FrameCounter(owner, "owner")
            url = d.url()

            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", sid,
                                          "--token", token, "--text", "a red fox in the snow")
            c.check(rc == 0 and "prompt accepted" in out, "prompt -> exit 0, ack printed",
                    (out + err).strip()[:200])
            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", sid,
                                          "--token", token, "--text", "blue hour", "--transition",
                                          "blend", "--chunks", "8", "--json")
            try:
                ack = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                ack = {}
            c.check(rc == 0 and ack.get("type") == "ack" and ack.get("of") == "prompt",
                    "prompt --json prints the ack", out.strip()[:200])
            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", sid,
                                          "--token", token, "--text", "rain", "--transition",
                                          "recache")
            c.check(rc == 0, "recache transition accepted", (out + err).strip()[:200])

            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", sid,
                                          "--token", "not-the-token", "--text", "x")
            c.check(rc == 1 and "bad_token" in err, "wrong token -> exit 1 with bad_token",
                    err.strip()[:200])
            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", "nope",
                                          "--token", token, "--text", "x")
            c.check(rc == 1 and "no_session" in err, "unknown session -> exit 1 with no_session",
                    err.strip()[:200])
            rc, out, err = fbtest.run_cli(fb, "prompt", "--url", url, "--session", sid,
                                          "--token", token, "--text", "x" * 2001)
            c.check(rc == 1 and "bad_value" in err, "2001-byte prompt -> exit 1 with bad_value",
                    err.strip()[:200])

            # The prompts reached the session: the owner got no error, the stream goes on.
            errors = [m for m in reader.texts if m.get("type") == "error"]
            c.check(not errors, "owner saw no errors", str(errors)[:200])
            c.figure("daemon log mentions the prompt: "
                     f"{'yes' if 'a red fox in the snow' in d.log() else 'no'}")

            t0 = time.monotonic()
            rc, out, err = fbtest.run_cli(fb, "watch", "--url", url, "--session", sid,
                                          "--seconds", "3.5", timeout=30)
            dt = time.monotonic() - t0
            lines = [l for l in out.splitlines() if l.startswith("frame")]
            c.check(rc == 0 and len(lines) >= 2, "watch prints stats lines",
                    f"rc {rc}, {len(lines)} lines: {err.strip()[-200:]}")
            c.check(dt < 8, "watch --seconds 3.5 returns on time", f"{dt:.1f} s")
            recv = [float(m.group(1)) for m in (re.search(r"recv\s+([\d.]+)", l) for l in lines[1:])
                    if m]
            c.check(recv and max(recv) >= 0.9 * FPS, "watch receives video at the stream rate",
                    str(recv))
            m = re.search(r"received (\d+) frames", err)
            c.check(m and int(m.group(1)) >= 2.5 * FPS, "watch summary counts frames",
                    err.strip()[-120:])
            rc, out, err = fbtest.run_cli(fb, "watch", "--url", url, "--session", "nope",
                                          "--seconds", "2")
            c.check(rc == 1 and "no_session" in err, "watch unknown session -> exit 1",
                    err.strip()[:200])
            # Refusals of `record`: no room for a second session, then a size out of range.
            out = os.path.join(tmp, "x.webm")
            rc, so, err = fbtest.run_cli(fb, "record", "--url", url, "--prompt", "x",
                                         "--seconds", "1", "-o", out)
            c.check(rc == 1 and "session_limit" in err, "record past --max-sessions -> exit 1",
                    err.strip()[:200])
            c.check(not os.path.exists(out), "no file written when the start is refused")
            c.check(reader.error is None and d.alive(), "owner connection and daemon fine",
                    str(reader.error))
            reader.stop()
        finally:
            rc = d.stop()
            c.check(rc == 0, "daemon exits 0", f"rc {rc}")
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
