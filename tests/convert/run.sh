#!/bin/sh
# Runs a converter test with an interpreter that has PyTorch, numpy and sentencepiece (the
# tests build fake checkpoints with torch.save and check results with the reference model).
# Exits 77, which ctest reports as "skipped", when that interpreter or a module is missing.
#   run.sh PYTHON SCRIPT ARGS...
py=$1
shift
if ! "$py" -c "import torch, numpy, sentencepiece" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, numpy and sentencepiece"
    exit 77
fi
exec "$py" "$@"
