"""Process-wide allocator settings for the long PyTorch jobs (training, evaluation, dumps).

glibc serves every block over its mmap threshold (at most 32 MB) with its own mapping and
returns it to the kernel when it is freed, so the next allocation of that size faults every
page in again, zeroed. The DiT's and autoencoder's activations are tens to hundreds of MB per
layer: on a 2-core machine without bf16 matrix units half of the training's CPU time went to
those page faults (system time), and encoding the latent cache was 11x slower than with the
freed memory kept. keep_freed_memory() turns mappings off for new blocks (they come from the
heap, which is never trimmed), so freed activations are reused as they are. Memory use then
stays at the run's peak instead of falling back between steps; that is what a training job
wants anyway.

Thread-safety: call it once, early, before the worker threads start allocating.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4


def keep_freed_memory():
    """Returns True when the settings took (glibc), False elsewhere (nothing changes)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0)
    ok &= mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)     # the largest value it takes
    ok &= mallopt(M_TOP_PAD, 256 << 20)              # grow the heap in steps of 256 MB
    return bool(ok)
