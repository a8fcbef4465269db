#!/usr/bin/env python3
"""Soak benchmark for generation sessions (not part of ctest; see docs/operations.md).

Starts flipbookd on a model, runs N sessions for M minutes while steering them every few
seconds (prompt cut / recache / blend, seed, pin, anchor image, reset, pause/resume), records
the first session from start to end, and prints every 10 s: the daemon's RSS, and per session
the delivered frame rate, playback buffer, client queue, late frame slots, slowdown and the
latest prompt-to-frame time. At the end it checks that

  - memory stayed flat (RSS at the end within 10 % + 8 MiB of RSS after the first quarter,
    and not before 60 s),
  - there was no frame backlog (client queues and playback buffers bounded, frame rate held),
  - every control was acknowledged, no session failed,
  - the recording plays end to end (ffprobe reads every frame, ffmpeg decodes it without
    errors, its duration matches the frames written),
  - the daemon shuts down cleanly (exit 0 on SIGTERM).

Exit status 0 when every check passed, 1 otherwise. Standard library only (plus ffmpeg and
ffprobe on PATH).

  tests/sessions/soak.py --flipbookd build/bin/flipbookd --model default --minutes 30
"""
import argparse
import base64
import hashlib
import json
import os
import random
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
import urllib.request

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROMPTS = [
    "a red ball rolls across a wooden floor",
    "two blue cubes slide on ice at sunset",
    "a green kite over the sea",
    "waves on a rocky shore at dawn",
    "a yellow car drives through the rain",
    "snow falls on a quiet street",
]


class WS:
    """A small RFC 6455 client: masked sends, reassembly, pings answered."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: flipbook.v1\r\n\r\n"
                           ).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0] + b" ":
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
        if want not in head:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.lock = threading.Lock()
        self.sock.settimeout(None)

    def send(self, obj, opcode=1):
        data = json.dumps(obj).encode() if opcode == 1 else obj
        n = len(data)
        hdr = bytes([0x80 | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += struct.pack("!BH", 0x80 | 126, n)
        else:
            hdr += struct.pack("!BQ", 0x80 | 127, n)
        mask = os.urandom(4)
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big") if n else 0
        body = (int.from_bytes(data, "big") ^ m).to_bytes(n, "big") if n else b""
        with self.lock:
            self.sock.sendall(hdr + mask + body)

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """('text', dict) | ('binary', bytes) | ('close', code)."""
        parts = []
        kind = None
        while True:
            b0, b1 = self._exact(2)
            op, n = b0 & 15, b1 & 127
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            data = self._exact(n)
            if op == 8:
                return ("close", struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005)
            if op == 9:
                self.send(data, opcode=10)
                continue
            if op == 10:
                continue
            if op in (1, 2):
                kind, parts = op, [data]
            else:
                parts.append(data)
            if b0 & 0x80:
                payload = b"".join(parts)
                return ("text", json.loads(payload)) if kind == 1 else ("binary", payload)


class Session(threading.Thread):
    """One session: starts it, reads everything, keeps figures."""

    def __init__(self, port, index):
        super().__init__(daemon=True)
        self.index = index
        self.ws = WS(port)
        self.ws.send({"type": "start", "prompt": PROMPTS[index % len(PROMPTS)], "seed": index})
        kind, hello = self.ws.recv()
        if kind != "text" or hello.get("type") != "hello":
            raise RuntimeError(f"start refused: {hello}")
        self.id = hello["session"]
        self.config = None
        self.frames = 0
        self.last_no = -1
        self.gaps = 0
        self.stats = {}
        self.acks = {}
        self.errors = []
        self.ended = None
        self.recording = []
        self.lock = threading.Lock()
        self.next_id = 1
        self.paused_since = None   # monotonic time of the pause sent, while paused
        self.paused_total = 0.0    # seconds spent paused before that

    def run(self):
        try:
            while True:
                kind, msg = self.ws.recv()
                if kind == "binary":
                    no = struct.unpack_from("<I", msg, 4)[0]
                    with self.lock:
                        if self.last_no >= 0 and no != self.last_no + 1:
                            self.gaps += 1
                        self.last_no = no
                        self.frames += 1
                elif kind == "close":
                    with self.lock:
                        self.ended = self.ended or f"closed {msg}"
                    return
                else:
                    t = msg.get("type")
                    with self.lock:
                        if t == "config":
                            self.config = msg
                        elif t == "stats":
                            self.stats = msg
                        elif t == "ack":
                            self.acks[msg.get("id")] = msg
                        elif t == "error":
                            self.errors.append(msg)
                        elif t == "end":
                            self.ended = msg.get("reason")
                        elif t == "recording":
                            self.recording.append(msg)
        except (EOFError, OSError):
            with self.lock:
                self.ended = self.ended or "connection lost"

    def paused_seconds(self, now):
        return self.paused_total + (now - self.paused_since if self.paused_since else 0.0)

    def control(self, msg):
        now = time.monotonic()
        if msg.get("type") == "pause" and self.paused_since is None:
            self.paused_since = now
        elif msg.get("type") == "resume" and self.paused_since is not None:
            self.paused_total += now - self.paused_since
            self.paused_since = None
        with self.lock:
            msg["id"] = self.next_id
            self.next_id += 1
        self.ws.send(msg)
        return msg["id"]

    def snapshot(self):
        with self.lock:
            return self.frames, dict(self.stats)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def anchor_image(session, width, height, part_chars):
    rgb = bytes(random.randrange(256) for _ in range(3)) * (width * height)
    data = base64.b64encode(rgb).decode()
    parts = [data[i:i + part_chars] for i in range(0, len(data), part_chars)] or [""]
    ident = None
    for k, p in enumerate(parts):
        msg = {"type": "anchor", "action": "image", "width": width, "height": height,
               "format": "rgb24", "data": p, "part": k, "parts": len(parts)}
        if ident is None:
            ident = session.control(msg)
        else:
            msg["id"] = ident
            session.ws.send(msg)
    return ident


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flipbookd", required=True)
    ap.add_argument("--model", required=True, help="model file or 'default'")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--steer-every", type=float, default=3.0, help="seconds between controls")
    ap.add_argument("--report-every", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("extra", nargs="*", help="more flipbookd options (after --)")
    args = ap.parse_args()
    for tool in ("ffprobe", "ffmpeg"):
        if not shutil.which(tool):
            sys.exit(f"soak: {tool} is not on PATH")

    work = tempfile.mkdtemp(prefix="flipbook-soak-")
    log = open(os.path.join(work, "flipbookd.log"), "w+")
    cmd = [args.flipbookd, "--port", "0", "--model", args.model, "--record-dir",
           os.path.join(work, "rec"), "--max-sessions", str(max(4, args.sessions)),
           *args.extra]
    daemon = subprocess.Popen(cmd, stderr=log)
    port = None
    deadline = time.monotonic() + 120
    while port is None and time.monotonic() < deadline and daemon.poll() is None:
        time.sleep(0.2)
        log.seek(0)
        m = re.search(r"listening on http://[^:]+:(\d+)/", log.read())
        port = int(m.group(1)) if m else None
    if port is None:
        log.seek(0)
        sys.exit("soak: flipbookd did not start:\n" + log.read())
    print(f"soak: flipbookd pid {daemon.pid} port {port}, {args.sessions} session(s), "
          f"{args.minutes:g} min, a control every {args.steer_every:g} s; files in {work}")

    try:
        return soak(args, daemon, port, work)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def soak(args, daemon, port, work):
    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    sessions = [Session(port, i) for i in range(args.sessions)]
    for s in sessions:
        s.start()
    time.sleep(1.0)
    cfg = sessions[0].config or {}
    fps = cfg.get("fps", 16)
    width, height = cfg.get("width", 64), cfg.get("height", 64)
    anchor = cfg.get("anchorImage")
    rec_id = sessions[0].control({"type": "record", "action": "start"})
    rec_frames0 = sessions[0].snapshot()[0]
    paused = None

    t_start = time.monotonic()
    t_end = t_start + args.minutes * 60
    next_steer = t_start + args.steer_every
    next_report = t_start
    rss_series = []
    sent = {}  # (session index, id) -> description
    last_frames = [s.snapshot()[0] for s in sessions]
    last_paused = [0.0 for s in sessions]
    last_t = t_start
    worst_queue = worst_buffer_over = 0
    step = 0
    rate_low = []
    while time.monotonic() < t_end:
        now = time.monotonic()
        if now >= next_steer:
            next_steer += args.steer_every
            s = sessions[step % len(sessions)]
            kind = step % 10
            if kind in (0, 3, 6):
                tr = ["cut", "recache", "blend"][(step // 10) % 3]
                msg = {"type": "prompt", "text": random.choice(PROMPTS), "transition": tr}
                if tr == "blend":
                    msg["chunks"] = 3
                desc = f"prompt {tr}"
            elif kind == 1:
                msg, desc = {"type": "seed", "seed": random.randrange(1 << 31)}, "seed"
            elif kind == 2:
                msg, desc = {"type": "anchor", "action": "pin"}, "pin"
            elif kind == 4 and anchor:
                sent[(s.index, anchor_image(s, width, height, anchor["partChars"]))] = "image"
                msg = None
            elif kind == 5:
                msg, desc = {"type": "pause"}, "pause"
                paused = s
            elif kind == 7 and paused is not None:
                s, paused = paused, None
                msg, desc = {"type": "resume"}, "resume"
            elif kind == 9 and step % 30 == 9:
                msg, desc = {"type": "reset"}, "reset"
            else:
                msg, desc = {"type": "prompt", "text": random.choice(PROMPTS)}, "prompt cut"
            if msg:
                sent[(s.index, s.control(msg))] = desc
            step += 1
        if now >= next_report:
            next_report += args.report_every
            rss = rss_kib(daemon.pid)
            rss_series.append((now - t_start, rss))
            line = [f"{now - t_start:7.0f}s rss {rss / 1024:7.1f} MiB"]
            dt = max(now - last_t, 1e-3)
            for i, s in enumerate(sessions):
                frames, st = s.snapshot()
                # the rate while not paused (pauses are part of the steering)
                p_secs = s.paused_seconds(now)
                running = dt - (p_secs - last_paused[i])
                last_paused[i] = p_secs
                rate = (frames - last_frames[i]) / running if running > 1.0 else fps
                last_frames[i] = frames
                worst_queue = max(worst_queue, st.get("queue", 0))
                if st.get("buffer", 0) > st.get("bufferMax", 1 << 30):
                    worst_buffer_over += 1
                if now - t_start > 5 and rate < 0.8 * fps / st.get("slowdown", 1):
                    rate_low.append((i, round(now - t_start), round(rate, 1)))
                pl = st.get("promptLatencyMs")
                line.append(f"| s{i} {rate:5.1f} fps buf {st.get('buffer', '-'):>2} q {st.get('queue', '-')}"
                            f" late {st.get('late', '-')} x{st.get('slowdown', '-')}"
                            f" p2f {pl if pl is not None else '-'} ms{' P' if st.get('paused') else ''}")
            last_t = now
            print(" ".join(line), flush=True)
        time.sleep(0.05)

    # make sure nobody stays paused, then stop the recording
    for s in sessions:
        sent[(s.index, s.control({"type": "resume"}))] = "resume"
    stop_id = sessions[0].control({"type": "record", "action": "stop"})
    run_seconds = time.monotonic() - t_start
    time.sleep(2.0)
    # Frames encoded while recording: the acks of start and stop carry the session's frame
    # number when they took effect (frames the client receives after the stop are not in it).
    a0, a1 = sessions[0].acks.get(rec_id, {}), sessions[0].acks.get(stop_id, {})
    if "frame" in a0 and "frame" in a1:
        rec_frames = a1["frame"] - a0["frame"]
    else:
        rec_frames = sessions[0].snapshot()[0] - rec_frames0

    for s in sessions:
        check(s.ended is None, f"session {s.index} ran to the end ({s.ended or 'alive'})")
        check(s.gaps == 0, f"session {s.index}: frame numbers without gaps ({s.gaps} gaps)")
        check(not s.errors, f"session {s.index}: no error replies ({s.errors[:3]})")
    missing = [(k, v) for k, v in sent.items() if k[1] not in sessions[k[0]].acks]
    check(not missing, f"every control acknowledged ({len(sent)} sent, missing {missing[:5]})")
    check(worst_queue <= 15, f"client queues stayed short (worst {worst_queue} frames)")
    check(worst_buffer_over == 0, "playback buffers stayed within their bound")
    check(len(rate_low) <= max(2, len(rss_series) * len(sessions) // 20),
          f"frame rate held while not paused (intervals below 80 %: {rate_low[:8]})")
    # The baseline is taken once every kind of control has run at least once (the first
    # anchor image, recache and blend allocate their buffers then): after the first quarter
    # of the run, and not before 60 s.
    warm = [r for r in rss_series if r[0] >= max(60.0, run_seconds / 4)]
    if len(warm) >= 3:
        base = warm[0][1]
        end = rss_series[-1][1]
        check(end <= base * 1.10 + 8 * 1024,
              f"memory flat: {base / 1024:.1f} MiB at {warm[0][0]:.0f} s, {end / 1024:.1f} MiB "
              f"at the end")
    else:
        print("note  memory: run too short for a flat-memory check (needs 90 s or more)")

    stopped = [m for m in sessions[0].recording if m.get("state") == "stopped"]
    check(rec_id in sessions[0].acks and stopped, "the recording started and stopped")
    if stopped:
        url = f"http://127.0.0.1:{port}{stopped[-1]['url']}"
        path = os.path.join(work, "soak.webm")
        with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
            shutil.copyfileobj(r, f)
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                                "-show_entries", "stream=codec_name,nb_read_frames:format=duration",
                                "-of", "json", path], capture_output=True, text=True)
        info = json.loads(probe.stdout or "{}")
        stream = (info.get("streams") or [{}])[0]
        frames = int(stream.get("nb_read_frames", 0))
        duration = float(info.get("format", {}).get("duration", 0))
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
                             capture_output=True, text=True)
        print(f"recording: {os.path.getsize(path)} bytes, {frames} frames, {duration:.1f} s")
        check(probe.returncode == 0 and stream.get("codec_name") == "vp9", "ffprobe reads the recording")
        # the recording starts at the first keyframe after `record` (forced, but forced
        # keyframes are at least ~1 s apart)
        check(rec_frames - fps - 2 <= frames <= rec_frames + 2,
              f"the recording holds the whole run ({frames} frames; {rec_frames} were sent)")
        # timestamps follow the frame clock; a pause adds the time it lasted
        check(frames / fps - 1.0 <= duration <= run_seconds + 3.0,
              f"its duration matches ({duration:.1f} s for {frames} frames in a "
              f"{run_seconds:.0f} s run)")
        check(dec.returncode == 0 and not dec.stderr.strip(),
              f"ffmpeg decodes it end to end without errors {dec.stderr.strip()[:200]}")

    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        rc = -1
    check(rc == 0, f"flipbookd exited cleanly (status {rc})")
    if failures:
        print(f"soak: {len(failures)} check(s) failed; files kept in {work}")
        return 1
    print("soak: all checks passed")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
