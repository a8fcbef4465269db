"""python3 -m eval (with tools/ on PYTHONPATH): see cli.py and docs/eval.md."""
import sys

from .cli import main

sys.exit(main())
