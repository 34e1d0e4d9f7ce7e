// Evidence for lib/storage/http.ts: why torchline's requests go through
// Node's own HTTP client and not through @google-cloud/storage's. This pins
// what the pinned library version (package.json) does when a connection is
// reset in the middle of a response body (headers with a Content-Length sent,
// part of the body, then RST), through the fault proxy, with the library's
// own retries off so that an error would surface at once. If an upgrade makes
// these tests fail, the library now reports such resets: reconsider routing
// media and list requests through it (and say so in http.ts and the README).
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import { startGcsEmulator, storage as st, type GcsEmulator } from '../../lib';
import { startFaultProxy, type FaultProxy } from './fault-proxy';
import { seedObjects, tmpDir } from './helpers';

const BUCKET = 'lib-bkt';
const WAIT_MS = 4000;
let emu: GcsEmulator;
let proxy: FaultProxy;
let lib: Storage;

const outcome = (p: Promise<unknown>) =>
  Promise.race([
    p.then(
      () => 'resolved',
      (e: Error) => `rejected: ${String(e?.message).split('\n')[0]}`,
    ),
    new Promise<string>((r) => setTimeout(() => r(`still pending after ${WAIT_MS} ms`), WAIT_MS).unref()),
  ]);

beforeAll(async () => {
  emu = await startGcsEmulator();
  const direct = st.createStorage({ emulatorHost: emu.url });
  await seedObjects(direct, BUCKET, [
    { name: 'x/big.bin', data: Buffer.alloc(2 * 1024 * 1024, 7) },
    ...Array.from({ length: 300 }, (_, i) => ({
      name: `list/${String(i).padStart(4, '0')}-${'n'.repeat(80)}.bin`,
      data: Buffer.from('x'),
    })),
  ]);
  proxy = await startFaultProxy(emu.url, 5);
  lib = st.createStorage({
    emulatorHost: proxy.url,
    storageOptions: { retryOptions: { autoRetry: false, maxRetries: 0 } },
  });
});
afterAll(async () => {
  await proxy?.close();
  await emu?.stop();
});

describe('@google-cloud/storage on a mid-body connection reset (pinned behaviour)', () => {
  it('file.download() neither resolves nor rejects', async () => {
    proxy.setFaults({ reset: 1, match: (req) => /alt=media/.test(req.url ?? '') });
    const got = await outcome(lib.bucket(BUCKET).file('x/big.bin').download());
    proxy.setFaults({});
    expect(got, 'the library now settles on a mid-body reset: reconsider lib/storage/http.ts').toBe(
      `still pending after ${WAIT_MS} ms`,
    );
  });

  it('bucket.getFiles() neither resolves nor rejects', async () => {
    proxy.setFaults({ reset: 1, match: (req) => /\/o\?/.test(req.url ?? '') && req.method === 'GET' });
    const got = await outcome(lib.bucket(BUCKET).getFiles({ prefix: 'list/', autoPaginate: false }));
    proxy.setFaults({});
    expect(got, 'the library now settles on a mid-body reset: reconsider lib/storage/http.ts').toBe(
      `still pending after ${WAIT_MS} ms`,
    );
  });

  it("torchline's own client reports the same reset at once (and retries it)", async () => {
    proxy.setFaults({ reset: 1, match: (req) => /alt=media/.test(req.url ?? '') });
    const via = st.createStorage({ emulatorHost: proxy.url });
    const dest = tmpDir('lib-reset');
    const t0 = performance.now();
    const got = await outcome(
      st.download(`gs://${BUCKET}/x`, dest, { storage: via, maxRetries: 2, retryDelayMs: 1, progress: false }),
    );
    proxy.setFaults({});
    fs.rmSync(dest, { recursive: true, force: true });
    expect(got).toMatch(/^rejected: 1 object\(s\) failed to download .*(reset|ECONNRESET|closed|aborted)/i);
    expect(performance.now() - t0).toBeLessThan(WAIT_MS);
  });
});
