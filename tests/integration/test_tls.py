#!/usr/bin/env python3
"""TLS: flipbookd with --tls-cert/--tls-key serves the page, /metrics and recordings over https
and the stream over wss.

Makes a throw-away self-signed certificate for 127.0.0.1 with `openssl req` (skipped, status
77, when the openssl command is not installed), starts the daemon on it (test pattern), and
checks:
  - https://127.0.0.1:PORT/ serves the web client to a client that trusts only this certificate
    (so the daemon really presents it, with a matching name), and /metrics answers over https;
  - a client offering h2 and http/1.1 in ALPN (as browsers do) gets http/1.1;
  - plain http on the same port is not served;
  - a wss client (trusting the certificate) gets the `server` answer to `info`, starts a
    session and receives hello, config and video frames;
  - `flipbook record --insecure` over wss saves a WebM that ffprobe reads as VP9 at the asked
    size with the test pattern's frame counter running on, and without --insecure the CLI
    refuses the self-signed certificate with a message naming --insecure;
  - the daemon exits 0 on SIGTERM.
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbtest  # noqa: E402

SKIP = 77
W, H, FPS = 128, 128, 30


class TlsDaemon(fbtest.Daemon):
    LISTEN_RE = re.compile(r"listening on https://([^/:\s]+|\[[^\]]+\]):(\d+)/")


class TlsWS(fbtest.WS):
    """fbtest.WS over TLS: the same framing on an ssl-wrapped socket."""

    def __init__(self, host, port, context, path="/ws", timeout=5.0):  # noqa: D107
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.sock.settimeout(timeout)
        self._handshake(host, port, path, fbtest.SUBPROTOCOL, "https")


def https_get(host, port, path, context, timeout=5.0):
    """GET over TLS; returns (status, headers, body, the server's certificate in DER)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    with context.wrap_socket(raw, server_hostname=host) as s:
        der = s.getpeercert(binary_form=True)
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
                   f"User-Agent: flipbook-tests\r\n\r\n").encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", data[:end])
                if m and len(data) >= end + 4 + int(m.group(1)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
               for l in lines[1:] if ":" in l}
    return status, headers, body, der


def make_cert(openssl, folder):
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    out = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                          "-days", "2", "-subj", "/CN=127.0.0.1",
                          "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"openssl req failed: {out.stderr.strip()}")
    return cert, key


def main():
    p = fbtest.common_args(__doc__)
    a = p.parse_args()
    openssl = shutil.which("openssl")
    if not openssl:
        print("SKIP: the openssl command is not installed (apt-get install openssl)")
        return SKIP
    c = fbtest.Checks("integration_tls")
    with fbtest.TempDir(a.keep) as tmp:
        cert, key = make_cert(openssl, tmp)
        trust = ssl.create_default_context(cafile=cert)   # trusts this certificate only
        with open(cert) as f:
            cert_der = ssl.PEM_cert_to_DER_cert(f.read())
        d = TlsDaemon(a.flipbookd, tmp, width=W, height=H, fps=FPS, web_root=a.web_root,
                      extra=["--tls-cert", cert, "--tls-key", key])
        try:
            c.check(True, "daemon listens on https", f"port {d.port}")
            # The page and /metrics over https, verified against the certificate.
            status, hdrs, body, der = https_get(d.host, d.port, "/", trust)
            c.check(status == 200 and b"app.js" in body and "text/html" in hdrs.get("content-type", ""),
                    "the page is served over https", f"{status} {hdrs.get('content-type')}, {len(body)} bytes")
            c.check(der == cert_der, "the daemon presents the given certificate")
            status, hdrs, body, _ = https_get(d.host, d.port, "/app.js", trust)
            c.check(status == 200 and b"flipbook.v1" in body, "the script is served over https", str(status))
            status, _, body, _ = https_get(d.host, d.port, "/metrics", trust)
            c.check(status == 200 and b"flipbook_" in body, "/metrics over https", str(status))

            # Browsers offer HTTP/2 through ALPN; the daemon's static files and WebSockets are
            # HTTP/1.1, so it must pick http/1.1 (with h2 picked, Chromium fails to load the
            # page's script: its body goes out in frames larger than HTTP/2 allows).
            alpn_ctx = ssl.create_default_context(cafile=cert)
            alpn_ctx.set_alpn_protocols(["h2", "http/1.1"])
            with alpn_ctx.wrap_socket(socket.create_connection((d.host, d.port), timeout=5),
                                      server_hostname=d.host) as s:
                picked = s.selected_alpn_protocol()
            c.check(picked in (None, "http/1.1"), "ALPN: a browser offering h2 gets http/1.1", str(picked))

            # Plain http on the TLS port is not served.
            try:
                st, _, b = fbtest.http_get(d.host, d.port, "/", timeout=3.0)
                plain = f"{st}, {len(b)} bytes"
                served = st == 200 and b"app.js" in b
            except (RuntimeError, OSError, ValueError, IndexError) as e:
                plain, served = f"refused: {e}", False
            c.check(not served, "plain http on the TLS port is not served", plain)

            # wss with a client that trusts the certificate: info, start, video.
            ws = TlsWS(d.host, d.port, trust)
            c.check(ws.protocol == fbtest.SUBPROTOCOL, "wss handshake with subprotocol flipbook.v1", str(ws.protocol))
            ws.send_json({"type": "info", "id": 1})
            info = ws.recv_json(want=("server", "error"))
            c.check(info.get("type") == "server" and info.get("id") == 1 and info.get("source") == "testpattern"
                    and info.get("width") == W and info.get("prompts") == [],
                    "`info` answered by `server` over wss", json.dumps(info)[:160])
            ws.send_json({"type": "start", "prompt": "tls", "seed": 1})
            hello = ws.recv_json(want=("hello", "error"))
            config = ws.recv_json(want="config")
            c.check(hello.get("type") == "hello" and hello.get("role") == "owner" and config.get("width") == W,
                    "session started over wss", f"{hello.get('type')} {config.get('width')}x{config.get('height')}")
            frames, first_key = 0, None
            while frames < 20:
                kind, payload = ws.recv(timeout=5.0)
                if kind == "binary":
                    key_flag, no, _, _ = fbtest.parse_frame(payload)
                    if first_key is None:
                        first_key = key_flag
                    frames += 1
            c.check(frames == 20 and first_key, "video frames arrive over wss, starting at a keyframe", f"{frames} frames")
            ws.close()

            # The CLI over wss: --insecure accepts the self-signed certificate...
            url = f"wss://{d.host}:{d.port}/ws"
            out = os.path.join(tmp, "tls.webm")
            rc, so, se = fbtest.run_cli(a.flipbook, "record", "--url", url, "--insecure", "--prompt",
                                        "over tls", "--seconds", "2", "-o", out, timeout=60)
            c.check(rc == 0 and os.path.exists(out), "flipbook record --insecure over wss", f"rc {rc} {se.strip()[-200:]}")
            if rc == 0 and os.path.exists(out):
                v = fbtest.probe_video(a.ffprobe, out)
                c.check(v["codec"] == "vp9" and v["width"] == W and v["height"] == H and v["frames"] >= FPS,
                        "the recording is VP9 at the asked size", f"{v['codec']} {v['width']}x{v['height']}, {v['frames']} frames")
                if a.read_counters:
                    counters = fbtest.read_counters(a.ffmpeg, a.read_counters, out, W, H)
                    gaps = fbtest.consecutive(counters)
                    c.check(len(counters) >= FPS and not gaps, "its frames are consecutive test-pattern frames",
                            f"{len(counters)} frames, {len(gaps)} gaps")
            # ... and without it the CLI refuses, saying how to accept it.
            rc, so, se = fbtest.run_cli(a.flipbook, "record", "--url", url, "--prompt", "x", "--seconds", "1",
                                        "-o", os.path.join(tmp, "refused.webm"), timeout=30)
            c.check(rc != 0 and "--insecure" in se, "without --insecure the self-signed certificate is refused",
                    f"rc {rc}: {se.strip()[:160]}")
        finally:
            rc = d.stop()
            c.check(rc == 0, "daemon exits 0 on SIGTERM", str(rc))
            if c.failed:
                print("---- daemon log (tail)\n" + "\n".join(d.log().splitlines()[-30:]))
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
