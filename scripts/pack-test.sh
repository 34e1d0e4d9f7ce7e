#!/usr/bin/env bash
# The package as users get it: prebuildify the addon, npm pack, install the
# tarball into an empty project, then require() and import it there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
npm run --silent prebuildify >/dev/null
rm -f torchline-*.tgz
tgz=$(npm pack --silent | tail -n 1)
app=$(mktemp -d)
trap 'rm -rf "$app" "$root/$tgz"' EXIT
cd "$app"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "$root/$tgz" >/dev/null
node -e "const t=require('torchline'); const x=t.Tensor.from(new Float32Array([1,2,3])); if (x.toArray().join()!=='1,2,3') process.exit(1); console.log('require ok: LibTorch', t.version().libtorch)"
cat > esm.mjs <<'JS'
import { Tensor, version, Device } from 'torchline';
const t = Tensor.ones([2, 2]).matmul(Tensor.ones([2, 2]));
if (t.toArray().join() !== '2,2,2,2' || Device.parse('cuda:1').index !== 1) process.exit(1);
console.log('import ok: torchline', version().torchline);
JS
node esm.mjs
npx --no-install torchline doctor | head -n 2
ls node_modules/torchline/prebuilds/linux-x64/*.node >/dev/null || { echo "no prebuild in the package"; exit 1; }
test ! -d node_modules/torchline/build || { echo "the install rebuilt instead of using the prebuild"; exit 1; }
echo "pack test: passed"
