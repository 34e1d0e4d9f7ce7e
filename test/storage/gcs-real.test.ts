// The same round trip against real Google Cloud Storage, when a bucket and
// credentials are given: TORCHLINE_GCS_TEST_BUCKET=my-bucket plus
// GOOGLE_APPLICATION_CREDENTIALS (or application-default credentials).
// Everything is written under a fresh prefix and deleted afterwards.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { storage as st } from '../../lib';
import { tmpDir, walk } from './helpers';

const bucket = process.env.TORCHLINE_GCS_TEST_BUCKET;
// TORCHLINE_GCS_TEST_ALLOW_EMULATOR=1 runs this suite against an emulator (to check the suite itself).
const real = !!bucket && (!process.env.STORAGE_EMULATOR_HOST || process.env.TORCHLINE_GCS_TEST_ALLOW_EMULATOR === '1');
if (!real) {
  console.log(
    'gcs-real: skipped (set TORCHLINE_GCS_TEST_BUCKET and GOOGLE_APPLICATION_CREDENTIALS or application-default credentials, ' +
      'with STORAGE_EMULATOR_HOST unset, to run against real GCS)',
  );
}

describe.skipIf(!real)('real GCS round trip', () => {
  const prefix = `torchline-test/${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
  const storage = st.createStorage();
  const dirs: string[] = [];
  afterAll(async () => {
    if (real) await storage.bucket(bucket!).deleteFiles({ prefix: `${prefix}/`, force: true });
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('uploads, lists Spark-style, downloads verified, and resumes nothing twice', async () => {
    const src = tmpDir('real-src');
    dirs.push(src);
    const files = new Map<string, Buffer>();
    for (const label of ['cat', 'dog']) {
      for (let i = 0; i < 6; i++) {
        const rel = `label=${label}/img-${i}.bin`;
        const data = crypto.randomBytes(100 + i * 1000);
        fs.mkdirSync(path.join(src, `label=${label}`), { recursive: true });
        fs.writeFileSync(path.join(src, rel), data);
        files.set(rel, data);
      }
    }
    fs.writeFileSync(path.join(src, '_SUCCESS'), '');
    const up = await st.upload(src, `gs://${bucket}/${prefix}`, { storage, progress: false });
    expect(up.uploaded).toBe(files.size + 1);

    const listing = await st.listPartitioned(`gs://${bucket}/${prefix}`, { storage, pageSize: 5, minPartitionNum: 2 });
    expect(listing.partitionColumns).toEqual([{ name: 'label', type: 'string' }]);
    expect(listing.files.map((f) => f.object.relPath)).toEqual([...files.keys()].sort());

    const dest = tmpDir('real-dst');
    dirs.push(dest);
    const dl = await st.download(`gs://${bucket}/${prefix}`, dest, { storage, progress: false });
    expect(dl.downloaded).toBe(files.size + 1);
    for (const [rel, data] of files) expect(fs.readFileSync(path.join(dest, rel)).equals(data)).toBe(true);
    const again = await st.download(`gs://${bucket}/${prefix}`, dest, { storage, progress: false });
    expect(again.downloaded).toBe(0);
    expect(walk(dest).length).toBe(files.size + 1);
  });
});
