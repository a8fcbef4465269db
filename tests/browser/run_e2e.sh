#!/bin/sh
# Runs one browser end-to-end test (e2e.mjs, e2e_engine.mjs) for ctest; exits 77 (skipped)
# with the reason when what it needs is not installed.
#   run_e2e.sh SCRIPT FLIPBOOKD WEB_ROOT OUT_DIR [more arguments for the script]
here=$(cd "$(dirname "$0")" && pwd)
script=$1
flipbookd=$2
web_root=$3
out=$4
shift 4
chromium=${FLIPBOOK_CHROMIUM:-/usr/bin/chromium}

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (apt-get install nodejs npm)"
  exit 77
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "SKIP: playwright-core is not installed; run 'npm ci' in tests/browser"
  exit 77
fi
if [ ! -x "$chromium" ]; then
  echo "SKIP: no Chromium at $chromium (apt-get install chromium, or set FLIPBOOK_CHROMIUM)"
  exit 77
fi
mkdir -p "$out"
# Absolute paths: the test runs from this folder (where node_modules is).
abs() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
flipbookd=$(abs "$flipbookd")
web_root=$(abs "$web_root")
out=$(cd "$out" && pwd)
cd "$here" && exec node "$script" --flipbookd "$flipbookd" --web-root "$web_root" --out "$out" \
  --chromium "$chromium" "$@"
