"""Input files: lazy tensors from .safetensors and torch .pt/.pth files, and dtype casts.

open_file() recognises a file by its first bytes (a zip archive is a torch checkpoint, a
plausible 8-byte header length followed by '{' is safetensors) and returns a Source whose
`obj` is the loaded object with LazyTensors in place of tensors. Nothing is read beyond the
pickle or the header until a tensor's slabs are requested.
"""
import json
import os
import struct

import numpy as np

from . import ConvertError
from .torchzip import ITEMSIZE, NUMPY, LazyTensor, TorchArchive, pread_all

SLAB_BYTES = 32 << 20


class FileTensor(LazyTensor):
    """A contiguous tensor at a byte offset of a plain file (safetensors)."""

    def __init__(self, src, name, dtype, shape, start):
        super().__init__(src.path, dtype, shape)
        self.src, self.name, self.start = src, name, start

    def slabs(self, max_bytes):
        rows = self.shape[0] if self.shape else 1
        row_bytes = self.nbytes // rows if rows else 0
        per = max(1, max_bytes // max(1, row_bytes))
        for r0 in range(0, max(rows, 1), per):
            r1 = min(rows, r0 + per) if self.shape else 1
            raw = pread_all(self.src.fd, (r1 - r0) * row_bytes, self.start + r0 * row_bytes,
                            self.src.path)
            arr = np.frombuffer(raw, dtype=NUMPY[self.dtype])
            yield r0, arr.reshape((r1 - r0,) + self.shape[1:]) if self.shape else arr.reshape(())


class SafetensorsFile:
    def __init__(self, path):
        self.path = path
        try:
            self.size = os.path.getsize(path)
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ConvertError("%s: %s" % (path, e.strerror or e))
        try:
            head = os.pread(self.fd, 8, 0)
            if len(head) < 8:
                raise ConvertError("%s: shorter than a safetensors header (truncated)" % path)
            (n,) = struct.unpack("<Q", head)
            if n > self.size - 8:
                raise ConvertError("%s: the safetensors header says %d bytes but the file has %d "
                                   "(truncated)" % (path, n, self.size - 8))
            try:
                header = json.loads(pread_all(self.fd, n, 8, path).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise ConvertError("%s: the safetensors header is not valid JSON (%s)" % (path, e))
            if not isinstance(header, dict):
                raise ConvertError("%s: the safetensors header is not a JSON object" % path)
            self.metadata = header.pop("__metadata__", None) or {}
            base = 8 + n
            self.tensors = {}
            for name, info in header.items():
                try:
                    dt, shape = info["dtype"], [int(s) for s in info["shape"]]
                    b0, b1 = (int(x) for x in info["data_offsets"])
                except (KeyError, TypeError, ValueError):
                    raise ConvertError("%s: tensor %s has a malformed header entry" % (path, name))
                if dt not in ITEMSIZE:
                    raise ConvertError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
                t = FileTensor(self, name, dt, shape, base + b0)
                if b1 - b0 != t.nbytes or b0 < 0 or min(shape, default=0) < 0:
                    raise ConvertError("%s: tensor %s: %d bytes for shape %s %s" % (
                        path, name, b1 - b0, shape, dt))
                if base + b1 > self.size:
                    raise ConvertError("%s: tensor %s lies past the end of the file (truncated: "
                                       "%d of %d bytes)" % (path, name, self.size, base + b1))
                self.tensors[name] = t
        except ConvertError:
            os.close(self.fd)
            raise

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Source:
    """An opened input file: `obj` is a dict (or any unpickled object) holding LazyTensors."""

    def __init__(self, path, obj, closer, kind):
        self.path, self.obj, self._closer, self.kind = path, obj, closer, kind

    def close(self):
        self._closer()


def open_file(path):
    if not os.path.exists(path):
        raise ConvertError("%s: no such file" % path)
    if os.path.isdir(path):
        raise ConvertError("%s: is a folder, expected a checkpoint file" % path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror or e))
    if len(head) == 0:
        raise ConvertError("%s: the file is empty" % path)
    if head[:2] == b"PK":
        a = TorchArchive(path)
        return Source(path, a.obj, a.close, "torch")
    if len(head) == 9 and head[8:9] == b"{":
        s = SafetensorsFile(path)
        return Source(path, s.tensors, s.close, "safetensors")
    if path.endswith(".safetensors") and len(head) < 9:
        raise ConvertError("%s: shorter than a safetensors header (truncated)" % path)
    raise ConvertError("%s: neither a torch checkpoint (zip) nor a safetensors file; legacy "
                       "(pre-1.6) torch pickles are not supported: re-save it with torch.save "
                       "in a current PyTorch" % path)


def is_tensor(x):
    return isinstance(x, LazyTensor)


def tensor_dict(obj):
    """The tensors of a (possibly nested-free) state dict: name -> LazyTensor; non-tensor
    values are returned separately."""
    tensors, other = {}, {}
    for k, v in obj.items():
        (tensors if is_tensor(v) else other)[str(k)] = v
    return tensors, other


# ---- dtype casts (numpy, round to nearest even as torch does) -------------------------------

FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def to_f32(arr, dtype):
    """Raw array of a float dtype -> float32."""
    if dtype == "F32":
        return arr.astype(np.float32, copy=False)
    if dtype == "BF16":
        return (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if dtype in ("F16", "F64"):
        return arr.astype(np.float32)
    raise ConvertError("not a floating-point dtype: %s" % dtype)


def f32_to_bf16(x):
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays NaN. Works in
    place on one temporary to keep the memory of a slab conversion small."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    r = u >> np.uint32(16)
    r &= np.uint32(1)
    r += np.uint32(0x7FFF)
    r += u
    r >>= np.uint32(16)
    out = r.astype(np.uint16)
    del r
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out


def cast(arr, src, dst):
    """Raw array in dtype src -> raw array in dtype dst (float dtypes only)."""
    if src == dst:
        return arr
    x = to_f32(arr, src)
    return from_f32(x, dst)


def from_f32(x, dst):
    if dst == "F32":
        return x
    if dst == "BF16":
        return f32_to_bf16(x)
    if dst == "F16":
        with np.errstate(over="ignore"):     # callers check the range first
            return x.astype(np.float16)
    raise ConvertError("unsupported output dtype %s" % dst)


def finite_check(arr, dtype):
    """Number of NaN/Inf values in a raw float array."""
    if dtype == "BF16":
        return int(np.count_nonzero((arr & np.uint16(0x7F80)) == np.uint16(0x7F80)))
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))
