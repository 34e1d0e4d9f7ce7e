// The Python that tests and benchmarks use as their PyTorch peer: the project's
// own venv (scripts/setup.sh installs torch/torchvision there, the same LibTorch
// the addon is built against), or TORCHLINE_PYTHON to compare with another.
const fs = require('node:fs');
const path = require('node:path');

const venv = path.resolve(__dirname, '..', '.venv', 'bin', 'python');
const PYTHON = process.env.TORCHLINE_PYTHON || (fs.existsSync(venv) ? venv : 'python3');

module.exports = { PYTHON };
