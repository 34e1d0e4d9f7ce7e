// The Python that tests and benchmarks use as their PyTorch peer, first found of:
// TORCHLINE_PYTHON; LIBTORCH_PYTHON (the one whose torch the addon was built
// against); this package's .venv (scripts/setup.sh installs torch/torchvision
// there); the .venv of the project running it; python3.
const fs = require('node:fs');
const path = require('node:path');

const venvs = [path.resolve(__dirname, '..'), process.cwd()].map((d) => path.join(d, '.venv', 'bin', 'python'));
const PYTHON =
  process.env.TORCHLINE_PYTHON || process.env.LIBTORCH_PYTHON || venvs.find((p) => fs.existsSync(p)) || 'python3';

module.exports = { PYTHON };
