// `npm run bench -- NAME [args]`: the same as `torchline bench NAME -- [args]`
// (lib/cli/bench.ts lists the benches and checks what each needs).
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const [name, ...args] = process.argv.slice(2);
const cli = path.resolve(__dirname, '..', 'dist', 'cli.js');
const r = spawnSync(
  process.execPath,
  [cli, 'bench', ...(name ? [name] : []), ...(args.length ? ['--', ...args] : [])],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
