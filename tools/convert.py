#!/usr/bin/env python3
"""Converts published Wan2.1-based checkpoints (Self-Forcing, CausVid, LongLive, the Wan2.1
base model) into one flipbook model file. Needs Python 3 with numpy (sentencepiece, if present,
checks the tokenizer); see docs/converting.md or --help.

    /usr/bin/python3 tools/convert.py self-forcing --wan Wan2.1-T2V-1.3B \\
        --dit self_forcing_dmd.pt --vae taew2_1.pth -o self-forcing.safetensors
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import numpy  # noqa: F401
except ImportError:
    sys.exit("convert: error: this Python (%s) has no numpy; run the converter with Debian's "
             "/usr/bin/python3 (python3-numpy)" % sys.executable)

from convert.cli import main  # noqa: E402  (the package tools/convert/)

if __name__ == "__main__":
    sys.exit(main())
