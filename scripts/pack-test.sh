#!/usr/bin/env bash
# The package as users get it: prebuild the addon, check its RUNPATH finds
# LibTorch, npm pack, install the tarball into an empty project and run the
# README's "Use it in your project" block there (every command's exit code and
# output checked), then what the block does not show: --help of every command
# without loading the addon, require/import, and the demo's refusals.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fail() { echo "pack test: FAILED: $*" >&2; exit 1; }

# The LibTorch to build against, found as the install hook finds it.
eval "$(node scripts/find-torch.js | sed 's/^/export /')"
npm run --silent prebuildify >/dev/null
prebuild=$(ls prebuilds/linux-x64/*.node)
runpath=$(readelf -d "$prebuild" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
[ -n "$runpath" ] || fail "the prebuild has no RUNPATH"
found=""
IFS=: read -ra dirs <<<"$runpath"
for d in "${dirs[@]}"; do [ -f "$d/libtorch.so" ] && found=$d; done
[ -n "$found" ] || fail "no RUNPATH entry of the prebuild holds libtorch.so: $runpath"
echo "$runpath" | grep -q '\$ORIGIN/../../../../.venv/lib/python3\.[0-9]*/site-packages/torch/lib' ||
  fail "the prebuild does not look in the installing project's .venv: $runpath"
echo "prebuild: $prebuild finds LibTorch in $found"

rm -f torchline-*.tgz
tgz=$root/$(npm pack --silent | tail -n 1)
app=$(mktemp -d)
trap 'rm -rf "$app" "$tgz"' EXIT
cd "$app"
# A user's shell: no torchline build variables.
unset LIBTORCH Torch_DIR LIBTORCH_USE_PYTORCH LIBTORCH_PYTHON TORCHLINE_PYTHON

# 1. The README block, line by line, with its two substitutions.
block=$(awk '/^## Use it in your project/{s=1} s&&/^```sh/{b=1;next} b&&/^```/{exit} b' "$root/README.md")
[ -n "$block" ] || fail "README has no 'Use it in your project' sh block"
while IFS= read -r line; do
  cmd=${line%%  #*}
  case "$cmd" in
    python3\ -m\ venv*) cmd="ln -s '$root/.venv' .venv" ;;
    npm\ install\ torchline*) cmd="npm install --no-audit --no-fund --loglevel=error '$tgz'" ;;
    npm\ install\ *) cmd="$cmd --prefer-offline --no-audit --no-fund --loglevel=error" ;;
  esac
  echo "\$ $line" >&2
  set +e
  out=$(bash -c "$cmd" 2>&1)
  code=$?
  set -e
  [ "$code" = 0 ] || { echo "$out" >&2; fail "exit $code from: $line"; }
  case "$line" in
    *torchline\ --help*) grep -q '^  demo ' <<<"$out" || fail "--help lists no commands: $out" ;;
    *torchline\ doctor*) grep -q '^LibTorch ' <<<"$out" || fail "doctor: $out" ;;
    *torchline\ bench*) tail -n 1 <<<"$out" | grep -q '"bench":"train-step"' || fail "bench printed no result line: $out" ;;
    *torchline\ demo*) grep -q 'torchline demo: done' <<<"$out" && tail -n 1 <<<"$out" | grep -q '"demo":"fashion-mnist"' ||
      fail "demo: $out"
      [ -f demo-output/.torchline-demo ] || fail "the demo did not mark its --out folder" ;;
  esac
  [ -z "${PACK_TEST_VERBOSE:-}" ] || echo "$out" >&2
done <<<"$block"

# 2. The install used the prebuild, and it resolves every library.
ls node_modules/torchline/prebuilds/linux-x64/*.node >/dev/null || fail "no prebuild in the package"
test ! -d node_modules/torchline/build || fail "the install rebuilt instead of using the prebuild"
! ldd node_modules/torchline/prebuilds/linux-x64/*.node | grep 'not found' || fail "the installed prebuild misses libraries"
# ... and finds LibTorch in this project's .venv, through its $ORIGIN-relative RUNPATH entry.
ldd node_modules/torchline/prebuilds/linux-x64/*.node | grep -q 'libtorch\.so => .*/prebuilds/linux-x64/\.\./\.\./\.\./\.\./\.venv/' ||
  fail "the installed prebuild does not take LibTorch from the project's .venv"
[ -f node_modules/torchline/bench/train-step.mjs ] || fail "bench/ is not in the package"

# 3. --help of every command loads no addon.
cat > probe.cjs <<'JS'
process.on('exit', () => {
  const loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node') || /[\\/]native\.js$/.test(k));
  if (loaded.length) process.stderr.write(`ADDON LOADED: ${loaded.join(', ')}\n`);
});
JS
cli=node_modules/torchline/dist/cli.js
for c in train eval list download upload bench doctor demo; do
  out=$(node -r ./probe.cjs "$cli" "$c" --help 2>&1) || fail "$c --help exited $?"
  grep -q "^Usage: torchline $c" <<<"$out" || fail "$c --help: $out"
  ! grep -q 'ADDON LOADED' <<<"$out" || fail "$c --help loaded the addon"
done

# 4. require and import.
node -e "const t=require('torchline'); const x=t.Tensor.from(new Float32Array([1,2,3])); if (x.toArray().join()!=='1,2,3') process.exit(1)" ||
  fail "require"
cat > esm.mjs <<'JS'
import { Tensor, Device } from 'torchline';
const t = Tensor.ones([2, 2]).matmul(Tensor.ones([2, 2]));
if (t.toArray().join() !== '2,2,2,2' || Device.parse('cuda:1').index !== 1) process.exit(1);
JS
node esm.mjs || fail "import"

# 5. The demo's refusals: exit 2, one line, nothing written or deleted.
set +e
out=$(npx --no-install torchline demo --quick --out . 2>&1); code=$?
set -e
[ "$code" = 2 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -q 'holds files the demo did not write' <<<"$out" ||
  fail "demo --out . (exit $code): $out"
[ -f package.json ] && [ -f esm.mjs ] || fail "demo --out . deleted files"
npm uninstall --no-audit --no-fund --loglevel=error firebase-tools >/dev/null
set +e
out=$(npx --no-install torchline demo --quick --out fresh 2>&1); code=$?
set -e
[ "$code" = 2 ] && grep -q 'npm install --save-dev --ignore-scripts firebase-tools@' <<<"$out" && [ ! -e fresh ] ||
  fail "demo without firebase-tools (exit $code): $out"
echo "pack test: passed"
