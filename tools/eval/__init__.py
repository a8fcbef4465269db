"""tools/eval: the default model's scorecard.

Generates video for held-out prompts and seeds of the synthetic world (tools/world) with the
PyTorch reference (flipbook_ref) or the C engine (`flipbook generate`), reads it back with the
world's scene parser, and scores it:

    sets       held-out scenes, prompts, switch pairs, occlusion scenes, noise seeds
    backends   RefBackend, CBackend, WorldBackend; model_info (geometry from a model file)
    track      per-frame parses of a clip and object tracks through it
    metrics    adherence, steering, permanence, temporal consistency
    fid        encoder features and the Frechet distance
    report     the scorecard table and JSON
    cli        `PYTHONPATH=tools /usr/bin/python3 -m eval --model M --backend c --out DIR`

docs/eval.md describes every figure. Runs with Debian's /usr/bin/python3 (numpy; torch for the
ref backend and the Frechet distance).
"""
import os
import sys

# The world and the reference model are sibling packages under tools/.
_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)
