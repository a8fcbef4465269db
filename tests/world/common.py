"""Shared set-up for the world tests: find tools/ and skip (exit 77) without numpy."""

import os
import sys

TOOLS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))


def setup():
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("SKIP: numpy is not installed for %s" % sys.executable)
        sys.exit(77)
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)


class Checker:
    """Collects failures so one run reports all of them; exit status 1 if any."""

    def __init__(self, name):
        self.name = name
        self.failures = 0
        self.checks = 0

    def check(self, ok, what):
        self.checks += 1
        if not ok:
            self.failures += 1
            print("FAIL: %s" % what)
        return ok

    def done(self):
        print("%s: %d checks, %d failed" % (self.name, self.checks, self.failures))
        sys.exit(1 if self.failures else 0)
