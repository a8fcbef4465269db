"""Counter-based Gaussian noise, bit-exact with engine/rng.c.

Every noise tensor is a pure function of (seed, chunk, draw), so a stream's frames depend only
on its seed and chunk index, whatever the thread count, batch composition or backend:

    splitmix64(x): x += 0x9E3779B97F4A7C15; z = x
                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                   return z ^ (z >> 31)                              (all mod 2^64)
    key(seed, chunk, draw) = splitmix64(seed) ^ splitmix64((chunk << 8) | draw)
        draw 0 = the chunk's initial noise, draw k >= 1 = the re-noise before denoising step k
    element pair j (elements 2j, 2j+1 of the flat row-major [F, C, H, W] chunk tensor):
        r   = splitmix64(key + j)
        u1  = ((r >> 40) + 1) / 2^24          in (0, 1]
        u2  = ((r >> 16) & 0xFFFFFF) / 2^24   in [0, 1)
        rad = sqrt(-2 ln u1); e[2j] = rad cos(2 pi u2); e[2j+1] = rad sin(2 pi u2)
        (double precision, stored as float32; an odd last element uses only e[2j])

The integer part runs vectorised in numpy uint64 (which wraps mod 2^64 like C). The
transcendental part goes through Python's math module, i.e. the same libm the C engine calls,
because numpy may use its own SIMD log/sin/cos whose last bit can differ.
"""
import math

import numpy as np

_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x):
    """splitmix64 of a uint64 numpy array (or a Python int, returned as int)."""
    scalar = not isinstance(x, np.ndarray)
    z = np.atleast_1d(np.asarray(x & _M64 if scalar else x, dtype=np.uint64))
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        z = z ^ (z >> np.uint64(31))
    return int(z[0]) if scalar else z


def key(seed, chunk, draw):
    """The 64-bit stream key of one noise draw."""
    if not 0 <= draw < 256:
        raise ValueError("rng draw must be in [0, 256)")
    if chunk < 0:
        raise ValueError("rng chunk index must be >= 0")
    return splitmix64(seed & _M64) ^ splitmix64(((chunk << 8) | draw) & _M64)


def uniform_bits(k, n_pairs):
    """r_j = splitmix64(key + j) for j < n_pairs, as uint64."""
    with np.errstate(over="ignore"):
        j = np.arange(n_pairs, dtype=np.uint64) + np.uint64(k)
    return splitmix64(j)


def normal(seed, chunk, draw, n):
    """n float32 standard normals for (seed, chunk, draw)."""
    pairs = (n + 1) // 2
    r = uniform_bits(key(seed, chunk, draw), pairs)
    a = ((r >> np.uint64(40)) + np.uint64(1)).tolist()
    b = ((r >> np.uint64(16)) & np.uint64(0xFFFFFF)).tolist()
    out = np.empty(2 * pairs, dtype=np.float64)
    two_pi = 2.0 * math.pi
    inv = 1.0 / 16777216.0
    log, sqrt, cos, sin = math.log, math.sqrt, math.cos, math.sin
    for j in range(pairs):
        u1 = a[j] * inv
        u2 = b[j] * inv
        rad = sqrt(-2.0 * log(u1))
        ang = two_pi * u2
        out[2 * j] = rad * cos(ang)
        out[2 * j + 1] = rad * sin(ang)
    return out[:n].astype(np.float32)


def chunk_noise(seed, chunk, draw, shape):
    """Noise for one chunk, shape [F, C, H, W] (flat row-major order, as in engine/rng.c)."""
    n = int(np.prod(shape))
    return normal(seed, chunk, draw, n).reshape(shape)


def chunk_noise_torch(seeds, chunk, draw, shape):
    """A batch of chunk noises as a torch tensor [B, C, F, H, W] (the DiT layout).

    seeds: one seed per batch row. shape: (F, C, H, W) as the RNG sees it."""
    import torch
    arrs = [chunk_noise(s, chunk, draw, shape) for s in seeds]
    x = torch.from_numpy(np.stack(arrs))          # [B, F, C, H, W]
    return x.permute(0, 2, 1, 3, 4).contiguous()  # [B, C, F, H, W]
