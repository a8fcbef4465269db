#!/bin/sh
# Runs one training test with an interpreter that has PyTorch, numpy and sentencepiece
# (Debian's python3-torch is /usr/bin/python3). Exits 77 (ctest: skipped) when it has not.
#   run.sh PYTHON TEST.py
py=$1
shift
if ! "$py" -c "import torch, numpy, sentencepiece" >/dev/null 2>&1; then
    echo "SKIP: $py cannot import torch, numpy and sentencepiece"
    exit 77
fi
exec "$py" "$@"
