// Shared fixtures for the storage tests: the emulator, seeding objects fast.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Storage } from '@google-cloud/storage';
import { storage as st } from '../../lib';

export async function seedObjects(
  storage: Storage,
  bucket: string,
  objects: { name: string; data: Buffer }[],
  concurrency = 32,
) {
  const b = storage.bucket(bucket);
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const o = objects[next++];
      await b
        .file(o.name)
        .save(o.data, { resumable: false, validation: false, contentType: 'application/octet-stream' });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

// One temporary-folder helper for every test (test/support/peer.ts).
export { tempDir as tmpDir } from '../support/peer';

/** Every regular file below dir, relative, '/'-separated, sorted. */
export function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

export { st };
