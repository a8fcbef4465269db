"""Shared set-up of the evaluation tests: tools/ on the path, a skip (exit 77) when the
interpreter lacks what a test needs, and a check function that reports every failure."""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
TINY = os.path.join(REPO, "tests", "data", "golden", "tiny_model.safetensors")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)
FAILURES = []
T0 = time.time()


def need(*modules):
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            print("SKIP: %s cannot import %s" % (sys.executable, m))
            sys.exit(77)
    if "torch" in modules:
        import torch
        torch.set_num_threads(1)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def finish():
    if FAILURES:
        print("%d check(s) failed (%.1f s)" % (len(FAILURES), time.time() - T0))
        sys.exit(1)
    print("all checks passed (%.1f s)" % (time.time() - T0))
    sys.exit(0)
