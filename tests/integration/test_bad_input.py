#!/usr/bin/env python3
"""Bad input against a live daemon, while another session keeps streaming.

Every case of docs/protocol.md's error table that a client can provoke gets its error code
(with the request's id echoed), the connection stays usable where the protocol says so, the
daemon stays up, and a bystander session keeps receiving video at full frame rate throughout.
Also HTTP path traversal on /recordings/ (raw request lines, encoded variants) answers 404.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

FPS = 30


class Case:
    def __init__(self, c, d):
        self.c = c
        self.d = d

    def expect_error(self, ws, code, label, id_=None, codes=None):
        try:
            msg = ws.recv_json(want="error", timeout=5)
        except (TimeoutError, fbtest.Closed) as e:
            self.c.check(False, label, f"no error message: {e}")
            return None
        ok = msg.get("code") in (codes or (code,))
        if id_ is not None:
            ok = ok and msg.get("id") == id_
        self.c.check(ok and isinstance(msg.get("message"), str) and msg["message"],
                     label, f"{msg.get('code')}: {msg.get('message')}")
        return msg

    def still_usable(self, ws, label):
        """An unknown type is answered, proving the connection still works."""
        ws.send_json({"type": "ping-probe", "id": 999})
        self.expect_error(ws, "unknown_type", f"{label}: connection still usable", 999)


def main():
    a = fbtest.common_args(__doc__).parse_args()
    c = fbtest.Checks("integration_bad_input")
    with fbtest.TempDir(a.keep) as tmp:
        d = fbtest.Daemon(a.flipbookd, tmp, fps=FPS, web_root=a.web_root,
                          extra=["--max-sessions", "4"])
        t = Case(c, d)
        try:
            # The bystander: a session whose frame rate must not suffer.
            by_ws, by_hello, _ = fbtest.start_session(d, "bystander")
            bystander = fbtest.FrameCounter(by_ws, "bystander")
            time.sleep(1.0)
            t_start = time.monotonic()

            # ---- a connection that is in no session yet
            ws = fbtest.WS(d.host, d.port)
            c.check(ws.protocol == fbtest.SUBPROTOCOL, "subprotocol flipbook.v1 negotiated",
                    str(ws.protocol))
            ws.send_text("{not json")
            t.expect_error(ws, "bad_json", "malformed JSON -> bad_json")
            ws.send_text("[1, 2, 3]")
            t.expect_error(ws, "bad_json", "JSON array -> bad_json")
            ws.send_text('"just a string"')
            t.expect_error(ws, "bad_json", "JSON string -> bad_json")
            ws.send_json({"id": 1})
            t.expect_error(ws, "bad_message", "no type -> bad_message", 1)
            ws.send_json({"type": 5, "id": 2})
            t.expect_error(ws, "bad_message", "numeric type -> bad_message", 2)
            ws.send_json({"type": "dance", "id": 3})
            t.expect_error(ws, "unknown_type", "unknown type -> unknown_type", 3)
            ws.send_json({"type": "prompt", "text": "x", "id": 4})
            t.expect_error(ws, "no_session", "prompt before start -> no_session", 4)
            ws.send_json({"type": "join", "session": "no-such-session", "id": 5})
            t.expect_error(ws, "no_session", "join unknown session -> no_session", 5)
            ws.send_json({"type": "start", "id": 6})
            t.expect_error(ws, "bad_message", "start without prompt -> bad_message", 6)
            ws.send_json({"type": "start", "prompt": "x", "width": 99999, "id": 7})
            t.expect_error(ws, "bad_value", "start with width 99999 -> bad_value", 7)
            ws.send_json({"type": "start", "prompt": "x", "seed": -1, "id": 8})
            t.expect_error(ws, "bad_value", "start with seed -1 -> bad_value", 8)
            ws.send_json({"type": "start", "prompt": "x" * 2001, "id": 9})
            t.expect_error(ws, "bad_value", "start with a 2001-byte prompt -> bad_value", 9)
            ws.send_binary(b"\x01\x01\x00\x00" + b"\x00" * 60)
            t.expect_error(ws, "binary_not_allowed", "binary from client -> binary_not_allowed")
            t.still_usable(ws, "after binary")

            big = '{"type":"prompt","text":"' + "a" * (1 << 20) + '"}'
            ws.send_text(big)
            msg = t.expect_error(ws, "too_large", "1 MiB message -> too_large")
            if msg and not msg.get("fatal"):
                t.still_usable(ws, "after 1 MiB")
            else:
                c.check(msg is not None, "too_large is fatal: connection closes")

            # Fragmented but valid: the server must assemble it.
            text = '{"type":"start","prompt":"fragmented start","id":10}'
            ws.send_frame(0x1, text[:10], fin=False)
            ws.send_frame(0x0, text[10:30], fin=False)
            ws.send_frame(0x0, text[30:], fin=True)
            hello = ws.recv_json(want=("hello", "error"))
            c.check(hello.get("type") == "hello" and hello.get("role") == "owner",
                    "fragmented start -> hello as owner", str(hello)[:120])
            sid, token = hello.get("session"), hello.get("token")

            # ---- inside a session
            ws.send_json({"type": "start", "prompt": "again", "id": 11})
            t.expect_error(ws, "already_in_session", "second start -> already_in_session", 11)
            ws.send_json({"type": "join", "session": sid, "id": 12})
            t.expect_error(ws, "already_in_session", "join while in one -> already_in_session", 12)
            ws.send_json({"type": "prompt", "text": "x" * 2001, "id": 13})
            t.expect_error(ws, "bad_value", "2001-byte prompt -> bad_value", 13)
            ws.send_json({"type": "prompt", "text": "x", "transition": "wipe", "id": 14})
            t.expect_error(ws, "bad_value", "transition wipe -> bad_value", 14)
            ws.send_json({"type": "prompt", "text": "x", "transition": "blend", "chunks": 65,
                          "id": 15})
            t.expect_error(ws, "bad_value", "blend chunks 65 -> bad_value", 15)
            ws.send_json({"type": "prompt", "id": 16})
            t.expect_error(ws, "bad_message", "prompt without text -> bad_message", 16)
            ws.send_json({"type": "seed", "seed": "abc", "id": 17})
            t.expect_error(ws, "bad_message", "seed as a string -> bad_message", 17)
            ws.send_json({"type": "seed", "seed": -5, "id": 18})
            t.expect_error(ws, "bad_value", "negative seed -> bad_value", 18)
            ws.send_json({"type": "record", "action": "maybe", "id": 19})
            t.expect_error(ws, "bad_value", "record action maybe -> bad_value", 19)
            ws.send_json({"type": "anchor", "action": "pin", "id": 20})
            t.expect_error(ws, "unsupported", "anchor on the test pattern -> unsupported", 20)
            ws.send_json({"type": "prompt", "text": "a calm sea", "transition": "cut", "id": 21})
            ack = ws.recv_json(want=("ack", "error"))
            c.check(ack.get("type") == "ack" and ack.get("of") == "prompt" and ack.get("id") == 21,
                    "valid prompt after all that -> ack", str(ack)[:120])

            # Invalid UTF-8 in a text frame: an error or a 1007 close, never a crash.
            bad = fbtest.WS(d.host, d.port)
            bad.send_frame(0x1, b'{"type":"start","prompt":"\xff\xfe"}')
            try:
                m = bad.recv_json(want="error", timeout=5)
                c.check(m.get("code") in ("bad_json", "bad_message", "bad_value"),
                        "invalid UTF-8 -> error", str(m)[:120])
            except fbtest.Closed as e:
                c.check(e.code == 1007, "invalid UTF-8 -> close 1007", str(e))
            except TimeoutError as e:
                c.check(False, "invalid UTF-8 answered", str(e))
            bad.close()

            # ---- wrong tokens
            for tok, label in ((token[:-1] + ("x" if token[-1:] != "x" else "y"), "one char off"),
                               ("wrong", "short")):
                w = fbtest.WS(d.host, d.port)
                w.send_json({"type": "join", "session": sid, "token": tok, "id": 30})
                t.expect_error(w, "bad_token", f"join with a wrong token ({label}) -> bad_token",
                               30)
                w.close()
            # An empty token is not the owner's: refused, or joined as a viewer at most.
            w = fbtest.WS(d.host, d.port)
            w.send_json({"type": "join", "session": sid, "token": "", "id": 32})
            m = w.recv_json(want=("hello", "error"))
            c.check((m.get("type") == "error" and m.get("code") in ("bad_token", "bad_value",
                                                                     "bad_message"))
                    or (m.get("type") == "hello" and m.get("role") == "viewer"),
                    "join with an empty token never makes an owner", str(m)[:120])
            w.close()
            w = fbtest.WS(d.host, d.port)
            w.send_json({"type": "join", "session": sid, "token": "t" * 5000, "id": 31})
            t.expect_error(w, "bad_token", "join with a 5000-char token -> refused", 31,
                           codes=("bad_token", "bad_value"))
            w.close()

            # ---- a viewer trying to steer
            v = fbtest.WS(d.host, d.port)
            v.send_json({"type": "join", "session": sid})
            vh = v.recv_json(want=("hello", "error"))
            c.check(vh.get("role") == "viewer" and "token" not in vh, "join without token -> viewer",
                    str(vh)[:120])
            steering = [
                {"type": "prompt", "text": "hijack"},
                {"type": "seed", "seed": 1},
                {"type": "pause"},
                {"type": "resume"},
                {"type": "record", "action": "start"},
                {"type": "anchor", "action": "pin"},
                {"type": "reset"},
                {"type": "stop"},
            ]
            for i, m in enumerate(steering):
                m["id"] = 40 + i
                v.send_json(m)
                t.expect_error(v, "not_owner", f"viewer sends {m['type']} -> not_owner", 40 + i)
            # The viewer still gets video after all that.
            got = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and got < 10:
                kind, _ = v.recv(timeout=3)
                got += kind == "binary"
            c.check(got >= 10, "viewer still receives video", f"{got} frames")

            # ---- a flood of 500 messages from the viewer
            for i in range(500):
                v.send_json({"type": "stats", "fps": 30, "id": 1000 + i})
            limited = 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                try:
                    kind, payload = v.recv(timeout=0.5)
                except socket.timeout:
                    continue
                if kind == "text" and '"rate_limited"' in payload:
                    limited += 1
            c.check(limited >= 400, "flood of 500 -> rate_limited for the excess",
                    f"{limited} rate_limited")
            time.sleep(1.5)
            t.still_usable(v, "after the flood")
            v.close()

            # ---- path traversal and odd names on /recordings/
            paths = [
                "/recordings/../../etc/passwd",
                "/recordings/..%2f..%2fetc%2fpasswd",
                "/recordings/%2e%2e/%2e%2e/etc/passwd",
                "/recordings/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                "/recordings/....//....//etc/passwd",
                "/recordings/..\\..\\etc\\passwd",
                "/recordings/%252e%252e%252fetc%252fpasswd",
                "/recordings/../../etc/passwd%00.webm",
                "/recordings/x%00.webm",
                "/recordings/.webm",
                "/recordings/a/b.webm",
                "/recordings/passwd",
                "/recordings/nope.webm",
                "/recordings/",
                "/recordings/" + "a" * 3000 + ".webm",
            ]
            for p in paths:
                try:
                    status, _, body = d.http_get(p)
                except (OSError, RuntimeError) as e:
                    # libwebsockets hangs up on a %00 in the URI before the daemon sees the
                    # request: no response, nothing served, which is as safe as a 404.
                    c.check("%00" in p, f"GET {p[:60]} refused", f"connection closed: {e}")
                    continue
                c.check(status in (404, 400, 414, 431) and b"root:" not in body,
                        f"GET {p[:60]} -> {status}", f"{len(body)} bytes")
            status, _, body = d.http_get("/../../etc/passwd")
            c.check(b"root:" not in body, "GET /../../etc/passwd leaks nothing", str(status))

            # ---- the bystander and the daemon
            t_end = time.monotonic()
            n = bystander.frames_between(t_start, t_end)
            rate = n / (t_end - t_start)
            c.figure(f"bystander received {rate:.1f} fps during the bad-input run "
                     f"({t_end - t_start:.1f} s)")
            c.check(rate >= 0.9 * FPS, "bystander kept full frame rate", f"{rate:.1f} fps")
            last = bystander.rate(2.0)
            c.check(last >= 0.9 * FPS, "bystander still at full rate afterwards", f"{last:.1f}")
            c.check(bystander.error is None, "bystander connection intact", str(bystander.error))
            c.check(d.alive(), "daemon still running")
            metrics = d.metrics()
            c.check(len(metrics) > 0, "/metrics answers", f"{len(metrics)} samples")
            bystander.stop()
            ws.close()
        finally:
            rc = d.stop()
            c.check(rc == 0, "daemon exits 0", f"rc {rc}")
            if c.failed:
                print("---- daemon log (tail)\n" + "\n".join(d.log_lines[-40:]))
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
