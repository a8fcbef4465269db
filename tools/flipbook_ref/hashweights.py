"""Integer-hash weight generator of the upstream TAEHV golden file (no stored weights).

For tensor `name`, flat index i and generator parameters (e, off):
    h = FNV-1a 32 of the UTF-8 name;  x = (h + i) mod 2^32
    x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16   (mod 2^32)
    k = (x >> 8) - 2^23;  w = float32(k 2^(-23-e));  w = float32(w + float32(off))
"""
import numpy as np


def fnv1a32(name):
    h = 0x811C9DC5
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def generate(name, shape, e, off):
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(fnv1a32(name))
        x = (x & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        x = x ^ (x >> np.uint32(16))
    k = (x >> np.uint32(8)).astype(np.int64) - 8388608
    w = (k.astype(np.float64) * 2.0 ** (-23 - e)).astype(np.float32)
    w = (w + np.float32(off)).astype(np.float32)
    return w.reshape(shape)
