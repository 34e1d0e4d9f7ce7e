// npm install hook for users of the package: use the prebuilt addon when it
// loads here (its RUNPATH finds LibTorch: the build machine's torch/lib, or pip's
// torch in the installing project's .venv), otherwise build from source against
// the LibTorch scripts/find-torch.js finds (LIBTORCH, Torch_DIR,
// LIBTORCH_USE_PYTORCH, or pip's torch as scripts/setup.sh finds it; README "LibTorch").
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { torchEnv } = require('./find-torch');

const root = path.resolve(__dirname, '..');
try {
  require('node-gyp-build')(root);
  process.exit(0);
} catch (err) {
  console.error(`torchline: the prebuilt addon does not load here (${err.message.split('\n')[0]})`);
}
const { source, env } = torchEnv();
console.error(`torchline: building the addon from source against LibTorch: ${source} (a few minutes)`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'build', '--out', 'build'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, ...env },
});
if (r.status !== 0) {
  console.error(
    'torchline: the build failed. It needs cmake, a C++20 compiler and LibTorch >= 2.1: pip install torch (into ./.venv or python3), ' +
      'or set LIBTORCH=/path/to/libtorch, then `npm rebuild torchline` (README "LibTorch").',
  );
}
process.exit(r.status ?? 1);
