// `npm run bench -- NAME [args]` runs bench/NAME.mjs (or bench/NAME/index.mjs).
// Each bench prints its figures beside its peer's and ends with one JSON line.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const benchDir = path.resolve(__dirname, '..', 'bench');
const [name, ...args] = process.argv.slice(2);
const available = fs
  .readdirSync(benchDir)
  .filter((f) => f.endsWith('.mjs') || fs.existsSync(path.join(benchDir, f, 'index.mjs')))
  .map((f) => f.replace(/\.mjs$/, ''));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [args]\navailable: ${available.join(', ')}`);
  process.exit(2);
}
const file = fs.existsSync(path.join(benchDir, `${name}.mjs`))
  ? path.join(benchDir, `${name}.mjs`)
  : path.join(benchDir, name, 'index.mjs');
const r = spawnSync(process.execPath, ['--expose-gc', file, ...args], { stdio: 'inherit' });
process.exit(r.status ?? 1);
