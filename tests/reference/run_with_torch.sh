#!/bin/sh
# Runs one of the Python reference tools with an interpreter that has PyTorch, numpy and
# sentencepiece (Debian's python3-torch lives in /usr/bin/python3). Exits 77, which ctest
# reports as "skipped", when that interpreter or one of the modules is missing.
#   run_with_torch.sh PYTHON ARGS...
py=$1
shift
if ! "$py" -c "import torch, numpy, sentencepiece" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, numpy and sentencepiece"
    exit 77
fi
exec "$py" "$@"
