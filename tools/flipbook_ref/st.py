"""Minimal safetensors reader/writer (numpy and torch tensors).

The format: an 8-byte little-endian header length N, N bytes of JSON (padded with spaces to a
multiple of 8 so the data area starts aligned), then the raw little-endian tensor data. The
JSON maps every tensor name to {dtype, shape, data_offsets} (offsets relative to the data area)
plus an optional "__metadata__" object of strings. Debian 12 has no safetensors package, and
the format is small enough that owning the code keeps the tools dependency-free.

Tensors are written in name order, each one's data aligned to 8 bytes, so the same content
always gives the same bytes.
"""
import json
import struct

import numpy as np

try:
    import torch
except ImportError:  # the reader and writer work on numpy arrays alone
    torch = None

# safetensors dtype name <-> numpy dtype. BF16 has no numpy type: it is carried as uint16 bits.
_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_NAME = {np.dtype(v): k for k, v in _NP.items()}


def _to_numpy(value):
    """Returns (dtype name, little-endian numpy array) for a numpy array or torch tensor."""
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", t.view(torch.int16).numpy().view(np.uint16)
        return _NAME[np.dtype(t.numpy().dtype)], t.numpy()
    a = np.ascontiguousarray(value)
    if a.dtype not in _NAME:
        raise TypeError("safetensors: unsupported dtype %s" % a.dtype)
    return _NAME[a.dtype], a


def save(path, tensors, metadata=None):
    """Writes a dict name -> tensor (numpy or torch) and a dict of string metadata."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dt, arr = _to_numpy(tensors[name])
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError("safetensors metadata %r must be a string" % k)
        header["__metadata__"] = dict(sorted(metadata.items()))
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    js += b" " * ((-len(js)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def load(path, as_torch=True):
    """Reads a file; returns (dict name -> tensor, metadata dict).

    With as_torch the tensors are torch tensors (BF16 becomes torch.bfloat16), else numpy
    arrays (BF16 stays raw uint16 bits)."""
    with open(path, "rb") as f:
        data = f.read()
    return loads(data, as_torch)


def loads(data, as_torch=True):
    if len(data) < 8:
        raise ValueError("safetensors: file shorter than its header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("safetensors: header length %d exceeds the file" % n)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        b0, b1 = info["data_offsets"]
        raw = data[base + b0:base + b1]
        shape = tuple(info["shape"])
        if dt == "BF16":
            arr = np.frombuffer(raw, dtype="<u2").reshape(shape).copy()
            if as_torch:
                out[name] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
                continue
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP[dt]).newbyteorder("<")).reshape(shape)
            arr = arr.astype(_NP[dt], copy=True)
        out[name] = torch.from_numpy(arr) if as_torch else arr
    return out, meta
