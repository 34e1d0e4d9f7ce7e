// Verified uploads and the background upload queue, against the emulator
// directly and through the fault proxy.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import { startGcsEmulator, storage as st, UploadQueue, type GcsEmulator } from '../../lib';
import { seededRandom, startFaultProxy, type FaultProxy } from './fault-proxy';
import { tmpDir } from './helpers';

const BUCKET = 'up-bkt';
let emu: GcsEmulator;
let storage: Storage;
let proxy: FaultProxy;
let viaProxy: Storage;
let src: string;
const files = new Map<string, Buffer>();

async function remoteBytes(name: string): Promise<Buffer> {
  const [buf] = await storage.bucket(BUCKET).file(name).download();
  return buf;
}

beforeAll(async () => {
  emu = await startGcsEmulator();
  storage = st.createStorage({ emulatorHost: emu.url });
  proxy = await startFaultProxy(emu.url, 77);
  viaProxy = st.createStorage({ emulatorHost: proxy.url });
  src = tmpDir('upload');
  const rand = seededRandom(5);
  const put = (rel: string, size: number) => {
    const data = crypto.randomBytes(size);
    data[0] = Math.floor(rand() * 256);
    const p = path.join(src, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    files.set(rel, data);
  };
  for (let i = 0; i < 40; i++) put(`ckpt/epoch-${i}.pt`, 1 + Math.floor(rand() * 50_000));
  put('ckpt/nested/deep/state.json', 300);
  put('ckpt/empty.txt', 0);
  put('ckpt/big.safetensors', 9 * 1024 * 1024); // above the resumable threshold
});

afterAll(async () => {
  await proxy?.close();
  await emu?.stop();
  if (src) fs.rmSync(src, { recursive: true, force: true });
});

describe('upload', () => {
  it('uploads a folder verified, keeping relative paths; a re-run skips everything', async () => {
    const r = await st.upload(path.join(src, 'ckpt'), `gs://${BUCKET}/run1`, { storage, progress: false });
    expect(r.uploaded).toBe(files.size);
    expect(r.skipped).toBe(0);
    for (const [rel, data] of files) {
      const name = `run1/${rel.slice('ckpt/'.length)}`;
      expect((await remoteBytes(name)).equals(data), name).toBe(true);
      const f = r.files.find((x) => x.uri === `gs://${BUCKET}/${name}`)!;
      expect(f.md5Hash).toBe(crypto.createHash('md5').update(data).digest('base64'));
    }
    const again = await st.upload(path.join(src, 'ckpt'), `gs://${BUCKET}/run1/`, { storage, progress: false });
    expect(again.uploaded).toBe(0);
    expect(again.skipped).toBe(files.size);

    // A changed file is uploaded again; the rest are skipped.
    const p = path.join(src, 'ckpt/epoch-3.pt');
    const changed = crypto.randomBytes(1234);
    fs.writeFileSync(p, changed);
    files.set('ckpt/epoch-3.pt', changed);
    const third = await st.upload(path.join(src, 'ckpt'), `gs://${BUCKET}/run1`, { storage, progress: false });
    expect(third.uploaded).toBe(1);
    expect((await remoteBytes('run1/epoch-3.pt')).equals(changed)).toBe(true);
  });

  it('uploads large files (above 5 MiB) through a resumable session, verified byte for byte', async () => {
    const dir = tmpDir('big');
    const data = crypto.randomBytes(40 * 1024 * 1024 + 17);
    fs.writeFileSync(path.join(dir, 'big.pth'), data);
    const r = await st.upload(path.join(dir, 'big.pth'), `gs://${BUCKET}/big`, { storage, progress: false });
    expect(r.files[0].status).toBe('uploaded');
    expect((await remoteBytes('big/big.pth')).equals(data)).toBe(true);
    // Through resets and 503s too: each failed attempt opens a new session.
    const again = crypto.randomBytes(12 * 1024 * 1024);
    fs.writeFileSync(path.join(dir, 'big.pth'), again);
    await st.upload(path.join(dir, 'big.pth'), `gs://${BUCKET}/big2`, { storage: viaProxy, progress: false });
    expect((await remoteBytes('big2/big.pth')).equals(again)).toBe(true);
  });

  it('uploads a single file to prefix/basename', async () => {
    const r = await st.upload(path.join(src, 'ckpt/nested/deep/state.json'), `gs://${BUCKET}/single`, {
      storage,
      progress: false,
    });
    expect(r.files.map((f) => f.uri)).toEqual([`gs://${BUCKET}/single/state.json`]);
  });

  it('retries through 503s and connection resets, and verifies what was stored', async () => {
    proxy.setFaults({ status503: 0.2, reset: 0.15, match: (req) => req.method === 'POST' || req.method === 'PUT' });
    const before = proxy.counts.status503 + proxy.counts.reset;
    const r = await st.upload(path.join(src, 'ckpt'), `gs://${BUCKET}/faulty`, {
      storage: viaProxy,
      skipExisting: false,
      retryDelayMs: 5,
      maxRetries: 20,
      progress: false,
    });
    proxy.setFaults({});
    expect(proxy.counts.status503 + proxy.counts.reset - before).toBeGreaterThan(3);
    expect(r.uploaded).toBe(files.size);
    for (const [rel, data] of files) expect((await remoteBytes(`faulty/${rel.slice(5)}`)).equals(data), rel).toBe(true);
  });

  it('refuses local destinations and missing sources clearly', async () => {
    await expect(st.upload(src, '/tmp/x', { storage })).rejects.toThrow(/destination must be a gs:\/\/ location/);
    await expect(st.upload('/nonexistent/x', `gs://${BUCKET}/x`, { storage })).rejects.toThrow(/does not exist/);
  });
});

describe('UploadQueue', () => {
  it('uploads in the background; flush() waits for all of it', async () => {
    const q = new UploadQueue(`gs://${BUCKET}/queue`, { storage, concurrency: 2 });
    const names = [...files.keys()].filter((k) => k.startsWith('ckpt/epoch-')).slice(0, 8);
    const t0 = performance.now();
    const promises = names.map((rel) => q.add(path.join(src, rel)));
    // add() returns at once: the work is still pending.
    expect(performance.now() - t0).toBeLessThan(50);
    expect(q.pending).toBe(names.length);
    // The event loop stays free while uploads run.
    let ticks = 0;
    const tick = setInterval(() => ticks++, 1);
    const done = await q.flush();
    clearInterval(tick);
    expect(ticks).toBeGreaterThan(0);
    expect(q.pending).toBe(0);
    expect(done.map((d) => d.uri).sort()).toEqual(names.map((n) => `gs://${BUCKET}/queue/${path.basename(n)}`).sort());
    for (const rel of names)
      expect((await remoteBytes(`queue/${path.basename(rel)}`)).equals(files.get(rel)!)).toBe(true);
    expect((await Promise.all(promises)).length).toBe(names.length);
  });

  it('reports failures at flush(), then carries on', async () => {
    const q = new UploadQueue(`gs://${BUCKET}/queue2`, { storage });
    q.add(path.join(src, 'ckpt/epoch-1.pt'), 'named/first.pt');
    q.add(path.join(src, 'missing.pt'));
    const err = await q.flush().catch((e) => e);
    expect(err).toBeInstanceOf(st.UploadError);
    expect(err.failures.map((f: { path: string }) => path.basename(f.path))).toEqual(['missing.pt']);
    expect((await remoteBytes('queue2/named/first.pt')).equals(files.get('ckpt/epoch-1.pt')!)).toBe(true);
    q.add(path.join(src, 'ckpt/epoch-2.pt'));
    const ok = await q.close();
    expect(ok.map((f) => f.uri)).toEqual([`gs://${BUCKET}/queue2/epoch-2.pt`]);
    await expect(q.add(path.join(src, 'ckpt/epoch-2.pt'))).rejects.toThrow(/closed/);
  });
});
