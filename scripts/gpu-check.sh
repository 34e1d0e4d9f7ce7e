#!/usr/bin/env bash
# The device check in one command, for a session lent a GPU machine (and for CI, where it runs the CPU parts):
# builds the addon with cmake directly against that machine's PyTorch, then runs bench/gpu-check.mjs (CUDA
# smoke tests, ResNet50 training throughput beside PyTorch eager, the DataLoader feeding the GPU). Each step
# has its own timeout; the whole run fits in 8 minutes. The last line is one JSON object with every figure.
#
# A GPU machine without Node or npm gets them carried: `bash scripts/gpu-pack.sh` here fills .gpu/ (git-ignored:
# a Node binary, xz-compressed; the runtime node_modules; the compiled dist/; libjpeg-turbo; a few photos),
# and the device call carries it: run(command="bash scripts/gpu-check.sh", carry=[".gpu"]).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$(date +%s)
say() { echo "gpu-check: [$(($(date +%s) - t0))s] $*"; }

if ! command -v node >/dev/null 2>&1; then
  [ -f .gpu/node.xz ] || { say "no node here and no .gpu/node.xz: run scripts/gpu-pack.sh first"; exit 1; }
  mkdir -p /tmp/gpu-check-node/bin
  xz -dc .gpu/node.xz >/tmp/gpu-check-node/bin/node && chmod +x /tmp/gpu-check-node/bin/node
  export PATH=/tmp/gpu-check-node/bin:$PATH
fi
[ -d node_modules ] || { [ -f .gpu/node_modules.tar.xz ] && tar -xJf .gpu/node_modules.tar.xz; }
[ -f dist/index.js ] || { [ -f .gpu/dist.tar.xz ] && tar -xJf .gpu/dist.tar.xz; } || npx tsc -p tsconfig.json
say "node $(node --version), $(nproc) cores"

# The Python whose torch the addon links and the peer runs: the project venv, a GPU image's venv, or python3.
py=${TORCHLINE_PYTHON:-}
if [ -z "$py" ]; then
  for c in .venv/bin/python /opt/torch/.venv/bin/python3 python3; do
    if "$c" -c "import torch, torchvision" >/dev/null 2>&1; then py=$c; break; fi
  done
fi
[ -n "$py" ] || { say "no python with torch and torchvision"; exit 1; }
export TORCHLINE_PYTHON=$py
say "peer: $("$py" -c 'import torch; print(torch.__version__, "cuda", torch.cuda.is_available())')"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if [ -d .gpu/jpeg ]; then
  export CMAKE_PREFIX_PATH="$root/.gpu/jpeg${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$root/.gpu/jpeg/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
[ -d .gpu/photos ] && export TORCHLINE_PHOTOS="$root/.gpu/photos"

if [ -f build/CMakeCache.txt ]; then
  # Configured before (setup.sh, or an earlier run on a machine kept warm): bring it up to date.
  timeout 360 cmake --build build -j "$(nproc)" >/tmp/gpu-check-build.log 2>&1 \
    || { grep -E "error|Error" /tmp/gpu-check-build.log | head -30; say "build failed"; exit 1; }
elif [ ! -f build/Release/torchline.node ]; then
  say "building the addon against $py's torch"
  gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  timeout 120 cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$root/build/Release" \
    -DCMAKE_JS_INC="$root/node_modules/node-api-headers/include;$root/node_modules/node-addon-api" \
    -DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION -DLIBTORCH_USE_PYTORCH=1 -DLIBTORCH_PYTHON="$py" >/tmp/gpu-check-cmake.log 2>&1 \
    || { tail -30 /tmp/gpu-check-cmake.log; say "configure failed"; exit 1; }
  grep "torchline:" /tmp/gpu-check-cmake.log
  timeout 360 cmake --build build -j "$(nproc)" >/tmp/gpu-check-build.log 2>&1 \
    || { grep -E "error|Error" /tmp/gpu-check-build.log | head -30; say "build failed"; exit 1; }
  say "built"
fi

quick=()
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
timeout "${GPU_CHECK_TIMEOUT:-330}" node bench/gpu-check.mjs "${quick[@]}"
rc=$?
say "done (exit $rc)"
exit $rc
