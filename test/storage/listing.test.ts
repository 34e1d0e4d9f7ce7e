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
        objs.push({
          name: `ds/year=${year}/label=${label}/f${String(i).padStart(3, '0')}.jpg`,
          data: body(1 + Math.floor(rand() * 3000)),
          expect: { year, label },
        });
      }
    }
  }
  const add = (name: string, size: number, e?: FixtureObject['expect']) =>
    objs.push({ name, data: body(size), expect: e });
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
      if (cfg.maxPartitionNum && parts.length > cfg.maxPartitionNum)
        parts = pack(Math.ceil(total / cfg.maxPartitionNum));
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
    const b = await st.listPartitioned(`gs://${BUCKET}/ds/`, {
      storage,
      minPartitionNum: 4,
      pageSize: 7,
      concurrency: 3,
    });
    const c = await st.listPartitioned(`gs://${BUCKET}/ds`, {
      storage,
      minPartitionNum: 4,
      parallelDiscoveryThreshold: 32,
    });
    expect(b.stats.listRequests).toBeGreaterThan(800);
    for (const x of [b, c]) {
      expect(x.files.map((f) => [f.path, f.length, f.partitionValues])).toEqual(
        a.files.map((f) => [f.path, f.length, f.partitionValues]),
      );
      expect(x.partitions.map((p) => p.files.map((f) => f.path))).toEqual(
        a.partitions.map((p) => p.files.map((f) => f.path)),
      );
    }
  });

  it('lists contiguous folder ranges flat where the server honours startOffset/endOffset: same rows, a few requests', async () => {
    // The emulator ignores the offsets (probed: discovery falls back to a
    // folder-by-folder walk); bench/storage-list-server.mjs implements
    // objects.list as documented, offsets included.
    const { startListServer } = await import('../../bench/storage-list-server.mjs');
    const srv = await startListServer(
      objects.map((o) => ({ name: o.name, size: o.data.length })),
      { bucket: BUCKET },
    );
    try {
      const via = st.createStorage({ emulatorHost: srv.url });
      const a = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 4 });
      const b = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage: via, minPartitionNum: 4 });
      expect(b.files.map((f) => [f.path, f.length, f.partitionValues])).toEqual(
        a.files.map((f) => [f.path, f.length, f.partitionValues]),
      );
      expect(b.partitionColumns).toEqual(a.partitionColumns);
      expect(srv.state.withOffsets).toBeGreaterThan(1);
      expect(a.stats.listRequests).toBeGreaterThanOrEqual(106);
      // The root, then 5 year ranges of ~1,040 objects: 2 pages each.
      expect(b.stats.listRequests).toBeLessThanOrEqual(11);
      const small = await st.listPartitioned(`gs://${BUCKET}/ds`, {
        storage: via,
        minPartitionNum: 4,
        pageSize: 7,
        concurrency: 2,
      });
      expect(small.files.map((f) => f.path)).toEqual(a.files.map((f) => f.path));
      const allA = await st.listAll(`gs://${BUCKET}/ds`, { storage });
      const allB = await st.listAll(`gs://${BUCKET}/ds`, { storage: via, pageSize: 50 });
      expect(allB.map((o) => o.name)).toEqual(allA.map((o) => o.name));
    } finally {
      await srv.close();
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

  it("listAll (download's listing) finds every object, hidden ones too, with concurrent discovery", async () => {
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

  it('recursiveFileLookup reads every visible non-empty data file and infers no columns', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/ds`, {
      storage,
      recursiveFileLookup: true,
      minPartitionNum: 4,
    });
    expect(got.partitionColumns).toEqual([]);
    const want = objects
      .filter((o) => o.name.startsWith('ds/') && o.data.length > 0 && !o.name.endsWith('/'))
      .filter((o) => !o.name.slice(3).split('/').some(hiddenSeg))
      // PartitioningAwareFileIndex.listFiles keeps isDataPath files only: _metadata is listed, never read.
      .filter((o) => !/(^|\/)_[^=/]*$/.test(o.name))
      .map((o) => `gs://${BUCKET}/${o.name}`)
      .sort();
    expect(want).not.toContain(`gs://${BUCKET}/ds/_metadata`);
    expect(got.files.map((f) => f.path)).toEqual(want);
  });

  it('pathGlobFilter matches file names only', async () => {
    const got = await st.listPartitioned(`gs://${BUCKET}/ds`, {
      storage,
      pathGlobFilter: 'f00[0-4].jpg',
      minPartitionNum: 4,
    });
    expect(got.files.length).toBe(5 * 20 * 5);
    expect(got.files.every((f) => /\/f00[0-4]\.jpg$/.test(f.path))).toBe(true);
  });

  it("refuses a conflicting layout with Spark's error", async () => {
    await seedObjects(storage, BUCKET, [
      { name: 'bad/a=1/x.jpg', data: Buffer.from('x') },
      { name: 'bad/plain/y.jpg', data: Buffer.from('y') },
    ]);
    await expect(st.listPartitioned(`gs://${BUCKET}/bad`, { storage })).rejects.toThrow(
      /Conflicting directory structures/,
    );
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
  let peer: Record<
    string,
    { width?: number; height?: number; mode?: string; format?: string; transparency?: boolean; error?: string }
  >;

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

  it("matches the peer's sizes and Spark's channel/mode rules, on GCS and locally", async () => {
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

  it('dropInvalid drops what Spark could not decode, at read time: the plan counted them', async () => {
    const cfg = { storage, minPartitionNum: 3, openCostInBytes: 1000, maxPartitionBytes: 200_000 };
    const got = await st.listPartitioned(`gs://${BUCKET}/img`, { ...cfg, image: { dropInvalid: true } });
    const valid = Object.keys(peer)
      .filter((n) => sparkChannels(n) > 0)
      .sort();
    expect(got.files.map((f) => path.basename(f.path))).toEqual(valid);
    // The image source drops invalid rows while reading each partition
    // (ImageFileFormat.buildReader), after FilePartition packed every file:
    // the same partitions as without dropInvalid, less the invalid files.
    const all = await st.listPartitioned(`gs://${BUCKET}/img`, { ...cfg, image: true });
    expect(got.maxSplitBytes).toBe(all.maxSplitBytes);
    expect(got.partitions.map((p) => p.files.map((f) => f.path))).toEqual(
      all.partitions.map((p) => p.files.filter((f) => f.image!.height >= 0).map((f) => f.path)),
    );
    expect(valid).not.toContain('cmyk.jpg');
    expect(valid).toContain('big-icc.jpg');
  });
});

// Spark 3.5's file index, restated from the source and cited per case
// (sql/core/.../execution/datasources/PartitioningAwareFileIndex.scala,
// PartitioningUtils.scala, HadoopFSUtils.scala): each fixture's expected rows
// follow from those rules, not from running this implementation.
describe('Spark 3.5 file index rules', () => {
  const put = (names: string[]) =>
    seedObjects(
      storage,
      BUCKET,
      names.map((name) => ({ name, data: Buffer.from(`bytes of ${name}`) })),
    );
  const rel = (l: { files: { object: { relPath: string } }[] }) => l.files.map((f) => f.object.relPath);
  const both = async (prefix: string, opts: Parameters<typeof st.listPartitioned>[1] = {}) => {
    const local = tmpDir('rules');
    for (const o of (await st.listAll(`gs://${BUCKET}/${prefix}`, { storage })).filter((x) => !x.name.endsWith('/'))) {
      const p = path.join(local, o.relPath);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, `bytes of ${o.name}`);
    }
    try {
      const g = await st.listPartitioned(`gs://${BUCKET}/${prefix}`, { storage, minPartitionNum: 1, ...opts });
      const l = await st.listPartitioned(local, { minPartitionNum: 1, ...opts });
      expect(rel(l)).toEqual(rel(g));
      expect(l.partitionColumns).toEqual(g.partitionColumns);
      return g;
    } finally {
      fs.rmSync(local, { recursive: true, force: true });
    }
  };

  it("without partition columns or recursiveFileLookup, only the root's direct children are read (allFiles)", async () => {
    // allFiles(): partitionColumns.isEmpty && !recursiveFileLookup -> leafDirToChildrenFiles(rootPath) only.
    await put(['imgfolder/cat/1.jpg', 'imgfolder/cat/2.jpg', 'imgfolder/dog/3.jpg', 'imgfolder/readme.txt']);
    expect(rel(await both('imgfolder'))).toEqual(['readme.txt']);
    // An ImageFolder tree with nothing at its root gives 0 rows in Spark.
    await put(['imgfolder2/cat/1.jpg', 'imgfolder2/dog/2.jpg']);
    expect(rel(await both('imgfolder2'))).toEqual([]);
    expect(rel(await both('imgfolder2', { recursiveFileLookup: true }))).toEqual(['cat/1.jpg', 'dog/2.jpg']);
  });

  it('_metadata files are not rows, and a leaf folder holding only them takes no part in partition inference', async () => {
    // isDataPath (SPARK-15895) filters inferPartitioning's leaf dirs and listFiles' rows.
    await put([
      'meta/a=1/x.jpg',
      'meta/a=1/_metadata',
      'meta/a=2/y.jpg',
      'meta/summary/_common_metadata',
      'meta/_metadata',
    ]);
    const got = await both('meta');
    expect(got.partitionColumns).toEqual([{ name: 'a', type: 'int' }]);
    expect(rel(got)).toEqual(['a=1/x.jpg', 'a=2/y.jpg']);
  });

  it('pathGlobFilter applies after partition inference (matchPathPattern in listFiles/allFiles)', async () => {
    // The .txt folder still takes part in type inference: int and string widen to string.
    await put(['globx/x=1/a.jpg', 'globx/x=abc/b.txt']);
    const got = await both('globx', { pathGlobFilter: '*.jpg' });
    expect(got.partitionColumns).toEqual([{ name: 'x', type: 'string' }]);
    expect(got.files.map((f) => [f.object.relPath, f.partitionValues])).toEqual([['x=1/a.jpg', { x: '1' }]]);
    // ... and in the conflicting-layout check.
    await put(['globy/a=1/a.jpg', 'globy/plain/b.txt']);
    await expect(st.listPartitioned(`gs://${BUCKET}/globy`, { storage, pathGlobFilter: '*.jpg' })).rejects.toThrow(
      /Conflicting directory structures/,
    );
  });

  it('basePath: partition discovery stops at the base, not at the root (PartitioningAwareFileIndex.basePaths)', async () => {
    const root = `gs://${BUCKET}/ds/year=2024-01-02`;
    const plain = await st.listPartitioned(root, { storage, minPartitionNum: 1 });
    expect(plain.partitionColumns).toEqual([{ name: 'label', type: 'int' }]);
    const based = await st.listPartitioned(root, { storage, minPartitionNum: 1, basePath: `gs://${BUCKET}/ds` });
    expect(based.partitionColumns).toEqual([
      { name: 'year', type: 'date' },
      { name: 'label', type: 'int' },
    ]);
    expect(based.files.map((f) => f.path)).toEqual(plain.files.map((f) => f.path));
    expect(based.files.every((f) => f.partitionValues.year === '2024-01-02')).toBe(true);
    const local = await st.listPartitioned(path.join(localRoot, 'ds/year=2024-01-02'), {
      minPartitionNum: 1,
      basePath: path.join(localRoot, 'ds'),
    });
    expect(local.files.map((f) => [f.object.relPath, f.partitionValues])).toEqual(
      based.files.map((f) => [f.object.relPath, f.partitionValues]),
    );
    await expect(st.listPartitioned(root, { storage, basePath: `gs://${BUCKET}/other` })).rejects.toThrow(
      /Wrong basePath/,
    );
  });

  it('every rank computes the same plan: a host-dependent minPartitionNum is refused for worldSize > 1', async () => {
    const host = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage });
    expect(host.forRank(0, 1).length).toBe(host.partitions.length);
    expect(() => host.forRank(0, 2)).toThrow(/minPartitionNum defaulted to this host's/);
    const w = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, worldSize: 2 });
    const m = await st.listPartitioned(`gs://${BUCKET}/ds`, { storage, minPartitionNum: 2 });
    expect(w.partitions.map((p) => p.files.map((f) => f.path))).toEqual(
      m.partitions.map((p) => p.files.map((f) => f.path)),
    );
    expect(w.forRank(1, 2).map((p) => p.index)).toEqual(m.forRank(1, 2).map((p) => p.index));
    expect(() => w.forRank(0, 3)).toThrow(/worldSize 2/);
  });
});
