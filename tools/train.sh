#!/bin/sh
# Train flipbook's default model (docs/training.md): every stage in order, resuming where the
# last run stopped, at the lowest CPU priority. Arguments go to `python3 -m train`, e.g.
#   tools/train.sh --minutes 60          train for an hour, then checkpoint and stop
#   tools/train.sh --stage ae            one stage only
#   tools/train.sh --no-train --export --eval   write models/default/model.safetensors, score it
#   tools/train.sh --status              where every stage stands
# State: $FLIPBOOK_TRAIN_DIR, default ${XDG_CACHE_HOME:-~/.cache}/flipbook/train.
# PyTorch comes from Debian's python3-torch, i.e. /usr/bin/python3 (override with $PYTHON).
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec nice -n 19 "${PYTHON:-/usr/bin/python3}" -m train "$@"
