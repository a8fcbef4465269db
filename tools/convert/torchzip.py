"""Lazy reader of PyTorch checkpoints (.pt/.pth written by torch.save), without torch.

torch.save writes a zip archive: `<root>/data.pkl` (a pickle of the saved object) and one
member `<root>/data/<key>` per tensor storage (raw little-endian bytes, stored uncompressed).
In the pickle, every storage is a persistent id ('storage', <torch.XStorage>, key, location,
numel) and every tensor a call torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...). torch.load reads the whole archive into memory (torch 1.13 cannot memory-map it), which
for an 11 GB text encoder is more than this tool wants to hold. Here the pickle is replayed
with a restricted unpickler that turns every tensor into a LazyTensor (dtype, shape and where
its bytes are) and reads nothing else; tensor bytes are read later, slab by slab.

The unpickler never imports or calls anything from the checkpoint: known torch rebuild
functions are emulated, a few harmless builtins are allowed, and every other global becomes an
inert stand-in object (a checkpoint's optimizer state, config objects or numpy scalars load as
opaque values and are simply not used).
"""
import collections
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from . import ConvertError

# Storage class name -> safetensors dtype name.
_STORAGE_DTYPES = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16",
    "BFloat16Storage": "BF16", "LongStorage": "I64", "IntStorage": "I32",
    "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8", "BoolStorage": "BOOL",
}
# torch dtype attribute name -> safetensors dtype name (for _rebuild_tensor_v3 and dtypes
# pickled as values).
_TORCH_DTYPES = {
    "float32": "F32", "float": "F32", "float64": "F64", "double": "F64", "float16": "F16",
    "half": "F16", "bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32",
    "int": "I32", "int16": "I16", "short": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
ITEMSIZE = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "BOOL": 1}
# Raw numpy dtype per safetensors dtype; BF16 has no numpy type and travels as uint16 bits.
NUMPY = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
         "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1"}

# Builtins that only build plain data.
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "list": list, "dict": dict, "tuple": tuple,
                  "int": int, "float": float, "complex": complex, "bool": bool, "str": str,
                  "bytes": bytes, "bytearray": bytearray, "slice": slice, "range": range}


class Opaque:
    """Stand-in for any class or function the checkpoint names that this reader does not
    need. It accepts whatever the pickle feeds it and does nothing."""
    global_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)

    def __call__(self, *args, **kwargs):
        return type(self)(*args)

    def __repr__(self):
        return "<%s>" % self.global_name


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES.get(name)   # None for UntypedStorage (bytes)


class _Dtype:
    def __init__(self, name):
        self.name = name


class _Storage:
    """One storage of the archive: member <root>/data/<key>; numel elements of dtype."""

    def __init__(self, archive, key, dtype, numel):
        self.archive, self.key, self.dtype, self.numel = archive, key, dtype, numel


class LazyTensor:
    """A tensor whose bytes are still in a file. `dtype` is a safetensors dtype name, `shape`
    a tuple; read() and slabs() return raw little-endian numpy arrays (BF16 as uint16)."""

    def __init__(self, source, dtype, shape):
        self.source, self.dtype, self.shape = source, dtype, tuple(int(s) for s in shape)

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self):
        return self.numel * ITEMSIZE[self.dtype]

    def read(self):
        parts = [a for _, a in self.slabs(1 << 62)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts, 0)

    def slabs(self, max_bytes):
        """Yields (first_row, array) pieces along dimension 0, each at most ~max_bytes."""
        raise NotImplementedError


class ArchiveTensor(LazyTensor):
    """A tensor view (offset, size, stride in elements) into one storage of a torch archive."""

    def __init__(self, storage, offset, size, stride, dtype=None):
        dt = dtype or storage.dtype
        if dt is None:
            raise ConvertError("%s: a tensor over an untyped storage without a dtype"
                               % storage.archive.path)
        super().__init__(storage.archive.path, dt, size)
        self.storage, self.offset, self.stride = storage, int(offset), tuple(int(s) for s in stride)
        if len(self.stride) != len(self.shape):
            raise ConvertError("%s: tensor size %s and stride %s disagree"
                               % (storage.archive.path, list(self.shape), list(self.stride)))

    def _contiguous(self):
        expect = 1
        for s, st in zip(reversed(self.shape), reversed(self.stride)):
            if s != 1 and st != expect:
                return False
            expect *= s
        return True

    def _span(self):
        """Elements of the storage the view touches, from its offset."""
        if self.numel == 0:
            return 0
        return 1 + sum((s - 1) * st for s, st in zip(self.shape, self.stride))

    def slabs(self, max_bytes):
        arch, isz = self.storage.archive, ITEMSIZE[self.dtype]
        storage_elems = self.storage.numel if self.storage.dtype else self.storage.numel // isz
        if self.offset + self._span() > storage_elems:
            raise ConvertError("%s: a tensor reaches past the end of its storage %s (corrupt "
                               "checkpoint)" % (arch.path, self.storage.key))
        if not self._contiguous():
            raw = arch.read(self.storage.key, self.offset * isz, self._span() * isz)
            flat = np.frombuffer(raw, dtype=NUMPY[self.dtype])
            view = np.lib.stride_tricks.as_strided(
                flat, self.shape, [st * isz for st in self.stride])
            yield 0, np.ascontiguousarray(view)
            return
        rows = self.shape[0] if self.shape else 1
        row_elems = self.numel // rows if rows else 0
        row_bytes = max(1, row_elems * isz)
        per = max(1, max_bytes // row_bytes)
        # A view that covers its whole storage is read front to back: check the zip CRC.
        whole = self.offset == 0 and self.numel * isz == arch.member_size(self.storage.key)
        crc = 0
        for r0 in range(0, max(rows, 1), per):
            r1 = min(rows, r0 + per) if self.shape else 1
            raw = arch.read(self.storage.key, (self.offset + r0 * row_elems) * isz,
                            (r1 - r0) * row_elems * isz)
            if whole:
                crc = zlib.crc32(raw, crc)
            arr = np.frombuffer(raw, dtype=NUMPY[self.dtype])
            yield r0, arr.reshape((r1 - r0,) + self.shape[1:]) if self.shape else arr.reshape(())
        if whole and crc != arch.member_crc(self.storage.key):
            raise ConvertError("%s: checksum mismatch in storage %s: the file is corrupt"
                               % (arch.path, self.storage.key))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data_file, archive):
        super().__init__(data_file)
        self.archive = archive
        self.storages = {}
        self.opaque = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "builtins" and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if module == "_codecs" and name == "encode":     # bytes in protocol-2 pickles
            return lambda s, enc="latin1": s.encode(enc)
        if module == "torch" and (name.endswith("Storage")):
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _Dtype(_TORCH_DTYPES[name])
        if module == "torch" and name == "Size":
            return tuple
        if module == "torch._utils":
            if name == "_rebuild_tensor_v2":
                return self._rebuild_v2
            if name == "_rebuild_tensor":
                return lambda storage, offset, size, stride: ArchiveTensor(storage, offset, size,
                                                                           stride)
            if name == "_rebuild_tensor_v3":
                return self._rebuild_v3
            if name == "_rebuild_parameter":
                return lambda data, requires_grad, hooks: data
            if name == "_rebuild_parameter_with_state":
                return lambda data, requires_grad, hooks, state: data
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return lambda func, new_type, args, state: func(*args)
        key = module + "." + name
        if key not in self.opaque:
            self.opaque[key] = type(name, (Opaque,), {"global_name": key})
        return self.opaque[key]

    @staticmethod
    def _rebuild_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
        return ArchiveTensor(storage, offset, size, stride)

    @staticmethod
    def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        return ArchiveTensor(storage, offset, size, stride,
                             dtype.name if isinstance(dtype, _Dtype) else None)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise ConvertError("%s: unknown persistent id %r in the pickle"
                               % (self.archive.path, pid[:1] if isinstance(pid, tuple) else pid))
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise ConvertError("%s: storage %s has an unknown type" % (self.archive.path, key))
        if stype.dtype is None and stype.name != "UntypedStorage":
            raise ConvertError("%s: storage type torch.%s is not supported"
                               % (self.archive.path, stype.name))
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(self.archive, key, stype.dtype, int(numel))
        return self.storages[key]


class TorchArchive:
    """An open torch zip checkpoint. `obj` is the unpickled object with LazyTensors."""

    def __init__(self, path):
        self.path = path
        try:
            self.size = os.path.getsize(path)
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ConvertError("%s: %s" % (path, e.strerror or e))
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            os.close(self.fd)
            raise ConvertError("%s: not a readable zip archive: the file is truncated or corrupt "
                               "(torch.save checkpoints are zip archives; legacy pre-1.6 pickles "
                               "are not supported)" % path)
        except OSError as e:
            os.close(self.fd)
            raise ConvertError("%s: %s" % (path, e))
        names = self.zip.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ConvertError("%s: a zip archive, but not a torch checkpoint (no <root>/data.pkl)"
                               % path)
        self.root = pkl[0][:-len("data.pkl")]
        self.infos = {n: self.zip.getinfo(n) for n in names}
        order = self.root + "byteorder"
        if order in self.infos and self.zip.read(order).strip() not in (b"little", b""):
            raise ConvertError("%s: big-endian checkpoints are not supported" % path)
        self._data_start = {}
        try:
            with self.zip.open(pkl[0]) as f:
                self.obj = _Unpickler(f, self).load()
        except ConvertError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
                AttributeError, TypeError, IndexError, KeyError) as e:
            raise ConvertError("%s: cannot read the checkpoint's pickle (%s: %s)"
                               % (path, type(e).__name__, e))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.zip.close()

    def _member(self, key):
        name = self.root + "data/" + key
        info = self.infos.get(name)
        if info is None:
            raise ConvertError("%s: storage %s is missing from the archive (truncated or corrupt)"
                               % (self.path, key))
        return info

    def member_size(self, key):
        return self._member(key).file_size

    def member_crc(self, key):
        return self._member(key).CRC

    def _start(self, info):
        """Byte offset of a member's data in the file (after its local header)."""
        start = self._data_start.get(info.filename)
        if start is None:
            hdr = os.pread(self.fd, 30, info.header_offset)
            if len(hdr) != 30 or hdr[:4] != b"PK\x03\x04":
                raise ConvertError("%s: bad zip local header for %s (corrupt file)"
                                   % (self.path, info.filename))
            n, m = struct.unpack("<HH", hdr[26:30])
            start = info.header_offset + 30 + n + m
            if start + info.file_size > self.size:
                raise ConvertError("%s: member %s runs past the end of the file (truncated)"
                                   % (self.path, info.filename))
            self._data_start[info.filename] = start
        return start

    def read(self, key, offset, nbytes):
        info = self._member(key)
        if offset + nbytes > info.file_size:
            raise ConvertError("%s: storage %s holds %d bytes, a tensor needs %d (corrupt "
                               "checkpoint)" % (self.path, key, info.file_size, offset + nbytes))
        if info.compress_type != zipfile.ZIP_STORED:
            with self.zip.open(info) as f:    # never written by torch.save; slow but correct
                f.seek(offset)
                return f.read(nbytes)
        return pread_all(self.fd, nbytes, self._start(info) + offset, self.path)


def pread_all(fd, nbytes, offset, path):
    chunks = []
    got = 0
    while got < nbytes:
        b = os.pread(fd, min(nbytes - got, 1 << 30), offset + got)
        if not b:
            raise ConvertError("%s: unexpected end of file at byte %d (truncated)"
                               % (path, offset + got))
        chunks.append(b)
        got += len(b)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
