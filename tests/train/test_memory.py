"""train_memory: keep_freed_memory() (flipbook_ref/memory.py) keeps a freed 64 MB activation in
the process, so allocating it again mostly faults no pages in; without it glibc unmaps the
block on free and the next allocation faults every page again (the system time that was half of a
training run's CPU). Runs the allocation pattern in two child processes, one with the setting
and one without, and counts their minor page faults."""
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
    finish()


if __name__ == "__main__":
    main()
