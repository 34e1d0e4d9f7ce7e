// Shared by test/data: the real photos, the Python peer, temp trees.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Batch, DataLoader } from '../../lib';

export const PHOTOS = '/usr/share/doc/opencv-doc/examples/data';
import { PYTHON as PY } from '../support/peer';

export { PY };
export const PEER = path.join(__dirname, 'peer.py');

export function photos(): string[] {
  return fs
    .readdirSync(PHOTOS)
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .map((f) => path.join(PHOTOS, f));
}

export function peer(...args: string[]): string {
  return execFileSync(PY, [PEER, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
}

// One temporary-folder helper for every test (test/support/peer.ts).
export { tempDir as tmpDir } from '../support/peer';

export async function collect(loader: DataLoader): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader) out.push(b);
  return out;
}
