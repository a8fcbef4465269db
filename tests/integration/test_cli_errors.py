#!/usr/bin/env python3
"""The flipbook CLI without a daemon: help, usage errors (exit 2), bad URLs (exit 2 with the
reason), a refused port and a port that accepts but never answers (exit 1, "cannot connect to
HOST:PORT: reason"), all quickly and without hanging."""

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402


def free_port():
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flipbook", required=True)
    a = p.parse_args()
    c = fbtest.Checks("integration_cli_errors")
    fb = a.flipbook

    rc, out, err = fbtest.run_cli(fb, "--help")
    c.check(rc == 0 and "record" in out and "prompt" in out and "watch" in out,
            "flipbook --help lists the subcommands", f"rc {rc}")
    rc, out, err = fbtest.run_cli(fb)
    c.check(rc == 2 and "usage" in err, "no command -> exit 2 with usage", f"rc {rc}")
    rc, out, err = fbtest.run_cli(fb, "frobnicate")
    c.check(rc == 2 and "unknown command" in err, "unknown command -> exit 2", err.strip()[:80])
    for cmd in ("record", "prompt", "watch"):
        rc, out, err = fbtest.run_cli(fb, cmd, "--help")
        c.check(rc == 0 and f"usage: flipbook {cmd}" in out and "--url" in out,
                f"flipbook {cmd} --help", f"rc {rc}")
        rc2, out2, _ = fbtest.run_cli(fb, "help", cmd)
        c.check(rc2 == 0 and out2 == out, f"flipbook help {cmd} prints the same help")

    rec = ["record", "--prompt", "x", "--seconds", "1", "-o", os.devnull]
    rc, out, err = fbtest.run_cli(fb, *rec)
    c.check(rc == 2 and "--url is required" in err, "missing --url -> exit 2", err.strip())
    rc, out, err = fbtest.run_cli(fb, *rec, "--url", "ws://127.0.0.1:1/ws", "--bogus")
    c.check(rc == 2 and "unknown option" in err, "unknown option -> exit 2", err.strip())
    rc, out, err = fbtest.run_cli(fb, *rec, "--url", "ws://127.0.0.1:1/ws", "--seed", "-3")
    c.check(rc == 2 and "--seed" in err, "negative seed -> exit 2", err.strip())
    rc, out, err = fbtest.run_cli(fb, "record", "--url", "ws://127.0.0.1:1/ws", "--prompt", "x",
                                  "--seconds", "abc", "-o", os.devnull)
    c.check(rc == 2 and "--seconds" in err, "non-numeric --seconds -> exit 2", err.strip())
    rc, out, err = fbtest.run_cli(fb, "prompt", "--url", "ws://127.0.0.1:1/ws", "--session", "s",
                                  "--token", "t", "--text", "x", "--transition", "wipe")
    c.check(rc == 2 and "cut, recache or blend" in err, "bad --transition -> exit 2", err.strip())

    bad_urls = {
        "http://127.0.0.1:8080/ws": "HTTP URL",
        "127.0.0.1:8080": "ws://",
        "ws://": "no host",
        "ws://127.0.0.1:0/ws": "between 1 and 65535",
        "ws://127.0.0.1:70000/ws": "between 1 and 65535",
        "ws://127.0.0.1:http/ws": "number",
        "ws://user@127.0.0.1/ws": "user info",
        "ws://[::1/ws": "unterminated",
    }
    for url, word in bad_urls.items():
        rc, out, err = fbtest.run_cli(fb, "watch", "--url", url, "--session", "s")
        c.check(rc == 2 and "bad URL" in err and word in err, f"bad URL {url!r} -> exit 2",
                err.strip())

    port = free_port()
    t0 = time.monotonic()
    rc, out, err = fbtest.run_cli(fb, *rec, "--url", f"ws://127.0.0.1:{port}/ws")
    dt = time.monotonic() - t0
    c.check(rc == 1 and f"cannot connect to 127.0.0.1:{port}: Connection refused" in err,
            "refused port -> exit 1 'cannot connect ...: Connection refused'", err.strip())
    c.check(dt < 5, "refusal reported quickly", f"{dt:.2f} s")
    c.check(out == "", "nothing printed on stdout on failure")

    # A port that accepts the TCP connection but never answers the handshake.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    sport = silent.getsockname()[1]
    t0 = time.monotonic()
    rc, out, err = fbtest.run_cli(fb, "prompt", "--url", f"ws://127.0.0.1:{sport}/ws",
                                  "--session", "s", "--token", "t", "--text", "x",
                                  "--timeout", "1")
    dt = time.monotonic() - t0
    silent.close()
    c.check(rc == 1 and f"cannot connect to 127.0.0.1:{sport}: timed out" in err,
            "silent server -> exit 1 'timed out'", err.strip())
    c.check(dt < 4, "connect timeout honoured", f"{dt:.2f} s")

    # A plain HTTP server (not WebSocket) on the port: the handshake fails, clearly.
    http = socket.socket()
    http.bind(("127.0.0.1", 0))
    http.listen(4)
    hport = http.getsockname()[1]
    import threading

    def answer():
        try:
            conn, _ = http.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.5)
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    rc, out, err = fbtest.run_cli(fb, "watch", "--url", f"ws://127.0.0.1:{hport}/ws",
                                  "--session", "s", "--timeout", "3")
    http.close()
    c.check(rc == 1 and f"cannot connect to 127.0.0.1:{hport}" in err and "handshake" in err,
            "non-WebSocket server -> exit 1 'handshake failed'", err.strip())
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
