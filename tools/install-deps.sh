#!/usr/bin/env bash
# Installs what flipbook needs from Debian 12, and nothing else. Idempotent: packages already
# present are skipped, so a second run costs a few seconds.
#   tools/install-deps.sh          build + run + test dependencies
#   tools/install-deps.sh --run    only what building and running the daemon needs
set -euo pipefail

run_pkgs=(build-essential cmake pkg-config libwebsockets-dev libvpx-dev liburing-dev
          libcjson-dev libopenblas-dev)
test_pkgs=(ffmpeg chromium clang libclang-rt-14-dev nodejs npm openssl
           python3-numpy python3-torch python3-sentencepiece)

pkgs=("${run_pkgs[@]}")
[ "${1:-}" = "--run" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian's packages on some machines: keep those.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run this script as root (or with sudo)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
