// Verified parallel download against the emulator, directly and through a
// fault-injecting proxy: byte-exact files, skips, resumption, retries, and
// the invariant that a file at its final path is always complete.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import { startGcsEmulator, storage as st, type GcsEmulator } from '../../lib';
import { seededRandom, startFaultProxy, type FaultProxy } from './fault-proxy';
import { seedObjects, tmpDir, walk } from './helpers';

const BUCKET = 'dl-bkt';
let emu: GcsEmulator;
let storage: Storage;
let proxy: FaultProxy;
let viaProxy: Storage;
const dirs: string[] = [];
const mk = (tag: string) => {
  const d = tmpDir(tag);
  dirs.push(d);
  return d;
};

function makeObjects(prefix: string, n: number, seed: number, maxSize: number) {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const size = i === 0 ? 0 : 1 + Math.floor(rand() * maxSize);
    const data = Buffer.alloc(size);
    for (let k = 0; k < size; k += 4)
      data.writeUInt32LE(Math.floor(rand() * 2 ** 32), Math.min(k, Math.max(0, size - 4)));
    const sub = i % 7 === 0 ? '' : `d${i % 5}/e${i % 3}/`;
    return { name: `${prefix}/${sub}obj-${String(i).padStart(4, '0')}.bin`, data };
  });
}

/** Every file under dest (outside the partial folder) is byte-identical to its object. */
function expectOnlyExactFiles(dest: string, prefix: string, objects: { name: string; data: Buffer }[]) {
  const byRel = new Map(objects.map((o) => [o.name.slice(prefix.length + 1), o.data]));
  const files = walk(dest).filter((f) => !f.startsWith(`${st.PARTIAL_DIR}/`));
  for (const f of files) {
    const want = byRel.get(f);
    expect(want, `unexpected file ${f}`).toBeDefined();
    expect(fs.readFileSync(path.join(dest, f)).equals(want!), `${f} differs`).toBe(true);
  }
  return files.length;
}

const isMedia = (req: { url?: string }) => /alt=media/.test(req.url ?? '') || (req.url ?? '').startsWith('/download/');

beforeAll(async () => {
  emu = await startGcsEmulator();
  storage = st.createStorage({ emulatorHost: emu.url });
  proxy = await startFaultProxy(emu.url, 1234);
  viaProxy = st.createStorage({ emulatorHost: proxy.url });
});

afterAll(async () => {
  await proxy?.close();
  await emu?.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('download', () => {
  it('downloads byte-exact, then skips what is present and verified', async () => {
    const objs = makeObjects('plain', 300, 1, 40_000);
    await seedObjects(storage, BUCKET, objs);
    const dest = mk('dl');
    const seen: number[] = [];
    const r = await st.download(`gs://${BUCKET}/plain`, dest, { storage, progress: (p) => seen.push(p.files) });
    expect(r.downloaded).toBe(300);
    expect(r.skipped).toBe(0);
    expect(r.bytes).toBe(objs.reduce((s, o) => s + o.data.length, 0));
    expect(expectOnlyExactFiles(dest, 'plain', objs)).toBe(300);
    expect(fs.existsSync(path.join(dest, st.PARTIAL_DIR))).toBe(false);
    expect(seen.at(-1)).toBe(300);

    // Corrupt one local file (same size) and delete another: only those two are fetched again.
    const victim = path.join(dest, objs[5].name.slice('plain/'.length));
    const bytes = fs.readFileSync(victim);
    bytes[0] ^= 0xff;
    fs.writeFileSync(victim, bytes);
    fs.rmSync(path.join(dest, objs[6].name.slice('plain/'.length)));
    const again = await st.download(`gs://${BUCKET}/plain`, dest, { storage, progress: false });
    expect(again.downloaded).toBe(2);
    expect(again.skipped).toBe(298);
    expect(expectOnlyExactFiles(dest, 'plain', objs)).toBe(300);
  });

  it('downloads a chosen subset (one rank of a partitioned listing)', async () => {
    const listing = await st.listPartitioned(`gs://${BUCKET}/plain`, {
      storage,
      minPartitionNum: 2,
      openCostInBytes: 1000,
      maxPartitionBytes: 100_000,
    });
    const mine = listing.forRank(1, 2).flatMap((p) => p.files.map((f) => f.object));
    const dest = mk('rank');
    const r = await st.download(`gs://${BUCKET}/plain`, dest, { storage, objects: mine, progress: false });
    expect(r.downloaded).toBe(mine.length);
    expect(walk(dest).sort()).toEqual(mine.map((o) => o.relPath).sort());
  });

  it('resumes an interrupted transfer from its partial file', async () => {
    const big = { name: 'big/large.bin', data: Buffer.alloc(6 * 1024 * 1024) };
    const rand = seededRandom(9);
    for (let i = 0; i < big.data.length; i += 4) big.data.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
    await seedObjects(storage, BUCKET, [big]);
    const dest = mk('resume');
    proxy.setFaults({ bandwidth: 8 * 1024 * 1024 });
    const ac = new AbortController();
    const partialDir = path.join(dest, st.PARTIAL_DIR);
    const poll = setInterval(() => {
      const f = fs.existsSync(partialDir) ? fs.readdirSync(partialDir) : [];
      if (f.length && fs.statSync(path.join(partialDir, f[0])).size > 2 * 1024 * 1024)
        ac.abort(new Error('interrupted by test'));
    }, 5);
    await expect(
      st.download(`gs://${BUCKET}/big`, dest, { storage: viaProxy, signal: ac.signal, progress: false }),
    ).rejects.toThrow(/interrupted by test/);
    clearInterval(poll);
    proxy.setFaults({});
    // Nothing at the final path; the partial is kept.
    expect(fs.existsSync(path.join(dest, 'large.bin'))).toBe(false);
    const kept = fs.statSync(path.join(partialDir, fs.readdirSync(partialDir)[0])).size;
    expect(kept).toBeGreaterThan(2 * 1024 * 1024);
    expect(kept).toBeLessThan(big.data.length);

    const r = await st.download(`gs://${BUCKET}/big`, dest, { storage: viaProxy, progress: false });
    expect(r.downloaded).toBe(1);
    expect(r.bytes).toBe(big.data.length - kept);
    expect(fs.readFileSync(path.join(dest, 'large.bin')).equals(big.data)).toBe(true);
  });

  it('restarts a partial file whose bytes are wrong', async () => {
    const dest = mk('badpartial');
    // A first run that is stopped at once leaves a partial folder; plant garbage in a partial.
    const objs = makeObjects('plain', 300, 1, 40_000);
    const [one] = (await st.listFlat(`gs://${BUCKET}/plain`, { storage })).filter((o) => o.size > 1000);
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(
      st.download(`gs://${BUCKET}/plain`, dest, { storage, objects: [one], signal: ac.signal }),
    ).rejects.toThrow();
    const crypto = await import('node:crypto');
    const pname =
      crypto
        .createHash('sha1')
        .update(`${one.name}\n${one.generation ?? ''}\n${one.size}`)
        .digest('hex') + '.part';
    fs.writeFileSync(path.join(dest, st.PARTIAL_DIR, pname), Buffer.alloc(500, 7));
    const r = await st.download(`gs://${BUCKET}/plain`, dest, {
      storage,
      objects: [one],
      progress: false,
      retryDelayMs: 1,
    });
    expect(r.downloaded).toBe(1);
    const want = objs.find((o) => o.name === one.name)!.data;
    expect(fs.readFileSync(path.join(dest, one.relPath)).equals(want)).toBe(true);
  });

  it('retries through resets, 503/429s, truncated bodies and stalls: 200 files, all verified', async () => {
    const objs = makeObjects('faulty', 200, 2, 60_000);
    await seedObjects(storage, BUCKET, objs);
    const dest = mk('faults');
    proxy.setFaults({ reset: 0.08, status503: 0.08, status429: 0.04, truncate: 0.08, stall: 0.03, match: isMedia });
    const before = { ...proxy.counts };
    const r = await st.download(`gs://${BUCKET}/faulty`, dest, {
      storage: viaProxy,
      concurrency: 16,
      stallTimeoutMs: 400,
      retryDelayMs: 5,
      maxRetries: 20,
      progress: false,
    });
    proxy.setFaults({});
    const injected = (k: keyof typeof before) => proxy.counts[k] - before[k];
    for (const k of ['reset', 'status503', 'status429', 'truncate', 'stall'] as const)
      expect(injected(k), k).toBeGreaterThan(0);
    expect(r.downloaded).toBe(200);
    // Every injected fault costs exactly one attempt (a cut in an empty body may go unnoticed).
    const total = (['reset', 'status503', 'status429', 'truncate', 'stall'] as const).reduce(
      (s, k) => s + injected(k),
      0,
    );
    expect(r.retries).toBeLessThanOrEqual(total);
    expect(r.retries).toBeGreaterThanOrEqual(total - 1);
    expect(expectOnlyExactFiles(dest, 'faulty', objs)).toBe(200);
    expect(fs.existsSync(path.join(dest, st.PARTIAL_DIR))).toBe(false);
  });

  it('interrupted at random points, a download leaves only complete files, then finishes', async () => {
    const objs = makeObjects('interrupt', 200, 3, 60_000);
    await seedObjects(storage, BUCKET, objs);
    const dest = mk('interrupt');
    const rand = seededRandom(99);
    // Heavy faults with no patience: some files fail, some runs are aborted midway.
    proxy.setFaults({ reset: 0.25, truncate: 0.25, status503: 0.1, match: isMedia, bandwidth: 4 * 1024 * 1024 });
    let sawFailure = false;
    for (let round = 0; round < 6; round++) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(new Error('killed')), 20 + rand() * 200);
      try {
        await st.download(`gs://${BUCKET}/interrupt`, dest, {
          storage: viaProxy,
          signal: ac.signal,
          maxRetries: 1,
          retryDelayMs: 1,
          stallTimeoutMs: 2000,
          progress: false,
        });
      } catch (e) {
        sawFailure = true;
        expect(String((e as Error).message)).toMatch(/killed|failed to download/);
      } finally {
        clearTimeout(timer);
      }
      expectOnlyExactFiles(dest, 'interrupt', objs);
    }
    expect(sawFailure).toBe(true);
    proxy.setFaults({});
    const present = walk(dest).filter((f) => !f.startsWith(st.PARTIAL_DIR)).length;
    const r = await st.download(`gs://${BUCKET}/interrupt`, dest, { storage: viaProxy, progress: false });
    expect(r.skipped).toBe(present);
    expect(r.downloaded).toBe(200 - present);
    expect(expectOnlyExactFiles(dest, 'interrupt', objs)).toBe(200);
  });

  it('refuses hostile object names before writing anything', async () => {
    const hostile = ['evil/../../escape.txt', 'evil/a\\b.txt', 'evil/\uff0e\uff0e/fw.txt'];
    await seedObjects(
      storage,
      BUCKET,
      [...hostile, 'evil/ok.txt'].map((name) => ({ name, data: Buffer.from('data') })),
    );
    const outer = mk('hostile');
    const dest = path.join(outer, 'inside');
    const err = await st.download(`gs://${BUCKET}/evil`, dest, { storage, progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(st.UnsafeObjectNameError);
    expect(err.message).toMatch(/refusing to download 3 object/);
    expect(fs.existsSync(dest)).toBe(false);
    // With 'skip', only the safe one lands, inside the destination.
    const r = await st.download(`gs://${BUCKET}/evil`, dest, { storage, onUnsafeName: 'skip', progress: false });
    expect(r.downloaded).toBe(1);
    expect(walk(outer)).toEqual(['inside/ok.txt']);
  });

  it('never writes through a symbolic link in the destination', async () => {
    await seedObjects(storage, BUCKET, [
      { name: 'linked/link/x.txt', data: Buffer.from('x') },
      { name: 'linked/fine/y.txt', data: Buffer.from('y') },
    ]);
    const outer = mk('symlink');
    const dest = path.join(outer, 'dest');
    const elsewhere = path.join(outer, 'elsewhere');
    fs.mkdirSync(dest);
    fs.mkdirSync(elsewhere);
    fs.symlinkSync(elsewhere, path.join(dest, 'link'));
    const err = await st.download(`gs://${BUCKET}/linked`, dest, { storage, progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(st.DownloadError);
    expect(err.message).toMatch(/outside the destination/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(fs.readFileSync(path.join(dest, 'fine/y.txt'), 'utf8')).toBe('y');
  });

  it.each([
    ['/etc/passwd', 'absolute path'],
    ['C:/x', undefined],
    ['a:b.jpg', undefined],
    ['a//b', 'empty path segment'],
    ['a/./b', '"." segment'],
    ['a/../b', '".." segment'],
    ['a\u0000b', 'control character'],
    ['a\nb', 'control character'],
    // Literal percent signs: Spark's escapePathName output (label=a%2Fb) is an ordinary name.
    ['x%2F..%2Fy', undefined],
    ['label=a%2Fb/x.jpg', undefined],
    ['.TORCHLINE-PARTIAL/x', 'reserved folder .torchline-partial'],
    ['\uff0e\uff0e/x', 'Unicode form that normalises to a separator or dot segment'],
    ['a\uff0fb', 'Unicode form that normalises to a separator or dot segment'],
    [`${'x'.repeat(256)}`, 'segment longer than 255 bytes'],
    ['.torchline-partial/x', 'reserved folder .torchline-partial'],
    ['ok/name with spaces é.jpg', undefined],
    ['..hidden-but-safe', undefined],
  ])('name %j -> %s', (name, reason) => expect(st.unsafeNameReason(name, 'linux')).toBe(reason));

  it.each([
    ['C:/x', 'absolute path'],
    ['a:b.jpg', 'absolute path'],
    ['x/a:b.jpg', 'colon (an NTFS stream name)'],
    ['label=a%2Fb/x.jpg', undefined],
  ])('on Windows, name %j -> %s', (name, reason) => expect(st.unsafeNameReason(name, 'win32')).toBe(reason));

  it.each([
    [['Cat.jpg', 'cat.jpg'], [['Cat.jpg', 'cat.jpg']]],
    [['caf\u00e9.jpg', 'cafe\u0301.jpg'], [['caf\u00e9.jpg', 'cafe\u0301.jpg']]],
    [['A/x.jpg', 'a/y.jpg'], []],
    [['a', 'a/b'], [['a', 'a/b']]],
    [['d/A', 'd/a/b/c'], [['d/A', 'd/a/b/c']]],
    [['a.jpg', 'a/b', 'ab'], []],
  ])('name collisions in %j', (names, pairs) =>
    expect(st.findNameCollisions(names).map((c) => [c.a, c.b])).toEqual(pairs),
  );

  it('refuses colliding names (case, NFC, a file beside a folder) before writing, naming both', async () => {
    const sets = {
      case: ['coll-case/Cat.jpg', 'coll-case/cat.jpg', 'coll-case/ok.jpg'],
      nfc: ['coll-nfc/caf\u00e9.jpg', 'coll-nfc/cafe\u0301.jpg', 'coll-nfc/ok.jpg'],
      nest: ['coll-nest/a', 'coll-nest/a/b.jpg', 'coll-nest/ok.jpg'],
    };
    await seedObjects(
      storage,
      BUCKET,
      Object.values(sets)
        .flat()
        .map((name) => ({ name, data: Buffer.from(name) })),
    );
    for (const [prefix, [a, b]] of Object.entries(sets).map(([k, v]) => [`coll-${k}`, v] as const)) {
      const dest = path.join(mk('coll'), 'out');
      const err = await st.download(`gs://${BUCKET}/${prefix}`, dest, { storage, progress: false }).catch((e) => e);
      expect(err, prefix).toBeInstanceOf(st.NameCollisionError);
      expect(err.message).toContain(JSON.stringify(a));
      expect(err.message).toContain(JSON.stringify(b));
      expect(fs.existsSync(dest), prefix).toBe(false);
      const r = await st.download(`gs://${BUCKET}/${prefix}`, dest, { storage, progress: false, onUnsafeName: 'skip' });
      expect(walk(dest)).toEqual(['ok.jpg']);
      expect(r.downloaded).toBe(1);
    }
  });

  it('downloads names with ":" and Spark-escaped "%2F" as they are; the local copy lists like the bucket', async () => {
    const names = ['esc/label=a%2Fb/x.jpg', 'esc/label=c%3Ad/y.jpg', 'esc/label=plain/a:b.jpg'];
    await seedObjects(
      storage,
      BUCKET,
      names.map((name) => ({ name, data: Buffer.from(name) })),
    );
    const dest = mk('esc');
    const r = await st.download(`gs://${BUCKET}/esc`, dest, { storage, progress: false });
    expect(r.downloaded).toBe(3);
    expect(walk(dest)).toEqual(names.map((n) => n.slice(4)).sort());
    const remote = await st.listPartitioned(`gs://${BUCKET}/esc`, { storage, minPartitionNum: 1 });
    const local = await st.listPartitioned(dest, { minPartitionNum: 1 });
    // PartitioningUtils unescapes the folder value (unescapePathName).
    expect(remote.files.map((f) => f.partitionValues)).toEqual([
      { label: 'a/b' },
      { label: 'c:d' },
      { label: 'plain' },
    ]);
    expect(local.files.map((f) => [f.object.relPath, f.partitionValues])).toEqual(
      remote.files.map((f) => [f.object.relPath, f.partitionValues]),
    );
  });

  it('objects stored with Content-Encoding gzip: fetched as stored, verified, decompressed; Range resumes them', async () => {
    const jpg = fs.readFileSync('/usr/share/doc/opencv-doc/examples/data/baboon.jpg');
    const rand = seededRandom(11);
    const text = Buffer.from(Array.from({ length: 3_000_000 }, () => 'abcdefgh'[Math.floor(rand() * 8)]).join(''));
    const b = storage.bucket(BUCKET);
    await b.file('gz/baboon.jpg').save(zlib.gzipSync(jpg), {
      resumable: false,
      validation: false,
      metadata: { contentEncoding: 'gzip', contentType: 'image/jpeg' },
    });
    await b.file('gz/big.txt').save(zlib.gzipSync(text), {
      resumable: false,
      validation: false,
      metadata: { contentEncoding: 'gzip', contentType: 'text/plain' },
    });
    const listed = await st.listAll(`gs://${BUCKET}/gz`, { storage });
    expect(listed.map((o) => o.contentEncoding)).toEqual(['gzip', 'gzip']);
    const dest = mk('gz');
    const r = await st.download(`gs://${BUCKET}/gz`, dest, {
      storage,
      maxRetries: 1,
      retryDelayMs: 1,
      progress: false,
    });
    expect(r.retries).toBe(0);
    expect(r.files.every((f) => f.decompressed)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'baboon.jpg')).equals(jpg)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'big.txt')).equals(text)).toBe(true);
    // A re-run recognises the decoded files; a replaced one is fetched again.
    fs.writeFileSync(path.join(dest, 'big.txt'), 'changed');
    const again = await st.download(`gs://${BUCKET}/gz`, dest, { storage, progress: false });
    expect([again.skipped, again.downloaded]).toEqual([1, 1]);
    expect(fs.readFileSync(path.join(dest, 'big.txt')).equals(text)).toBe(true);
    // decompress: false keeps the stored bytes, which verify like any object.
    const raw = mk('gz-raw');
    await st.download(`gs://${BUCKET}/gz`, raw, { storage, decompress: false, progress: false });
    expect(zlib.gunzipSync(fs.readFileSync(path.join(raw, 'baboon.jpg'))).equals(jpg)).toBe(true);
    // Through truncated bodies (the first two media responses, whichever
    // objects they are, so that a retry happens on every run): resumed.
    proxy.setFaults({ truncate: 1, limit: 2, match: isMedia });
    const cut = mk('gz-cut');
    const rc = await st.download(`gs://${BUCKET}/gz`, cut, {
      storage: viaProxy,
      retryDelayMs: 1,
      maxRetries: 30,
      progress: false,
    });
    proxy.setFaults({});
    expect(rc.retries).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(cut, 'big.txt')).equals(text)).toBe(true);
    // Image headers of a gzip-stored JPEG are read through the gzip stream.
    const img = await st.listPartitioned(`gs://${BUCKET}/gz`, {
      storage,
      image: true,
      pathGlobFilter: '*.jpg',
      minPartitionNum: 1,
    });
    expect(img.files.map((f) => [f.image?.width, f.image?.height, f.image?.nChannels])).toEqual([[512, 512, 3]]);
  });

  it('refuses a local source and bad locations with clear errors', async () => {
    await expect(st.download('/tmp', '/tmp/x')).rejects.toThrow(/source must be a gs:\/\/ location/);
    await expect(st.download('gs://', '/tmp/x')).rejects.toThrow(/invalid GCS location/);
  });

  it('reports a missing object as a failure, not a hang', async () => {
    const dest = mk('missing');
    const ghost = { name: 'plain/ghost.bin', relPath: 'ghost.bin', size: 10, updated: new Date(), md5Hash: 'x' };
    const err = await st
      .download(`gs://${BUCKET}/plain`, dest, { storage, objects: [ghost], progress: false, retryDelayMs: 1 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(st.DownloadError);
    expect(err.message).toMatch(/404/);
    expect(walk(dest).filter((f) => !f.startsWith(st.PARTIAL_DIR))).toEqual([]);
  });
});
