"""Video generators for the evaluation: one call = one stream with an optional prompt switch.

    backend.generate(prompts, switch_frame, n_frames, seed, skip=0) -> uint8 [n_frames, H, W, 3]

prompts[0] is the prompt from frame 0, prompts[1] (if switch_frame >= 0) the prompt from the
first chunk boundary at or after switch_frame; frames [skip, skip + n_frames) of the stream
come back.

    RefBackend    the PyTorch reference (flipbook_ref): the sampler's chunk loop and the
                  streaming TAEHV decoder in this process (needs torch)
    CBackend      the C engine through `flipbook generate ... -o FILE.rgb` (--switch, --skip,
                  --transition), read back from the raw RGB file
    WorldBackend  not a generator: the world's own clip of an item (the ceiling column, and
                  a self-check of the scoring)
    AEBackend     the world's clip through the model's autoencoder (encode, then decode): the
                  ceiling that the autoencoder alone sets on every figure (needs torch)

model_info(path) reads a model file's geometry from its safetensors header without torch.

Thread-safety: one backend per thread.
"""
import glob
import json
import os
import struct
import subprocess
import tempfile

import numpy as np

from .sets import Geometry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSITIONS = ("cut", "recache", "blend")


def resolve_model(path):
    """'default' -> models/default/model.safetensors of this checkout (or $FLIPBOOK_MODELS)."""
    if path != "default":
        return path
    base = os.environ.get("FLIPBOOK_MODELS") or os.path.join(ROOT, "models")
    return os.path.join(base, "default", "model.safetensors")


def read_header(path):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("%s: not a safetensors file (shorter than 8 bytes)" % path)
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise ValueError("%s: not a safetensors file (header length %d)" % (path, n))
        return json.loads(f.read(n).decode("utf-8"))


def model_info(path):
    """(Geometry, config dict, name) of a flipbook model file."""
    h = read_header(path)
    meta = h.get("__metadata__") or {}
    if meta.get("flipbook.format") != "1" or "flipbook.config" not in meta:
        raise ValueError("%s: not a flipbook model file (no flipbook.format/config metadata)" % path)
    cfg = json.loads(meta["flipbook.config"])
    vae, stream = cfg["vae"], cfg["stream"]
    s_up = 2 ** sum(bool(b) for b in vae["decoder_space_upscale"]) * vae.get("patch_size", 1)
    t_up = 2 ** sum(bool(b) for b in vae["decoder_time_upscale"])
    per = stream["chunk_frames"] * t_up
    geom = Geometry(height=stream["latent_height"] * s_up, width=stream["latent_width"] * s_up,
                    fps=float(stream.get("fps", 16)), chunk_frames=per,
                    first_chunk_frames=per - vae.get("frames_to_trim", 0))
    return geom, cfg, meta.get("flipbook.name", "model")


def parse_transition(text):
    """'cut' | 'recache' | 'blend' | 'blend:N' -> (name, blend chunks)."""
    name, _, n = text.partition(":")
    if name not in TRANSITIONS or (n and (name != "blend" or not n.isdigit() or
                                          not 1 <= int(n) <= 1000)):
        raise ValueError("transition must be cut, recache, blend or blend:N (N 1-1000), got %r"
                         % text)
    return name, int(n) if n else 4


def _check_request(prompts, switch_frame, n_frames, skip):
    if n_frames < 1 or skip < 0:
        raise ValueError("need n_frames >= 1 and skip >= 0")
    if switch_frame >= 0 and len(prompts) < 2:
        raise ValueError("a switch needs two prompts")


class WorldBackend:
    name = "world"

    def __init__(self, geom):
        self.geom = geom

    def generate_item(self, item, skip=0):
        frames, _ = item.world_clip(self.geom)
        return frames


def _load_reference(model_path, threads):
    """(torch, the reference Model) with torch limited to threads (None leaves torch's)."""
    import torch
    from flipbook_ref.export import load_model
    if threads:
        torch.set_num_threads(int(threads))
    return torch, load_model(model_path)


def _to_u8(frames):
    """Frames [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3], rounded."""
    a = frames.movedim(-3, -1).numpy() * 255.0 + 0.5
    return np.clip(a, 0, 255).astype(np.uint8)


class AEBackend:
    name = "ae"

    def __init__(self, model_path, threads=None):
        self.torch, model = _load_reference(model_path, threads)
        self.vae = model.vae
        self.geom = model_info(model_path)[0]

    def generate_item(self, item, skip=0):
        torch = self.torch
        frames, _ = item.world_clip(self.geom)                  # [T, H, W, 3] uint8
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None]
        with torch.no_grad():
            y = self.vae.decode(self.vae.encode(x))[0]         # [T', 3, H, W] in [0, 1]
        # The decoder trims the first latent's leading frames; pad them back with the first
        # decoded frame so the clip lines up with the world's frame for frame.
        lost = x.shape[1] - y.shape[0]
        if lost > 0:
            y = torch.cat([y[:1].expand(lost, -1, -1, -1), y], 0)
        return _to_u8(y[:x.shape[1]])


class RefBackend:
    """The reference sampler in-process. threads: torch threads (None leaves torch's)."""
    name = "ref"

    def __init__(self, model_path, threads=None, transition="cut"):
        self.torch, self.model = _load_reference(model_path, threads)
        self.geom, self.cfg, self.model_name = model_info(model_path)
        self.transition, self.blend_chunks = parse_transition(transition)
        self._ctx = {}

    def _context(self, text):
        c = self._ctx.get(text)
        if c is None:
            if len(self._ctx) > 64:
                self._ctx.clear()
            c = self._ctx[text] = self.model.encode_prompt(text)[1]
        return c

    # Clips up to this many latent frames are decoded in one parallel pass at the end (5x
    # faster than one latent at a time, equal up to summation order); longer runs stream.
    PARALLEL_DECODE = 64

    def generate(self, prompts, switch_frame, n_frames, seed, skip=0):
        from flipbook_ref.taehv import StreamDecoder
        _check_request(prompts, switch_frame, n_frames, skip)
        torch = self.torch
        g = self.geom
        total = skip + n_frames
        n_chunks = g.chunk_of(total - 1) + 1
        lat_per_chunk = self.cfg["stream"]["chunk_frames"]
        parallel = n_chunks * lat_per_chunk <= self.PARALLEL_DECODE
        out = np.empty((n_frames, g.height, g.width, 3), np.uint8)
        state = {"produced": 0, "written": 0}

        def emit(frames):                                      # [N, 3, H, W] in [0, 1]
            for fr in frames:
                p, w = state["produced"], state["written"]
                if p >= skip and w < n_frames:
                    out[w] = _to_u8(fr)
                    state["written"] += 1
                state["produced"] += 1

        with torch.no_grad():
            stream = self.model.stream(self._context(prompts[0]), seeds=[seed])
            dec = StreamDecoder(self.model.vae)
            lats = []
            switched = switch_frame < 0
            for chunk in range(n_chunks):
                if not switched and g.boundary(chunk) >= switch_frame:
                    stream.set_prompt(self._context(prompts[1]), self.transition, self.blend_chunks)
                    switched = True
                x0 = stream.next_chunk()                       # [1, C, F, h, w]
                if parallel:
                    lats.append(x0)
                else:
                    for f in range(x0.shape[2]):
                        emit([fr[0] for fr in dec.push(x0[:, :, f])])
            if parallel:
                z = torch.cat(lats, 2).permute(0, 2, 1, 3, 4)  # [1, F, C, h, w]
                emit(self.model.vae.decode(z)[0])
        if state["written"] != n_frames:
            raise RuntimeError("the reference produced %d of %d frames" % (state["written"], n_frames))
        return out

    def generate_item(self, item, skip=0):
        return self.generate(item.prompts, item.switch_frame, item.n_frames, item.seed, skip)


def _sanitized(build_dir):
    """True when build_dir was configured with FLIPBOOK_SANITIZE (several times slower)."""
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("FLIPBOOK_SANITIZE:"):
                    return line.split("=", 1)[1].strip() not in ("", "OFF")
    except OSError:
        pass
    return False


def find_flipbook(root=ROOT):
    """The `flipbook` binary: build/bin/flipbook, else the newest build*/bin/flipbook of a
    build without sanitizers (tools/check.sh builds build-asan last, and a check timed on it
    would run several times slower), else the newest of any."""
    first = os.path.join(root, "build", "bin", "flipbook")
    if os.access(first, os.X_OK):
        return first
    found = [p for p in glob.glob(os.path.join(root, "build*", "bin", "flipbook"))
             if os.access(p, os.X_OK)]
    if not found:
        return None
    plain = [p for p in found if not _sanitized(os.path.dirname(os.path.dirname(p)))]
    return max(plain or found, key=os.path.getmtime)


class CBackend:
    """`flipbook generate` as a subprocess. threads: its --threads (0: all cores)."""
    name = "c"

    def __init__(self, model_path, binary=None, threads=0, transition="cut", workdir=None,
                 nice=0):
        self.binary = binary or find_flipbook()
        if not self.binary or not os.access(self.binary, os.X_OK):
            raise FileNotFoundError("no flipbook binary (build it, e.g. cmake --build build "
                                    "--target flipbook, or pass --flipbook PATH)")
        self.model_path = model_path
        self.geom, self.cfg, self.model_name = model_info(model_path)
        parse_transition(transition)
        self.transition = transition
        self.threads = int(threads or 0)
        self.nice = int(nice)
        self.workdir = workdir
        self.last_seconds = 0.0

    def command(self, prompts, switch_frame, n_frames, seed, out, skip=0, quiet=True):
        cmd = [self.binary, "generate", "--model", self.model_path, "--prompt", prompts[0],
               "--seed", str(int(seed)), "--frames", str(int(n_frames)), "-o", out]
        if quiet:
            cmd.append("-q")
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if skip:
            cmd += ["--skip", str(int(skip))]
        if switch_frame >= 0:
            cmd += ["--switch", "%d:%s" % (switch_frame, prompts[1]),
                    "--transition", self.transition]
        if self.nice:
            cmd = ["nice", "-n", str(self.nice)] + cmd
        return cmd

    def _run(self, cmd, progress, every):
        """Runs the command; with a progress callback, passes it the latest progress line of
        flipbook's stderr every `every` seconds. Returns (exit status, stderr tail)."""
        import collections
        import time
        if progress is None:
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            return r.returncode, r.stderr
        tail = collections.deque(maxlen=40)
        last = time.time()
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) as p:
            for line in p.stderr:
                tail.append(line)
                if time.time() - last >= every and line.startswith("chunk "):
                    progress(line.strip())
                    last = time.time()
            rc = p.wait()
        return rc, "".join(tail)

    def generate(self, prompts, switch_frame, n_frames, seed, skip=0, progress=None, every=15.0):
        """progress: optional callback given flipbook's progress line every `every` seconds
        (for long runs)."""
        import time
        _check_request(prompts, switch_frame, n_frames, skip)
        g = self.geom
        fd, out = tempfile.mkstemp(suffix=".rgb", dir=self.workdir)
        os.close(fd)
        try:
            t0 = time.time()
            rc, err = self._run(self.command(prompts, switch_frame, n_frames, seed, out, skip,
                                             quiet=progress is None), progress, every)
            self.last_seconds = time.time() - t0
            if rc != 0:
                raise RuntimeError("flipbook generate failed (exit %d): %s"
                                   % (rc, err.strip()[-2000:]))
            data = np.fromfile(out, np.uint8)
        finally:
            os.unlink(out)
        fb = g.height * g.width * 3
        if data.size != n_frames * fb:
            raise RuntimeError("flipbook generate wrote %d bytes, expected %d frames of %dx%d"
                               % (data.size, n_frames, g.width, g.height))
        return data.reshape(n_frames, g.height, g.width, 3)

    def generate_item(self, item, skip=0):
        return self.generate(item.prompts, item.switch_frame, item.n_frames, item.seed, skip)
