#!/usr/bin/env node
// prebuildify drives node-gyp; torchline builds with cmake-js. prebuildify
// calls this as `node-gyp rebuild --target=... --release`: build with cmake-js
// into build/Release, where prebuildify picks the .node up, against the
// LibTorch scripts/find-torch.js finds (as the install hook does).
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { torchEnv } = require('./find-torch');

const root = path.resolve(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'build', '--out', 'build'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, ...torchEnv().env },
});
process.exit(r.status ?? 1);
