// One temporary folder per test run, removed when the run ends: it is TMPDIR for every test file's process and
// everything they start (Python peers, torchrun, rank workers), so a run leaves nothing in /tmp. Before, each
// `npm test` left ~4.5 GB there (datasets, checkpoints, emulator blobs), and ten runs in a row filled the disk.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export default function setup(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchline-test-'));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
