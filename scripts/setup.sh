#!/usr/bin/env bash
# Idempotent setup for a fresh clone: system packages, npm packages, the native
# addon and the TypeScript build. Every README command calls it first; when
# everything is in place it takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*" >&2; }

# What the library, its tests, benchmarks and demo need from the system:
#   libtorch-dev, libgloo-dev      LibTorch 1.13 (CPU) and c10d's Gloo headers
#   libopenblas0-pthread           a fast BLAS (Debian's reference BLAS is ~35x slower)
#   libturbojpeg0-dev              the JPEG fast path of the data loader
#   libjpeg62-turbo-dev            its region decoding (libjpeg API: crop + skip scanlines)
#   cmake, g++, ccache             the native build
#   python3-torch/-torchvision/-pil   the Python peer for tests and benchmarks
#   opencv-doc                     real photos for data tests and benchmarks
#   dataset-fashion-mnist          the demo's dataset
#   chromium                       renders the HTML report in its test
APT_PACKAGES=(libtorch-dev libgloo-dev libopenblas0-pthread libturbojpeg0-dev libjpeg62-turbo-dev cmake g++ ccache
  python3-torch python3-torchvision python3-pil opencv-doc dataset-fashion-mnist chromium)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "setup: missing system packages: ${missing[*]}" >&2
      echo "setup: run as root: apt-get install -y ${missing[*]}" >&2
      echo "setup: (or bring your own LibTorch: see README 'LibTorch')" >&2
      [ -n "${LIBTORCH:-}${Torch_DIR:-}${LIBTORCH_USE_PYTORCH:-}" ] || exit 1
    fi
  fi
else
  say "not a Debian/Ubuntu system: install LibTorch (or pip torch), cmake, a C++17 compiler and libjpeg-turbo,"
  say "then set LIBTORCH, Torch_DIR or LIBTORCH_USE_PYTORCH=1 (README 'LibTorch')."
fi

# npm packages. --ignore-scripts: our own install hook would build before the
# tree is ready, and firebase-tools' optional re2 compiles for minutes; nothing
# we use needs an install script (sharp ships prebuilt libvips packages).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi

# The native addon: cmake-js configures once, then ninja/make rebuilds only
# what changed.
if [ ! -f build/Release/torchline.node ] || [ -n "$(find native CMakeLists.txt -newer build/Release/torchline.node -print -quit)" ]; then
  say "building the native addon (first build: a few minutes)"
  if [ "$quiet" = 1 ]; then npx cmake-js build --out build >/dev/null; else npx cmake-js build --out build >&2; fi
fi

if [ ! -f dist/index.js ] || [ -n "$(find lib tsconfig.json -newer dist/index.js -print -quit)" ]; then
  say "compiling TypeScript"
  npx tsc -p tsconfig.json
  touch dist/index.js
fi
