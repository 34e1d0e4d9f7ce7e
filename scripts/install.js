// npm install hook for users of the package: use a prebuilt addon when one
// loads here, otherwise build from source against the LibTorch the user has
// (LIBTORCH, Torch_DIR, LIBTORCH_USE_PYTORCH=1 or the system's; see README).
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
try {
  require('node-gyp-build')(root);
  process.exit(0);
} catch (err) {
  console.error(`torchline: no usable prebuilt addon (${err.message.split('\n')[0]}); building from source`);
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'build', '--out', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
