#!/usr/bin/env bash
# Builds flipbook and runs the whole test suite, as CI does:
#   1. install missing Debian packages (and the browser test's npm packages)
#   2. build with warnings as errors and run every test (unit, golden, fuzz, integration, browser)
#   3. build with AddressSanitizer + UBSan and run the unit tests again
# Prints one closing line "check: N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
[ "$jobs" -gt 2 ] && jobs=2

tools/install-deps.sh || { echo "check: dependency install failed"; exit 1; }
if [ -f tests/browser/package-lock.json ] && command -v npm >/dev/null; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "check: npm ci failed; the browser test will be skipped" >&2
fi

passed=0
failed=0
count() {  # reads ctest's summary line from a log
  local log=$1 total fails
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -1)
  fails=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  total=${total:-0}; fails=${fails:-0}
  passed=$((passed + total - fails))
  failed=$((failed + fails))
}

build=build-check
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLIPBOOK_WERROR=ON >/dev/null ||
  { echo "check: configure failed"; echo "check: 0 passed, 1 failed"; exit 1; }
if ! cmake --build "$build" -j"$jobs" >"$build.log" 2>&1; then
  grep -E -B2 -A6 "error|Error" "$build.log" | head -80
  echo "check: build failed (full log: $build.log)"
  echo "check: 0 passed, 1 failed"
  exit 1
fi

mkdir -p "$build/logs"
# Unit, golden and fuzz tests in parallel; the integration and browser tests measure frame
# rates, so they run one at a time.
ctest --test-dir "$build" -LE "integration|browser|gpu" -j"$jobs" --output-on-failure \
  --timeout 600 2>&1 | tee "$build/logs/fast.log"
count "$build/logs/fast.log"
ctest --test-dir "$build" -L "integration|browser" -LE gpu --output-on-failure \
  --timeout 600 2>&1 | tee "$build/logs/slow.log"
count "$build/logs/slow.log"

asan=build-asan
if cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=Debug -DFLIPBOOK_SANITIZE=address,undefined \
     -DFLIPBOOK_WERROR=ON >/dev/null && cmake --build "$asan" -j"$jobs" >"$asan.log" 2>&1; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$asan" -L unit -LE "gpu|fuzz" -j"$jobs" --output-on-failure \
      --timeout 900 2>&1 | tee "$build/logs/asan.log"
  count "$build/logs/asan.log"
else
  echo "check: sanitizer build failed (see $asan.log)"
  tail -30 "$asan.log"
  failed=$((failed + 1))
fi

echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
