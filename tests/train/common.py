"""Shared bits of the training tests: import path, temp dirs, a check helper, a budget that
stops a run after a number of steps."""
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import torch  # noqa: E402

from train import state  # noqa: E402

torch.set_num_threads(1)
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def tmpdir():
    return tempfile.TemporaryDirectory(prefix="flipbook-train-test-")


def finish():
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


class StopAfter(state.Budget):
    """Says stop after n questions (a stage's loop asks once per step, the DiT's latent cache
    once per shard)."""

    def __init__(self, n):
        super().__init__(None, ckpt_minutes=1e9)
        self.left = n

    def should_stop(self):
        self.left -= 1
        return self.left < 0
