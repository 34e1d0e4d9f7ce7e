// `torchline bench NAME`: runs one of the package's benchmarks (bench/NAME.mjs).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../native';
import type { Command } from './registry';

const bench: Command = {
  summary: 'run a benchmark beside its Python peer (bench/README.md)',
  usage: 'Usage: torchline bench NAME [-- bench flags]\n\n  NAME: train-step, dataloader, checkpoint, storage, ... (bench/*.mjs)',
  positionals: 8,
  options: {},
  async run(_v, pos) {
    const r = spawnSync(process.execPath, [path.join(packageRoot, 'scripts/bench.js'), ...pos], { stdio: 'inherit' });
    return r.status ?? 1;
  },
};

export default bench;
