"""Streaming safetensors writer: the header is computed from names, dtypes and shapes alone,
written first, then every tensor is produced and written in pieces, so that the whole model
never has to be in memory. The layout is the one tools/flipbook_ref/st.py writes (tensors in
name order, each starting at a multiple of 8 bytes, header padded with spaces, metadata keys
sorted), so a converted file is byte-identical to st.save() of the same tensors.

The file is written under a temporary name next to the target and renamed into place only
when complete and flushed to disk; a failed or interrupted run leaves no partial model behind.
"""
import json
import os
import struct
import sys
import time

import numpy as np

from . import ConvertError
from .torchzip import ITEMSIZE


class Entry:
    """One output tensor: produce() yields raw numpy arrays (BF16 as uint16) whose bytes,
    concatenated, are the tensor's data."""

    def __init__(self, name, dtype, shape, produce, source=""):
        self.name, self.dtype, self.shape = name, dtype, tuple(int(s) for s in shape)
        self.produce, self.source = produce, source

    @property
    def nbytes(self):
        n = ITEMSIZE[self.dtype]
        for s in self.shape:
            n *= s
        return n


def layout(entries, metadata):
    """Returns (header bytes, {name: (begin, end)}, data size)."""
    header, offsets = {}, {}
    off = 0
    for e in sorted(entries, key=lambda e: e.name):
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape),
                          "data_offsets": [off, off + e.nbytes]}
        offsets[e.name] = (off, off + e.nbytes)
        off += e.nbytes + (-e.nbytes) % 8
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    js += b" " * ((-len(js)) % 8)
    return struct.pack("<Q", len(js)) + js, offsets, off


def human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return ("%.0f %s" if unit == "B" else "%.2f %s") % (n, unit)
        n /= 1000.0
    return "%d B" % n


def clock(s):
    s = int(max(0, s))
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else \
        "%d:%02d" % (s // 60, s % 60)


class Progress:
    """Tensor count, bytes, rate and ETA on stderr: a live line on a terminal, otherwise a
    line every `every` seconds."""

    def __init__(self, n_tensors, total, quiet=False, out=None, every=10.0):
        self.n, self.total, self.quiet = n_tensors, total, quiet
        self.out = out or sys.stderr
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.every = 0.5 if self.tty else every
        self.done_t, self.done_b = 0, 0
        self.t0 = self.last = time.monotonic()

    def line(self, name=""):
        el = time.monotonic() - self.t0
        rate = self.done_b / el if el > 0 else 0.0
        eta = (self.total - self.done_b) / rate if rate > 0 else 0.0
        pct = 100.0 * self.done_b / self.total if self.total else 100.0
        return "convert: [%*d/%d] %s / %s (%3.0f%%)  %s/s  ETA %s  %s" % (
            len(str(self.n)), self.done_t, self.n, human(self.done_b), human(self.total), pct,
            human(rate), clock(eta), name)

    def bytes(self, n, name):
        self.done_b += n
        self._maybe(name)

    def tensor(self, name):
        self.done_t += 1
        self._maybe(name)

    def _maybe(self, name):
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            if self.tty:
                self.out.write("\r\033[K" + self.line(name)[:200])
            else:
                self.out.write(self.line(name) + "\n")
            self.out.flush()

    def finish(self):
        if self.quiet:
            return
        if self.tty:
            self.out.write("\r\033[K")
        self.out.flush()


def free_bytes(folder):
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def write(path, entries, metadata, force=False, quiet=False):
    """Writes the model file; returns (bytes written, seconds)."""
    entries = sorted(entries, key=lambda e: e.name)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConvertError("internal: duplicate output tensor names")
    head, offsets, data_size = layout(entries, metadata)
    total = len(head) + data_size
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ConvertError("%s: the output folder does not exist" % folder)
    if os.path.exists(path) and not force:
        raise ConvertError("%s already exists (pass --force to replace it)" % path)
    free = free_bytes(folder)
    if free is not None and free < total + (64 << 20):
        raise ConvertError("%s: the output needs %s but only %s are free there"
                           % (folder, human(total), human(free)))
    tmp = os.path.join(folder, ".%s.part-%d" % (os.path.basename(path), os.getpid()))
    prog = Progress(len(entries), total, quiet)
    t0 = time.monotonic()
    fd = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            fd = None
            f.write(head)
            prog.bytes(len(head), "header")
            for e in entries:
                n = 0
                for arr in e.produce():
                    a = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
                    f.write(a.data)
                    n += a.nbytes
                    prog.bytes(a.nbytes, e.name)
                if n != e.nbytes:
                    raise ConvertError("internal: %s produced %d bytes, expected %d"
                                       % (e.name, n, e.nbytes))
                pad = (-n) % 8
                if pad:
                    f.write(b"\0" * pad)
                    prog.bytes(pad, e.name)
                prog.tensor(e.name)
            f.flush()
            os.fsync(f.fileno())
        size = os.path.getsize(tmp)
        if size != total:
            raise ConvertError("%s: wrote %d bytes, expected %d" % (tmp, size, total))
        if os.path.exists(path) and not force:
            raise ConvertError("%s appeared while converting (pass --force to replace it)" % path)
        os.replace(tmp, path)
        try:
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        prog.finish()
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    prog.finish()
    return total, time.monotonic() - t0
