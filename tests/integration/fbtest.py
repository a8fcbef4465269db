"""Shared pieces of the integration tests: run a flipbookd, talk flipbook.v1 over a plain
WebSocket client, fetch HTTP paths byte for byte, and probe media files with ffprobe/ffmpeg.

Standard library only. The WebSocket client is deliberately low level (raw socket, our own
framing) so tests can send what a browser never would: binary frames, oversized messages,
floods, fragments.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "flipbook.v1"
FRAME_HEADER = struct.Struct("<BBBBIq")  # version, type, flags, reserved, frame_no, pts_us


# ----------------------------------------------------------------------------- test plumbing


class Checks:
    """Collects named pass/fail results and prints them; exit status reflects failures."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.figures = []

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {what}" + (f"  ({detail})" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f"  ({detail})" if detail else ""), flush=True)
        return ok

    def figure(self, text):
        self.figures.append(text)
        print(f"figure: {text}", flush=True)

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


def common_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--flipbookd", required=True)
    p.add_argument("--flipbook", required=True)
    p.add_argument("--read-counters", default=None)
    p.add_argument("--ffprobe", default="ffprobe")
    p.add_argument("--ffmpeg", default="ffmpeg")
    p.add_argument("--web-root", default=None)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p


# ----------------------------------------------------------------------------- the daemon


class Daemon:
    """A flipbookd on 127.0.0.1 with --port 0; the port comes from its 'listening on' line."""

    LISTEN_RE = re.compile(r"listening on http://([^/:\s]+|\[[^\]]+\]):(\d+)/")

    def __init__(self, exe, workdir, width=256, height=256, fps=30, extra=(), web_root=None,
                 log_level="info", start_timeout=15.0):
        self.record_dir = os.path.join(workdir, "recordings")
        os.makedirs(self.record_dir, exist_ok=True)
        args = [exe, "--host", "127.0.0.1", "--port", "0", "--source", "testpattern",
                "--record-dir", self.record_dir, "--width", str(width), "--height", str(height),
                "--fps", str(fps), "--log-level", log_level]
        if web_root:
            args += ["--web-root", web_root]
        args += list(extra)
        self.fps = fps
        self.args = args
        self.log_lines = []
        self._log_lock = threading.Lock()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self._port_event = threading.Event()
        self.host = "127.0.0.1"
        self.port = None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._port_event.wait(start_timeout) or self.port is None:
            self.stop()
            raise RuntimeError("flipbookd did not print 'listening on http://HOST:PORT/' in "
                               f"{start_timeout} s; log:\n" + self.log())

    def _read_log(self):
        for line in self.proc.stdout:
            with self._log_lock:
                self.log_lines.append(line.rstrip("\n"))
            if self.port is None:
                m = self.LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(2))
                    self._port_event.set()
        self._port_event.set()

    def log(self):
        with self._log_lock:
            return "\n".join(self.log_lines)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def url(self, path="/ws"):
        return f"ws://{self.host}:{self.port}{path}"

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the daemon; returns its exit status (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(2)
        return rc

    def http_get(self, path, timeout=5.0, headers=None):
        return http_get(self.host, self.port, path, timeout, headers)

    def metrics(self):
        status, _, body = self.http_get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode("utf-8", "replace"))


def http_get(host, port, path, timeout=5.0, headers=None):
    """GET with the path sent exactly as given (no normalisation). Returns (status, headers
    dict with lower-case names, body bytes)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
               f"User-Agent: flipbook-tests\r\n{extra}\r\n")
        s.sendall(req.encode("latin-1"))
        data = b""
        deadline = time.monotonic() + timeout
        headers_end = -1
        length = None
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if headers_end < 0:
                headers_end = data.find(b"\r\n\r\n")
                if headers_end >= 0:
                    head = data[:headers_end].decode("latin-1")
                    m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    length = int(m.group(1)) if m else None
            if headers_end >= 0 and length is not None and len(data) >= headers_end + 4 + length:
                break
    finally:
        s.close()
    if headers_end < 0:
        raise RuntimeError(f"no HTTP response for {path!r}")
    head = data[:headers_end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = data[headers_end + 4:]
    if length is not None:
        body = body[:length]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, headers, body


def _dechunk(body):
    out = b""
    while body:
        line, _, rest = body.partition(b"\r\n")
        try:
            n = int(line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def parse_metrics(text):
    """Prometheus text -> {name_with_labels: float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) != 2:
            continue
        try:
            out[parts[0].strip()] = float(parts[1])
        except ValueError:
            pass
    return out


def metric_sum(metrics, pattern):
    """Sum of every sample whose name (with labels) matches the regex."""
    r = re.compile(pattern)
    return sum(v for k, v in metrics.items() if r.search(k))


# ----------------------------------------------------------------------------- WebSocket


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"connection closed ({code} {reason})")
        self.code = code
        self.reason = reason


class WS:
    """A minimal RFC 6455 client. recv() returns ('text', str) or ('binary', bytes) and raises
    Closed when the server closes; pings are answered inside recv()."""

    def __init__(self, host, port, path="/ws", protocol=SUBPROTOCOL, timeout=5.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Set before connect so the window the server sees is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._handshake(host, port, path, protocol, "http")

    def _handshake(self, host, port, path, protocol, scheme):
        """The HTTP upgrade on self.sock (plain or TLS); the page's origin uses `scheme`."""
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {scheme}://{host}:{port}\r\n")
        if protocol:
            req += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        req += "\r\n"
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed during the WebSocket handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"handshake refused: {lines[0]}")
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                for l in lines[1:] if ":" in l}
        want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.protocol = hdrs.get("sec-websocket-protocol")
        self.closed = None
        self._send_lock = threading.Lock()

    # -- sending
    def send_frame(self, opcode, payload, fin=True):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        # XOR through int arithmetic: fast enough for a 1 MiB message in pure Python.
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
        body = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
        with self._send_lock:
            self.sock.sendall(hdr + mask + body)

    def send_text(self, text):
        self.send_frame(0x1, text)

    def send_json(self, obj):
        self.send_frame(0x1, json.dumps(obj))

    def send_binary(self, data):
        self.send_frame(0x2, data)

    def close(self, code=1000, reason=""):
        try:
            self.send_frame(0x8, struct.pack("!H", code) + reason.encode())
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- receiving
    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise Closed(1006, "connection dropped")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_frame(self):
        b0, b1 = self._read_exact(2)
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        if b1 & 0x80:
            mask = self._read_exact(4)
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read_exact(n)))
        else:
            data = self._read_exact(n)
        return fin, opcode, data

    def recv(self, timeout=None):
        if self.closed:
            raise self.closed
        if timeout is not None:
            self.sock.settimeout(timeout)
        parts, kind = [], None
        while True:
            fin, opcode, data = self._read_frame()
            if opcode == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = Closed(code, data[2:].decode("utf-8", "replace"))
                try:
                    self.send_frame(0x8, data[:2])
                except OSError:
                    pass
                raise self.closed
            if opcode == 0x9:
                self.send_frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                kind = "text" if opcode == 0x1 else "binary"
                parts = [data]
            elif opcode == 0x0:
                parts.append(data)
            if fin:
                payload = b"".join(parts)
                return (kind, payload.decode("utf-8", "replace") if kind == "text" else payload)

    def recv_json(self, timeout=5.0, want=None, skip_binary=True):
        """Next text message as a dict (binary frames skipped); with `want`, skips text
        messages until one whose type is in want. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {want or 'text'} message within {timeout} s")
            try:
                kind, payload = self.recv(timeout=left)
            except socket.timeout:
                raise TimeoutError(f"no {want or 'text'} message within {timeout} s")
            if kind == "binary":
                if skip_binary:
                    continue
                return {"type": "<binary>", "data": payload}
            msg = json.loads(payload)
            if want is None or msg.get("type") in (want if isinstance(want, (list, tuple, set))
                                                   else (want,)):
                return msg


def parse_frame(data):
    """Binary message -> (is_key, frame_no, pts_us, payload)."""
    if len(data) < FRAME_HEADER.size:
        raise ValueError("short binary message")
    version, typ, flags, _, frame_no, pts = FRAME_HEADER.unpack_from(data)
    if version != 1 or typ != 1:
        raise ValueError(f"unknown frame header version {version} type {typ}")
    return bool(flags & 1), frame_no, pts, data[FRAME_HEADER.size:]


def start_session(daemon, prompt="integration test", **fields):
    """Opens a WS, starts a session; returns (ws, hello, config)."""
    ws = WS(daemon.host, daemon.port)
    msg = {"type": "start", "prompt": prompt}
    msg.update(fields)
    ws.send_json(msg)
    hello = ws.recv_json(want=("hello", "error"))
    if hello["type"] != "hello":
        raise RuntimeError(f"start refused: {hello}")
    config = ws.recv_json(want="config")
    return ws, hello, config


def join_session(daemon, session, token=None, rcvbuf=None):
    ws = WS(daemon.host, daemon.port, rcvbuf=rcvbuf)
    msg = {"type": "join", "session": session}
    if token:
        msg["token"] = token
    ws.send_json(msg)
    return ws


class FrameCounter(threading.Thread):
    """Reads a WS in the background: counts video frames (with arrival times) and keeps text
    messages. Used to measure the frame rate other clients get while a test misbehaves."""

    def __init__(self, ws, name="reader"):
        super().__init__(daemon=True, name=name)
        self.ws = ws
        self.lock = threading.Lock()
        self.arrivals = []  # (monotonic time, frame_no, is_key, pts_us, size)
        self.texts = []
        self.error = None
        self.stop_flag = False
        self.start()

    def run(self):
        try:
            while not self.stop_flag:
                try:
                    kind, payload = self.ws.recv(timeout=1.0)
                except socket.timeout:
                    continue
                now = time.monotonic()
                if kind == "binary":
                    key, no, pts, body = parse_frame(payload)
                    with self.lock:
                        self.arrivals.append((now, no, key, pts, len(body)))
                else:
                    with self.lock:
                        self.texts.append(json.loads(payload))
        except Exception as e:  # the test reads .error
            self.error = e

    def frames_between(self, t0, t1):
        with self.lock:
            return sum(1 for a in self.arrivals if t0 <= a[0] < t1)

    def rate(self, seconds):
        """Frames per second received over the last `seconds` (waits for them)."""
        t0 = time.monotonic()
        time.sleep(seconds)
        return self.frames_between(t0, t0 + seconds) / seconds

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def stop(self):
        self.stop_flag = True
        self.ws.close()
        self.join(3)


# ----------------------------------------------------------------------------- media


def ffprobe_json(ffprobe, path, *extra):
    out = subprocess.run([ffprobe, "-v", "error", "-of", "json", *extra, path],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"ffprobe failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def probe_video(ffprobe, path):
    """Returns dict: codec, width, height, frames, duration (None when the container has
    none), packet pts list (seconds)."""
    info = ffprobe_json(ffprobe, path, "-count_frames", "-show_streams", "-show_format",
                        "-select_streams", "v:0")
    st = info["streams"][0]
    fmt = info.get("format", {})
    dur = fmt.get("duration")
    pk = ffprobe_json(ffprobe, path, "-select_streams", "v:0", "-show_entries",
                      "packet=pts_time,flags")
    pts = [float(p["pts_time"]) for p in pk.get("packets", []) if "pts_time" in p]
    keys = sum(1 for p in pk.get("packets", []) if "K" in p.get("flags", ""))
    return {
        "codec": st.get("codec_name"),
        "width": st.get("width"),
        "height": st.get("height"),
        "frames": int(st.get("nb_read_frames", 0) or 0),
        "duration": float(dur) if dur not in (None, "N/A") else None,
        "pts": pts,
        "keyframes": keys,
        "color_space": st.get("color_space"),
        "color_range": st.get("color_range"),
    }


def decode_errors(ffmpeg, path):
    """What `ffmpeg -v error -i FILE -f null -` prints (empty when the file decodes cleanly)."""
    out = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    text = (out.stderr + out.stdout).strip()
    if out.returncode != 0 and not text:
        text = f"ffmpeg exited with {out.returncode}"
    return text


def read_counters(ffmpeg, reader, path, width, height):
    """Decodes the file to RGB24 and returns the test pattern's frame counter of each frame
    (-1 where none could be read)."""
    dec = subprocess.Popen([ffmpeg, "-nostdin", "-v", "error", "-i", path, "-f", "rawvideo",
                            "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    rd = subprocess.run([reader, str(width), str(height)], stdin=dec.stdout,
                        capture_output=True, text=True, timeout=120)
    dec.stdout.close()
    dec.wait(60)
    if rd.returncode != 0:
        raise RuntimeError(f"read_counters failed: {rd.stderr.strip()}")
    return [int(x) for x in rd.stdout.split()]


def consecutive(counters):
    """Indices i where counters[i+1] != counters[i] + 1 (mod 65536)."""
    return [i for i in range(len(counters) - 1)
            if counters[i] < 0 or (counters[i] + 1) % 65536 != counters[i + 1]]


class TempDir:
    def __init__(self, keep=False, prefix="flipbook-it-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.keep = keep

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        if self.keep:
            print(f"kept {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def run_cli(exe, *args, timeout=60):
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    return out.returncode, out.stdout, out.stderr
