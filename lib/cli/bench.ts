// `torchline bench NAME`: runs one of the package's benchmarks (bench/NAME.mjs)
// after checking that what it needs is here, so a missing piece is one line
// saying what to install rather than a failure halfway through.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fashionMnistFiles } from '../data/fashion-mnist';
import { packageRoot } from '../paths';
import { CliError } from './errors';
import type { Command } from './types';

const BENCH_DIR = path.join(packageRoot, 'bench');
const PHOTOS = '/usr/share/doc/opencv-doc/examples/data';

interface Needs {
  /** Python modules of the peer. */
  python?: string[];
  /** Files or folders, each with the Debian package that has it. */
  files?: [string, string][];
  /** npm packages. */
  npm?: string[];
}

// What each bench needs besides the addon (its imports and fixtures).
const NEEDS: Record<string, Needs> = {
  'train-step': { python: ['torch', 'torchvision'] },
  checkpoint: { python: ['torch'] },
  distributed: { python: ['torch'] },
  dataloader: { python: ['torch', 'torchvision'], files: [[PHOTOS, 'opencv-doc']] },
  'end-to-end': { python: ['torch', 'torchvision'], files: [[PHOTOS, 'opencv-doc']] },
  'fashion-mnist': {
    files: [...fashionMnistFiles('train'), ...fashionMnistFiles('t10k')].map((f): [string, string] => [
      f,
      'dataset-fashion-mnist',
    ]),
  },
  storage: { npm: ['firebase-tools@15.34.2'] },
  parquet: { python: ['pyarrow'], files: [[PHOTOS, 'opencv-doc']], npm: ['firebase-tools@15.34.2'] },
  'gpu-check': { python: ['torch', 'torchvision'] },
};

/** The runnable benches: bench/NAME.mjs (helpers such as fixtures.mjs are not benches). */
export function benchNames(): string[] {
  if (!fs.existsSync(BENCH_DIR)) return [];
  return fs
    .readdirSync(BENCH_DIR)
    .filter(
      (f) =>
        f.endsWith('.mjs') &&
        !['fixtures.mjs', 'distributed_worker.mjs', 'storage-list-server.mjs', 'storage-latency-proxy.mjs'].includes(f),
    )
    .map((f) => f.slice(0, -'.mjs'.length))
    .sort();
}

function preflight(name: string): void {
  const needs = NEEDS[name] ?? {};
  for (const [file, pkg] of needs.files ?? []) {
    if (!fs.existsSync(file)) throw new CliError(`bench ${name} needs ${file}: apt-get install ${pkg}`);
  }
  for (const spec of needs.npm ?? []) {
    const mod = spec.replace(/(.)@.*$/, '$1');
    try {
      require.resolve(`${mod}/package.json`, { paths: [packageRoot, process.cwd()] });
    } catch {
      throw new CliError(`bench ${name} needs the npm package ${mod}: npm install --save-dev --ignore-scripts ${spec}`);
    }
  }
  if (needs.python?.length) {
    const { PYTHON } = require(path.join(packageRoot, 'scripts/peer-python.js'));
    const r = spawnSync(PYTHON, ['-c', `import ${needs.python.join(', ')}`], { encoding: 'utf8' });
    if (r.status !== 0) {
      const why = r.error ? `${PYTHON} not found` : (r.stderr.trim().split('\n').pop() ?? 'import failed');
      throw new CliError(
        `bench ${name} compares with Python PyTorch and needs ${needs.python.join(' + ')} (${why}): ` +
          `pip install ${needs.python.join(' ')}, or set TORCHLINE_PYTHON to a python that has them`,
      );
    }
  }
  // The addon itself (LibTorch found?): its own one-line error says what to do.
  require('../native');
}

const bench: Command = {
  usage: `Usage: torchline bench NAME [-- bench flags]

Runs bench/NAME.mjs from the package: torchline's figure beside its Python PyTorch peer's (same machine,
same thread count), ending with one JSON line. The peer is TORCHLINE_PYTHON, else LIBTORCH_PYTHON, else
./.venv/bin/python, else python3. bench/README.md has the figures and each bench's flags.

  NAME: ${benchNames().join(', ') || '(none: bench/ is missing from this installation)'}
  e.g.  torchline bench train-step -- --steps 2 --size 64`,
  positionals: 32,
  options: {},
  async run(_v, pos) {
    const [name, ...args] = pos;
    const names = benchNames();
    if (!name) throw new CliError(`bench needs a NAME: ${names.join(', ')}`);
    if (!names.includes(name))
      throw new CliError(`unknown bench '${name}': ${names.join(', ') || 'bench/ is missing from this installation'}`);
    preflight(name);
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(BENCH_DIR, `${name}.mjs`), ...args], {
      stdio: 'inherit',
    });
    if (r.error) throw r.error;
    return r.status ?? 1;
  },
};

export default bench;
