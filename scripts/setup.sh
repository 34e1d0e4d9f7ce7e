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
#   libgloo-dev                    c10d's Gloo headers (pip's torch ships the library, not gloo's headers)
#   libturbojpeg0-dev              the JPEG fast path of the data loader
#   libjpeg62-turbo-dev            its region decoding (libjpeg API: crop + skip scanlines)
#   cmake, g++, ninja, ccache      the native build
#   opencv-doc                     real photos for data tests and benchmarks
#   dataset-fashion-mnist          the demo's dataset
#   chromium                       renders the HTML report in its test
# LibTorch itself comes from pip's torch (below), not from Debian (libtorch-dev is 1.13).
APT_PACKAGES=(libgloo-dev libturbojpeg0-dev libjpeg62-turbo-dev cmake g++ ninja-build ccache opencv-doc
  dataset-fashion-mnist chromium)

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
  say "not a Debian/Ubuntu system: install cmake, a C++20 compiler, ninja and libjpeg-turbo; LibTorch comes from pip,"
  say "or set LIBTORCH, Torch_DIR or LIBTORCH_USE_PYTORCH=1 (README 'LibTorch')."
fi

# LibTorch: PyTorch from pip in a project-local venv (.venv). The addon links its
# LibTorch, and tests and benchmarks use its torch/torchvision as the Python peer,
# so "vs PyTorch" means the same LibTorch. The CUDA 13 build runs on CPU too and
# lets every CUDA path compile (with nvcc present). cuda-bindings, cuda-toolkit and
# triton (in torch's own requirements) are Python-side only: --no-deps skips them.
# Bring your own instead with LIBTORCH, Torch_DIR or LIBTORCH_USE_PYTORCH (README).
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
PY_DEPS=(filelock typing-extensions sympy networkx jinja2 fsspec numpy pillow pyarrow
  nvidia-cublas nvidia-cudnn-cu13 nvidia-nccl-cu13 nvidia-cufft nvidia-curand nvidia-cusolver nvidia-cusparse
  nvidia-cusparselt-cu13 nvidia-nvjitlink nvidia-cuda-nvrtc nvidia-cuda-cupti nvidia-nvtx nvidia-nvshmem-cu13
  nvidia-cufile nvidia-cuda-runtime)
if [ -z "${LIBTORCH:-}${Torch_DIR:-}${LIBTORCH_USE_PYTORCH:-}" ]; then
  venv_py=.venv/bin/python
  if ! "$venv_py" -c "import torch, torchvision, pyarrow, PIL; assert torch.__version__.startswith('$TORCH_VERSION')" 2>/dev/null; then
    py=$(command -v python3.11 || command -v python3.12 || command -v python3)
    say "installing torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION into .venv (with $py)"
    [ -x "$venv_py" ] || "$py" -m venv .venv
    pip=(.venv/bin/pip install -q --disable-pip-version-check --retries 0)
    "${pip[@]}" --no-deps "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" >&2
    "${pip[@]}" "${PY_DEPS[@]}" >&2
  fi
  export LIBTORCH_USE_PYTORCH=1 LIBTORCH_PYTHON="$PWD/$venv_py"
fi
# ccache: the worktrees of one machine share their cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"

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
