// Pretrained weights through the torch hub cache, without the internet: a
// local HTTP server serves a real torchvision state dict (written by the
// Python peer) under an official-shaped file name carrying its real SHA-256
// prefix; the entry under test is the table's own, pointed at that server
// with `with({ url })`. TORCH_HOME is a fresh temp folder in every test, so
// the real ~/.cache/torch is never read or written.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Storage } from '@google-cloud/storage';
import {
  ResNet18_Weights,
  WeightsError,
  hub,
  load,
  resnet18,
  startGcsEmulator,
  storage as st,
  type GcsEmulator,
  type WeightsEntry,
} from '../../lib';
import { PYTHON, runPython, tempDir } from '../support/peer';
import { seedObjects } from '../storage/helpers';
import { startFileServer, type FileServer } from './server';

const PEER = path.join(__dirname, 'peer_weights.py');
const DIST = path.resolve(__dirname, '../../dist');

let root: string;
let src: string; // the peer's state dict
let sha: string;
let fileName: string; // resnet18-<sha[:8]>.pth
let server: FileServer;
let torchHome: string;
const savedEnv = { TORCH_HOME: process.env.TORCH_HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };

beforeAll(async () => {
  root = tempDir('weights');
  src = path.join(root, 'peer-resnet18.pth');
  sha = runPython(PEER, ['write', '18', src, '0']).trim();
  expect(sha).toMatch(/^[0-9a-f]{64}$/);
  fileName = `resnet18-${sha.slice(0, 8)}.pth`;
  server = await startFileServer();
  server.routes.set(`/models/${fileName}`, { file: src });
  server.routes.set(`/mirror/${fileName}`, { file: src });
  server.routes.set(`/bad/${fileName}`, { file: src, corrupt: true });
  server.routes.set(`/flaky/${fileName}`, { file: src, cutOnceAfter: 5_000_000 });
  server.routes.set(`/slow/${fileName}`, { file: src, delayPerMiB: 40 });
}, 120_000);

afterAll(async () => {
  await server?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

beforeEach(() => {
  torchHome = fs.mkdtempSync(path.join(root, 'torch-home-'));
  process.env.TORCH_HOME = torchHome;
  // The real home cache is never the target.
  expect(hub.checkpointsDir()).toBe(path.join(torchHome, 'hub', 'checkpoints'));
});

afterEach(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

const served = (dir: string): WeightsEntry =>
  ResNet18_Weights.IMAGENET1K_V1.with({ url: `${server.url}/${dir}/${fileName}` });
const cacheFiles = () => (fs.existsSync(hub.checkpointsDir()) ? fs.readdirSync(hub.checkpointsDir()).sort() : []);

function sameWeights(model: { stateDict(): Map<string, { toArray(): unknown }> }, file: string): void {
  const ref = load(file) as Map<string, { toArray(): unknown }>;
  const sd = model.stateDict();
  expect([...sd.keys()]).toEqual([...ref.keys()]);
  for (const k of ['conv1.weight', 'layer4.1.bn2.running_var', 'fc.bias'])
    expect(sd.get(k)!.toArray()).toEqual(ref.get(k)!.toArray());
}

describe('download into the hub cache', () => {
  it('downloads once into $TORCH_HOME/hub/checkpoints, verified, and loads into resnet18', async () => {
    const entry = served('models');
    expect(entry.hashPrefix).toBe(sha.slice(0, 8));
    const seen: number[] = [];
    const model = await resnet18({ weights: entry, progress: (p) => seen.push(p.bytes) });
    expect(cacheFiles()).toEqual([fileName]); // no temp file, no lock left
    expect(fs.readFileSync(entry.cachePath()).equals(fs.readFileSync(src))).toBe(true);
    expect(server.gets.get(`/models/${fileName}`)).toBe(1);
    expect(seen.at(-1)).toBe(fs.statSync(src).size);
    expect(model.numClasses).toBe(1000);
    sameWeights(model, src);
  });

  it('reuses the cached file: no request the second time', async () => {
    const entry = served('mirror');
    await entry.fetch({ progress: false });
    const before = server.gets.get(`/mirror/${fileName}`);
    const model = await resnet18({ weights: entry, progress: false });
    expect(server.gets.get(`/mirror/${fileName}`)).toBe(before);
    sameWeights(model, src);
  });

  it('uses a file that torch.hub (Python) downloaded, with TORCH_HOME unset and XDG_CACHE_HOME set', async () => {
    delete process.env.TORCH_HOME;
    process.env.XDG_CACHE_HOME = torchHome;
    const url = `${server.url}/mirror/${fileName}`;
    // Asynchronously: the server answering Python runs on this event loop.
    await promisify(execFile)(
      PYTHON,
      [
        '-c',
        `import torch.hub; torch.hub.load_state_dict_from_url(${JSON.stringify(url)}, check_hash=True, progress=False)`,
      ],
      {
        env: { ...process.env },
      },
    );
    const gets = server.gets.get(`/mirror/${fileName}`);
    expect(hub.checkpointsDir()).toBe(path.join(torchHome, 'torch', 'hub', 'checkpoints'));
    const file = await served('mirror').fetch({ progress: false });
    expect(file).toBe(path.join(torchHome, 'torch', 'hub', 'checkpoints', fileName));
    expect(server.gets.get(`/mirror/${fileName}`)).toBe(gets);
  });

  it('refuses a corrupted download with a clear error and leaves nothing in the cache', async () => {
    const entry = served('bad');
    const err = await entry.fetch({ progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('EHASH');
    expect(err.message).toContain(`${server.url}/bad/${fileName}`);
    expect(err.message).toContain(`does not start with the expected ${sha.slice(0, 8)}`);
    expect(err.message).toContain('was not saved');
    expect(cacheFiles()).toEqual([]);
  });

  it('resumes with a Range request when the connection drops mid-body', async () => {
    const entry = served('flaky');
    const file = await entry.fetch({ progress: false });
    expect(server.gets.get(`/flaky/${fileName}`)).toBe(2);
    expect(server.ranges.some((r) => /^bytes=[1-9]\d*-$/.test(r))).toBe(true);
    expect(fs.readFileSync(file).equals(fs.readFileSync(src))).toBe(true);
    expect(cacheFiles()).toEqual([fileName]);
  });

  it('offline: one error naming the URL and the cache path to put the file in', async () => {
    const closed = await startFileServer();
    const url = `${closed.url}/models/${fileName}`;
    await closed.close();
    const entry = ResNet18_Weights.IMAGENET1K_V1.with({ url });
    const t0 = performance.now();
    const err = await resnet18({ weights: entry, progress: false }).catch((e) => e);
    expect(performance.now() - t0).toBeLessThan(5000); // no retry loop
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('EOFFLINE');
    expect(err.message).toContain(url);
    expect(err.message).toContain(path.join(torchHome, 'hub', 'checkpoints', fileName));
    expect(err.cachePath).toBe(path.join(torchHome, 'hub', 'checkpoints', fileName));
    expect(cacheFiles()).toEqual([]);
  });

  it('a missing file on the server is an error with the status', async () => {
    const entry = ResNet18_Weights.IMAGENET1K_V1.with({ url: `${server.url}/nowhere/${fileName}` });
    const err = await entry.fetch({ progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('ENOENT');
    expect(err.message).toContain('HTTP 404');
    expect(cacheFiles()).toEqual([]);
  });

  it('a wrong file in the cache is refused (delete it or checkHash: false), never silently used', async () => {
    const entry = served('models');
    fs.mkdirSync(hub.checkpointsDir(), { recursive: true });
    fs.writeFileSync(entry.cachePath(), fs.readFileSync(src).subarray(0, 1000));
    const err = await resnet18({ weights: entry, progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('EHASH');
    expect(err.message).toContain(entry.cachePath());
    expect(err.message).toContain('delete it');
    expect(server.gets.get(`/models/${fileName}`) ?? 0).toBeLessThanOrEqual(1);
  });
});

describe('sources', () => {
  it('an explicit path wins over the cache and the URL, and is verified', async () => {
    const entry = ResNet18_Weights.IMAGENET1K_V1.with({ url: `${server.url}/nowhere/${fileName}` });
    expect(await entry.fetch({ source: src })).toBe(src);
    // A folder holding the official file name (a team mirror on a shared disk).
    const mirror = path.join(root, 'mirror-dir');
    fs.mkdirSync(mirror, { recursive: true });
    fs.copyFileSync(src, path.join(mirror, fileName));
    expect(await entry.fetch({ source: mirror + '/' })).toBe(path.join(mirror, fileName));
    const wrong = ResNet18_Weights.IMAGENET1K_V1; // the real hash prefix: not this file
    const err = await wrong.fetch({ source: src }).catch((e) => e);
    expect(err.code).toBe('EHASH');
    expect(await wrong.fetch({ source: src, checkHash: false })).toBe(src);
    expect((await entry.fetch({ source: path.join(root, 'absent.pth') }).catch((e) => e)).code).toBe('ENOENT');
    expect(cacheFiles()).toEqual([]);
  });

  it('an http(s) mirror prefix: downloaded once into the cache under the official name', async () => {
    const entry = served('nowhere');
    const file = await entry.fetch({ source: `${server.url}/mirror/`, progress: false });
    expect(file).toBe(entry.cachePath());
    // Now cached: the (unreachable) official URL is never needed.
    const model = await resnet18({ weights: entry, progress: false });
    sameWeights(model, src);
  });

  it('concurrent processes download once (a lock file), both get the verified file', async () => {
    const url = `${server.url}/slow/${fileName}`;
    const runChild = () =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, [path.join(__dirname, 'fetch-child.cjs'), DIST, url], {
          env: { ...process.env, TORCH_HOME: torchHome },
        });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('close', (code) => resolve({ code, out, err }));
      });
    const [a, b] = await Promise.all([runChild(), runChild()]);
    expect({ a: a.code, b: b.code, errs: a.err + b.err }).toMatchObject({ a: 0, b: 0 });
    const want = path.join(torchHome, 'hub', 'checkpoints', fileName);
    expect([a.out.trim(), b.out.trim()]).toEqual([want, want]);
    expect(server.gets.get(`/slow/${fileName}`)).toBe(1);
    expect(a.err + b.err).toMatch(/waiting for process \d+ on .* to download/);
    expect(cacheFiles()).toEqual([fileName]);
    expect(fs.readFileSync(want).equals(fs.readFileSync(src))).toBe(true);
  });

  it('a lock left by a dead process is broken', async () => {
    const entry = served('mirror');
    fs.mkdirSync(hub.checkpointsDir(), { recursive: true });
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((ok) => dead.on('close', ok));
    fs.writeFileSync(
      `${entry.cachePath()}.lock`,
      JSON.stringify({ pid: dead.pid, host: os.hostname(), since: Date.now() }),
    );
    fs.writeFileSync(path.join(hub.checkpointsDir(), `.${fileName}.tmp-${dead.pid}-abc`), 'partial');
    const file = await entry.fetch({ progress: false });
    expect(file).toBe(entry.cachePath());
    expect(cacheFiles()).toEqual([fileName]);
  });
});

describe('gs:// source through the storage module (GCS emulator)', () => {
  let emu: GcsEmulator;
  let storage: Storage;
  const BUCKET = 'team-weights';
  beforeAll(async () => {
    emu = await startGcsEmulator();
    storage = st.createStorage({ emulatorHost: emu.url });
    const data = fs.readFileSync(src);
    const bad = Buffer.from(data);
    bad[bad.length >> 1] ^= 0xff;
    await seedObjects(storage, BUCKET, [
      { name: `mirror/${fileName}`, data },
      { name: `tampered/${fileName}`, data: bad },
    ]);
  });
  afterAll(async () => {
    await emu?.stop();
  });

  it('downloads a team mirror object into the cache, verified', async () => {
    const entry = served('nowhere');
    const file = await entry.fetch({ source: `gs://${BUCKET}/mirror/`, storage, progress: false });
    expect(file).toBe(entry.cachePath());
    expect(cacheFiles()).toEqual([fileName]);
    expect(fs.readFileSync(file).equals(fs.readFileSync(src))).toBe(true);
    const model = await resnet18({
      weights: entry,
      source: `gs://${BUCKET}/mirror/${fileName}`,
      storage,
      progress: false,
    });
    sameWeights(model, src);
  });

  it('refuses an object with the wrong content, and a missing one, leaving the cache empty', async () => {
    const entry = served('nowhere');
    const err = await entry
      .fetch({ source: `gs://${BUCKET}/tampered/${fileName}`, storage, progress: false })
      .catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('EHASH');
    expect(err.message).toContain(`gs://${BUCKET}/tampered/${fileName}`);
    const missing = await entry
      .fetch({ source: `gs://${BUCKET}/absent/${fileName}`, storage, progress: false })
      .catch((e) => e);
    expect(missing).toBeInstanceOf(WeightsError);
    expect(missing.code).toBe('ENOENT');
    expect(cacheFiles()).toEqual([]);
  });
});
