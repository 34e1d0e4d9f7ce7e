// Which LibTorch a source build of the addon uses, decided as scripts/setup.sh
// decides it: LIBTORCH, Torch_DIR or LIBTORCH_USE_PYTORCH when the user set one;
// otherwise pip's torch from the first python that imports it of: the .venv of
// the project installing torchline (INIT_CWD under npm), this package's .venv,
// python3. Returns the environment for cmake-js (empty: CMake's own search).
// `node scripts/find-torch.js` prints it as shell assignments.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

function torchEnv(env = process.env) {
  if (env.LIBTORCH || env.Torch_DIR || env.LIBTORCH_USE_PYTORCH) return { source: 'set by you', env: {} };
  const roots = [env.INIT_CWD, process.cwd(), path.resolve(__dirname, '..')].filter(Boolean);
  const candidates = [...new Set(roots.map((r) => path.join(r, '.venv', 'bin', 'python')))].filter((p) =>
    fs.existsSync(p),
  );
  candidates.push('python3');
  for (const python of candidates) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) {
      return {
        source: `torch ${r.stdout.trim()} of ${python}`,
        env: { LIBTORCH_USE_PYTORCH: '1', LIBTORCH_PYTHON: python },
      };
    }
  }
  return { source: 'none found', env: {} };
}

module.exports = { torchEnv };

if (require.main === module) {
  const { env } = torchEnv();
  for (const [k, v] of Object.entries(env)) console.log(`${k}=${JSON.stringify(v)}`);
}
