"""train_memory: keep_freed_memory() (flipbook_ref/memory.py) keeps a freed 64 MB activation in
the process, so allocating it again mostly faults no pages in; without it glibc unmaps the
block on free and the next allocation faults every page again (the system time that was half of a
training run's CPU). Runs the allocation pattern in two child processes, one with the setting
and one without, and counts their minor page faults.

Also the other CPU setting of every stage: bf16 autocast only where PyTorch runs bf16
natively (state.bf16_fast: AVX-512 or newer), float32 on a CPU with AVX2 only, where it
emulates bf16 at a tenth of the speed."""
import subprocess
import sys

from common import REPO, check, finish

CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
import torch
if sys.argv[2] == "keep":
    from flipbook_ref import memory
    assert memory.keep_freed_memory()
n = 16 << 20                                 # 64 MB of float32: above glibc's mmap threshold
for _ in range(16):                          # the heap settles (aligned blocks leave holes
    x = torch.empty(n); x.fill_(1.0); del x  # at first) and reaches its peak
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):                           # a training step's pattern: allocate, use, free
    x = torch.empty(n); x.fill_(2.0); del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def faults(mode):
    out = subprocess.run([sys.executable, "-c", CHILD, REPO + "/tools", mode], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


def main():
    pages = (64 << 20) // 4096
    plain, kept = faults("plain"), faults("keep")
    print("minor page faults over 8 allocations of 64 MB: %d by default, %d with "
          "keep_freed_memory()" % (plain, kept))
    check(plain >= 6 * pages, "by default the freed block is faulted in again (%d faults)" % plain)
    # The heap's holes may still cost a fault-in now and then (one allocation in four was
    # seen), never most of them.
    check(kept <= plain // 2, "with keep_freed_memory() it is mostly reused as it is "
          "(%d faults)" % kept)


def autocast_follows_the_cpu():
    import torch
    from train import state
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    fast = state.bf16_fast()
    print("bf16 instructions: %s; bf16_fast() %s" % (
        ", ".join(sorted(x for x in flags if "bf16" in x or x.startswith("amx"))) or "none", fast))
    if flags and not any(x.startswith("avx512") for x in flags):
        check(not fast, "a CPU without AVX-512 runs in float32")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        check(fast, "a CPU with bf16 instructions keeps bf16 autocast")
    with state.autocast(True):
        check(torch.is_autocast_cpu_enabled() == fast, "autocast(True) is on exactly when bf16_fast")
    with state.autocast(False):
        check(not torch.is_autocast_cpu_enabled(), "autocast(False) is off")


if __name__ == "__main__":
    main()
    autocast_follows_the_cpu()
    finish()
