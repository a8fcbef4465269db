#!/usr/bin/env bash
# Installs what is missing, builds flipbook, and starts the daemon on the default model.
#   tools/up.sh [flipbookd options...]     e.g. tools/up.sh --port 9000 --host 0.0.0.0
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/install-deps.sh --run
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFLIPBOOK_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
source_args=(--model default)
if [ ! -f models/default/model.safetensors ]; then
  echo "up: models/default/model.safetensors is not there yet; streaming the test pattern" >&2
  source_args=(--source testpattern)
fi
exec build/bin/flipbookd --web-root clients/web --record-dir recordings "${source_args[@]}" "$@"
