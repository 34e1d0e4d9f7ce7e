// The in-process GCS emulator used by tests, benches and the demo.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startGcsEmulator, storage as st } from '../../lib';

describe('startGcsEmulator', () => {
  it('starts fast on a free port, serves the JSON API, resets, and stops cleanly', async () => {
    const t0 = performance.now();
    const a = await startGcsEmulator();
    const b = await startGcsEmulator();
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(a.port).not.toBe(b.port);
    expect(a.url).toBe(`http://127.0.0.1:${a.port}`);
    const sa = st.createStorage({ emulatorHost: a.url });
    const sb = st.createStorage({ emulatorHost: b.url });
    await sa.bucket('one-bkt').file('x/a.txt').save('a', { resumable: false });
    await sb.bucket('two-bkt').file('x/b.txt').save('bb', { resumable: false });
    // Two instances in one process keep separate objects.
    expect((await st.listFiles('gs://one-bkt/x', { storage: sa })).map((f) => f.name)).toEqual(['x/a.txt']);
    expect((await st.listFiles('gs://two-bkt/x', { storage: sb })).map((f) => f.name)).toEqual(['x/b.txt']);
    expect((await st.listFiles('gs://two-bkt/x', { storage: sa })).length).toBe(0);
    a.reset();
    expect((await st.listFiles('gs://one-bkt/x', { storage: sa })).length).toBe(0);
    await a.stop();
    await a.stop(); // idempotent
    // The port is free again and b still works.
    await new Promise<void>((resolve, reject) => {
      const s = net
        .createServer()
        .once('error', reject)
        .listen(a.port, '127.0.0.1', () => s.close(() => resolve()));
    });
    expect((await st.listFiles('gs://two-bkt/x', { storage: sb })).map((f) => f.name)).toEqual(['x/b.txt']);
    await b.stop();
    await expect(st.listFiles('gs://two-bkt/x', { storage: sb })).rejects.toThrow();
  });

  it('binds a requested port and reports a busy one', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await expect(startGcsEmulator({ port })).rejects.toThrow(/EADDRINUSE/);
    await new Promise((r) => probe.close(r));
    const e = await startGcsEmulator({ port });
    expect(e.port).toBe(port);
    await e.stop();
  });

  it('leaves no blob folder behind', async () => {
    const tmp = os.tmpdir();
    const before = new Set(fs.readdirSync(tmp).filter((n) => n.startsWith('torchline-gcs-emu-')));
    const e = await startGcsEmulator();
    const mine = fs.readdirSync(tmp).filter((n) => n.startsWith('torchline-gcs-emu-') && !before.has(n));
    expect(mine.length).toBe(1);
    await e.stop();
    expect(fs.existsSync(path.join(tmp, mine[0]))).toBe(false);
  });
});
