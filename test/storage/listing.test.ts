// Partitioned listing on a real GCS JSON-API server (the Firebase Storage
// emulator) and on local disk, compared with what Spark 3.5's rules give for
// the fixture, computed here from how the fixture was generated.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import { startGcsEmulator, storage as st, type GcsEmulator } from '../../lib';
import { seededRandom, startFaultProxy } from './fault-proxy';
import { seedObjects, tmpDir } from './helpers';
import { PYTHON } from '../support/peer';

const BUCKET = 'listing-bkt';
const DATES = ['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04', '2024-01-05'];

interface FixtureObject {
  name: string;
  data: Buffer;
  /** What Spark reads for it: undefined = not a row. */
  expect?: { year: string; label: number | null };
}

// 5,200 partitioned files plus hidden, empty, temporary and odd entries.
function fixture(): FixtureObject[] {
  const rand = seededRandom(7);
  const objs: FixtureObject[] = [];
  const body = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  for (const year of DATES) {
    for (let label = 0; label < 20; label++) {
      for (let i = 0; i < 52; i++) {
        objs.push({ name: `ds/year=${year}/label=${label}/f${String(i).padStart(3, '0')}.jpg`, data: body(1 + Math.floor(rand() * 3000)), expect: { year, label } });
      }
    }
  }
  const add = (name: string, size: number, e?: FixtureObject['expect']) => objs.push({ name, data: body(size), expect: e });
  add('ds/_SUCCESS', 0);
  add('ds/.DS_Store', 10);
  add('ds/_metadata', 100); // not hidden, but outside any partition folder: not read
  add('ds/_temporary/0/part.jpg', 50);
  add('ds/year=2024-01-01/label=3/.hidden.jpg', 40);
  add('ds/year=2024-01-01/label=3/_skip/inner.jpg', 40);
  add('ds/year=2024-01-01/label=3/f999.jpg._COPYING_', 40);
  add('ds/year=2024-01-02/label=5/empty.jpg', 0);
  add('ds/year=2024-01-03/label=7/extra/deep.jpg', 77, { year: '2024-01-03', label: 7 });
  add('ds/year=2024-01-04/label=__HIVE_DEFAULT_PARTITION__/n.jpg', 33, { year: '2024-01-04', label: null });
  add('ds/year=2024-01-05/', 0); // a folder placeholder object
  add('other/unrelated.jpg', 10);
  return objs;
}

// Spark's hidden-name rule restated for the expectation side.
const hiddenSeg = (s: string) =>
  (s.startsWith('.') || (s.startsWith('_') && !s.includes('=')) || s.endsWith('._COPYING_')) &&
  !s.startsWith('_metadata') &&
  !s.startsWith('_common_metadata');

let emu: GcsEmulator;
let storage: Storage;
let objects: FixtureObject[];
let localRoot: string;

beforeAll(async () => {
  emu = await startGcsEmulator();
  storage = st.createStorage({ emulatorHost: emu.url });
  objects = fixture();
  await seedObjects(storage, BUCKET, objects);
  // The same tree on local disk.
  localRoot = tmpDir('listing');
  for (const o of objects) {
    if (o.name.endsWith('/')) continue;
    const p = path.join(localRoot, o.name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, o.data);
  }
}, 180_000);

afterAll(async () => {
  await emu?.stop();
  if (localRoot) fs.rmSync(localRoot, { recursive: true, force: true });
});

describe('partitioned listing of 5,000+ objects', () => {
  const expectedRows = () =>
    objects
      .filter((o) => o.name.startsWith('ds/') && o.expect && o.data.length > 0)
      .filter((o) => !o.name.slice(3).split('/').some(hiddenSeg))
      .sort((a, b) => (a.name < b.name ? -1 : 1));

  it('lists exactly the files Spark reads, with typed partition columns', async () => {
    const want = expectedRows();
    expect(want.length).toBeGreaterThan(5000);
    const got = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4 });
    expect(got.partitionColumns).toEqual([
      { name: 'year', type: 'date' },
      { name: 'label', type: 'int' },
    ]);
    expect(got.files.map((f) => f.path)).toEqual(want.map((o) => `gs://${BUCKET}/${o.name}`));
    expect(got.files.map((f) => f.length)).toEqual(want.map((o) => o.data.length));
    expect(got.files.map((f) => f.partitionValues)).toEqual(want.map((o) => o.expect));
    for (const f of got.files) expect(f.modificationTime).toBeInstanceOf(Date);
    // Discovery went folder by folder (root, 5 years, 100 labels, the extra folder, the null label).
    expect(got.stats.listRequests).toBeGreaterThanOrEqual(106);
  });

  it('packs them as FilePartition does, and every rank gets a disjoint share', async () => {
    const want = expectedRows();
    for (const cfg of [
      { minPartitionNum: 4 },
      { minPartitionNum: 2, openCostInBytes: 1000, maxPartitionBytes: 50_000 },
      { minPartitionNum: 8, openCostInBytes: 0, maxPartitionNum: 7 },
    ]) {
      const got = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, ...cfg });
      // Spark's formulas, restated over the expected rows (in path order).
      const open = cfg.openCostInBytes ?? 4 * 1024 * 1024;
      const maxBytes = cfg.maxPartitionBytes ?? 128 * 1024 * 1024;
      const total = want.reduce((s, o) => s + o.data.length + open, 0);
      const split = Math.min(maxBytes, Math.max(open, Math.floor(total / cfg.minPartitionNum)));
      expect(got.maxSplitBytes).toBe(split);
      const order = want.map((o, i) => ({ o, i })).sort((a, b) => b.o.data.length - a.o.data.length || a.i - b.i);
      const pack = (limit: number) => {
        const parts: string[][] = [];
        let cur: string[] = [];
        let size = 0;
        for (const { o } of order) {
          if (size + o.data.length > limit) {
            if (cur.length) parts.push(cur);
            cur = [];
            size = 0;
          }
          size += o.data.length + open;
          cur.push(`gs://${BUCKET}/${o.name}`);
        }
        if (cur.length) parts.push(cur);
        return parts;
      };
      let parts = pack(split);
      if (cfg.maxPartitionNum && parts.length > cfg.maxPartitionNum) parts = pack(Math.ceil(total / cfg.maxPartitionNum));
      expect(got.partitions.map((p) => p.files.map((f) => f.path))).toEqual(parts);
      expect(got.partitions.map((p) => p.index)).toEqual(parts.map((_, i) => i));

      const world = 3;
      const shares = [0, 1, 2].map((r) => got.forRank(r, world).flatMap((p) => p.files.map((f) => f.path)));
      expect(shares.flat().sort()).toEqual(want.map((o) => `gs://${BUCKET}/${o.name}`).sort());
      expect(new Set(shares.flat()).size).toBe(want.length);
    }
  });

  it('gives the same result with small pages (pagination) and with serial discovery', async () => {
    const a = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4 });
    const b = await st.listPartitioned(`gs://${BUCKET}/ds/`, { storage, minPartitionNum: 4, pageSize: 7, concurrency: 3 });
    const c = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4, parallelDiscoveryThreshold: 32 });
    expect(b.stats.listRequests).toBeGreaterThan(800);
    for (const x of [b, c]) {
      expect(x.files.map((f) => [f.path, f.length, f.partitionValues])).toEqual(a.files.map((f) => [f.path, f.length, f.partitionValues]));
      expect(x.partitions.map((p) => p.files.map((f) => f.path))).toEqual(a.partitions.map((p) => p.files.map((f) => f.path)));
    }
  });

  it('survives resets, truncated bodies and 503s on list calls with the same result', async () => {
    const proxy = await startFaultProxy(emu.url, 3);
    try {
      const via = st.createStorage({ emulatorHost: proxy.url });
      proxy.setFaults({ reset: 0.1, truncate: 0.1, status503: 0.1 });
      const a = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4 });
      const b = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage: via, minPartitionNum: 4 });
      expect(proxy.counts.reset + proxy.counts.truncate + proxy.counts.status503).toBeGreaterThan(10);
      expect(b.files.map((f) => f.path)).toEqual(a.files.map((f) => f.path));
    } finally {
      await proxy.close();
    }
  });

  it('a flat paged listing sees every object (hidden ones too) across pages', async () => {
    const flat = await st.listFlat(`gs://${BUCKET}/ds`, { storage, pageSize: 500 });
    expect(flat.map((o) => o.name).sort()).toEqual(
      objects
        .filter((o) => o.name.startsWith('ds/'))
        .map((o) => o.name)
        .sort(),
    );
  });

  it('listAll (download\'s listing) finds every object, hidden ones too, with concurrent discovery', async () => {
    const all = await st.listAll(`gs://${BUCKET}/ds`, { storage, pageSize: 50 });
    expect(all.map((o) => o.name)).toEqual(
      objects
        .filter((o) => o.name.startsWith('ds/'))
        .map((o) => o.name)
        .sort(),
    );
  });

  it('lists the same tree on local disk identically', async () => {
    const g = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4 });
    const l = await st.listPartitioned(path.join(localRoot, 'ds'), { minPartitionNum: 4 });
    expect(l.partitionColumns).toEqual(g.partitionColumns);
    expect(l.files.map((f) => [f.object.relPath, f.length, f.partitionValues])).toEqual(
      g.files.map((f) => [f.object.relPath, f.length, f.partitionValues]),
    );
    expect(l.files[0].path.startsWith('file:///')).toBe(true);
  });

  it('recursiveFileLookup reads every visible non-empty file and infers no columns', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, recursiveFileLookup: true, minPartitionNum: 4 });
    expect(got.partitionColumns).toEqual([]);
    const want = objects
      .filter((o) => o.name.startsWith('ds/') && o.data.length > 0 && !o.name.endsWith('/'))
      .filter((o) => !o.name.slice(3).split('/').some(hiddenSeg))
      .map((o) => `gs://${BUCKET}/${o.name}`)
      .sort();
    // _metadata is visible and, without partitioning, read.
    expect(want).toContain(`gs://${BUCKET}/ds/_metadata`);
    expect(got.files.map((f) => f.path)).toEqual(want);
  });

  it('pathGlobFilter matches file names only', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, pathGlobFilter: 'f00[0-4].jpg', minPartitionNum: 4 });
    expect(got.files.length).toBe(5 * 20 * 5);
    expect(got.files.every((f) => /\/f00[0-4]\.jpg$/.test(f.path))).toBe(true);
  });

  it('refuses a conflicting layout with Spark\'s error', async () => {
    await seedObjects(storage, BUCKET, [
      { name: 'bad/a=1/x.jpg', data: Buffer.from('x') },
      { name: 'bad/plain/y.jpg', data: Buffer.from('y') },
    ]);
    await expect(st.listPartitioned(`gs://${BUCKET}/bad`, { storage })).rejects.toThrow(/Conflicting directory structures/);
  });

  it('a location naming one object reads that file, like Spark', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/ds/year=2024-01-01/label=0/f000.jpg`, { storage });
    expect(got.files.map((f) => f.path)).toEqual([`gs://${BUCKET}/ds/year=2024-01-01/label=0/f000.jpg`]);
    expect(got.partitionColumns).toEqual([]);
    const local = await st.listPartitioned(path.join(localRoot, 'ds/year=2024-01-01/label=0/f000.jpg'));
    expect(local.files.map((f) => f.length)).toEqual(got.files.map((f) => f.length));
    expect((await st.listPartitioned(`gs://${BUCKET}/ds/nothing-here`, { storage })).files).toEqual([]);
  });

  it('a missing local root is a clear error', async () => {
    await expect(st.listPartitioned('/nonexistent/torchline/x')).rejects.toThrow(/Path does not exist/);
  });
});

describe('image schema rows from headers', () => {
  let imgDir: string;
  let peer: Record<string, { width?: number; height?: number; mode?: string; format?: string; transparency?: boolean; error?: string }>;

  // Spark's channels (ImageIO's colour model: grey -> 1, alpha -> 4, else 3), from what PIL reads.
  const sparkChannels = (name: string): number => {
    const p = peer[name];
    if (p.error || p.format === 'WEBP' || p.mode === 'CMYK') return -1;
    if (['L', 'LA', 'I', 'I;16', '1'].includes(p.mode!)) return 1;
    if (p.mode === 'RGBA' || p.transparency) return 4;
    return 3;
  };

  beforeAll(async () => {
    imgDir = tmpDir('images');
    peer = JSON.parse(execFileSync(PYTHON, [path.join(__dirname, 'make_images.py'), imgDir], { encoding: 'utf8' }));
    await seedObjects(
      storage,
      BUCKET,
      fs.readdirSync(imgDir).map((n) => ({ name: `img/${n}`, data: fs.readFileSync(path.join(imgDir, n)) })),
    );
  });
  afterAll(() => imgDir && fs.rmSync(imgDir, { recursive: true, force: true }));

  it('matches the peer\'s sizes and Spark\'s channel/mode rules, on GCS and locally', async () => {
    for (const root of [`gs://${BUCKET}/img`, imgDir]) {
      const got = await st.listPartitioned(root, { storage, image: true });
      const names = Object.keys(peer).sort();
      expect(got.files.map((f) => path.basename(f.path))).toEqual(names);
      for (const f of got.files) {
        const name = path.basename(f.path);
        const ch = sparkChannels(name);
        const mode = { [-1]: -1, 1: 0, 3: 16, 4: 24 }[ch];
        expect(f.image, name).toEqual({
          origin: f.path,
          height: ch < 0 ? -1 : peer[name].height,
          width: ch < 0 ? -1 : peer[name].width,
          nChannels: ch,
          mode,
        });
      }
    }
  });

  it('dropInvalid drops what Spark could not decode', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/img`, { storage, image: { dropInvalid: true } });
    const valid = Object.keys(peer).filter((n) => sparkChannels(n) > 0).sort();
    expect(got.files.map((f) => path.basename(f.path))).toEqual(valid);
    expect(valid).not.toContain('cmyk.jpg');
    expect(valid).toContain('big-icc.jpg');
  });
});
