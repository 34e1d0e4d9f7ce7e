// Verified parallel download of a GCS prefix (or a chosen list of objects)
// into a local folder. Each object streams into a partial file under
// `<dest>/.torchline-partial/`, is checked against the object's MD5 (or
// CRC32C) and only then renamed into place, so a file at its final path is
// always complete and verified. Interrupted transfers resume from the partial
// file with a Range request; 408/429/5xx, connection resets and stalls are
// retried with exponential backoff and jitter (retry.ts). Object names that
// would land outside the destination, or on top of each other, are refused
// before anything is written.
//
// Objects stored with `Content-Encoding: gzip` are fetched as stored (the
// hashes and Range describe those bytes), verified, and then decompressed into
// place, as the client library's download does by default (`decompress`).
import * as crypto from 'node:crypto';
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import type { Storage } from '@google-cloud/storage';
import { createStorage, StorageError, toStorageError } from './client';
import { Location, type LocationLike } from './location';
import { listAll, type ListedObject } from './listing';
import { mapLimit } from './pool';
import { withRetries } from './retry';
import { ContentHasher, hashFile } from './verify';
import { TransferMeter, type TransferProgress } from './progress';
import { createMediaAgent, openMedia, type MediaAgent } from './http';

export const PARTIAL_DIR = '.torchline-partial';

export interface DownloadOptions {
  storage?: Storage;
  /** Objects to fetch (e.g. one rank's rows, `row.object`); default: every object under the source prefix (listAll). */
  objects?: ListedObject[];
  /** Transfers in flight (default 32). */
  concurrency?: number;
  /** Attempts after the first for one object (default 8). */
  maxRetries?: number;
  /** First backoff delay in ms, doubled per attempt, with jitter (default 250). */
  retryDelayMs?: number;
  /** Backoff ceiling in ms (default 20,000). */
  maxRetryDelayMs?: number;
  /** Abort and resume a transfer that receives nothing for this long (ms, default 30,000). */
  stallTimeoutMs?: number;
  /**
   * How a file already at its final path is accepted: 'checksum' (default) or 'size'. A decompressed
   * gzip-stored object cannot be checked against the stored hashes: it is accepted when it still carries
   * the object's update time, which download stamps on it.
   */
  verifyExisting?: 'checksum' | 'size';
  /**
   * Unsafe object names, and names that would land on the same local path (case folding, Unicode NFC,
   * an object `a` beside `a/b`): 'error' (default) refuses the whole download before writing; 'skip'
   * leaves them out (every member of a colliding group).
   */
  onUnsafeName?: 'error' | 'skip';
  /** Decompress objects stored with Content-Encoding gzip after verifying the stored bytes (default true, as the client library). */
  decompress?: boolean;
  /** Progress on stderr: redrawn on a TTY (default), a line every 5 s when true without a TTY, a callback, or false. */
  progress?: boolean | ((p: TransferProgress) => void);
  signal?: AbortSignal;
}

export interface DownloadedFile {
  name: string;
  path: string;
  /** Stored size (for a decompressed gzip object, the compressed size). */
  size: number;
  status: 'downloaded' | 'skipped';
  /** True when the stored gzip bytes were decompressed into `path`. */
  decompressed?: boolean;
}

export interface DownloadResult {
  files: DownloadedFile[];
  downloaded: number;
  skipped: number;
  /** Bytes transferred over the network (resumed parts not counted twice). */
  bytes: number;
  retries: number;
  ms: number;
}

export class UnsafeObjectNameError extends StorageError {
  constructor(
    readonly names: string[],
    reason: string,
  ) {
    super(
      `refusing to download ${names.length} object(s) whose names would escape or confuse the destination ` +
        `(${reason}): ${names
          .slice(0, 5)
          .map((n) => JSON.stringify(n))
          .join(', ')}${names.length > 5 ? ', ...' : ''}`,
      { code: 'EUNSAFENAME' },
    );
    this.name = 'UnsafeObjectNameError';
  }
}

/** Objects whose local paths would collide; each pair names both objects. */
export class NameCollisionError extends StorageError {
  constructor(readonly collisions: NameCollision[]) {
    super(
      `refusing to download: ${collisions.length} object name(s) would land on the same local path: ` +
        collisions
          .slice(0, 5)
          .map((c) => `${JSON.stringify(c.a)} and ${JSON.stringify(c.b)} (${c.why})`)
          .join('; ') +
        (collisions.length > 5 ? '; ...' : ''),
      { code: 'ENAMECOLLISION' },
    );
    this.name = 'NameCollisionError';
  }
}

export interface NameCollision {
  a: string;
  b: string;
  why: 'same name after case folding or Unicode NFC normalisation' | 'a file where another object needs a folder';
}

export class DownloadError extends StorageError {
  constructor(
    readonly failures: { name: string; error: Error }[],
    readonly result: DownloadResult,
  ) {
    super(
      `${failures.length} object(s) failed to download (${result.downloaded} downloaded, ${result.skipped} already present): ` +
        failures
          .slice(0, 3)
          .map((f) => f.error.message)
          .join('; '),
    );
    this.name = 'DownloadError';
  }
}

/**
 * Why a relative object name is unsafe as a local path, or undefined if safe:
 * absolute paths, `.`/`..`/empty segments, backslashes, control characters,
 * Unicode forms that normalise to separators or dot segments, over-long
 * segments, and names inside our partial folder. On Windows also drive
 * letters and any `:` (alternate data streams). Percent signs are literal
 * characters in a local name: `label=a%2Fb` (Spark's escapePathName of the
 * value `a/b`) is an ordinary folder name and is kept as it is.
 */
export function unsafeNameReason(rel: string, platform: NodeJS.Platform = process.platform): string | undefined {
  if (rel === '') return 'empty name';
  if (rel.startsWith('/')) return 'absolute path';
  if (rel.includes('\\')) return 'backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(rel)) return 'control character';
  if (platform === 'win32') {
    if (/^[A-Za-z]:/.test(rel)) return 'absolute path';
    if (rel.includes(':')) return 'colon (an NTFS stream name)';
  }
  const n = rel.normalize('NFKC');
  if (
    n !== rel &&
    (n.includes('\\') ||
      n.split('/').length !== rel.split('/').length ||
      n.split('/').some((x) => x === '.' || x === '..'))
  ) {
    return 'Unicode form that normalises to a separator or dot segment';
  }
  const segs = rel.split('/');
  for (const s of segs) {
    if (s === '') return 'empty path segment';
    if (s === '.' || s === '..') return `"${s}" segment`;
    if (Buffer.byteLength(s) > 255) return 'segment longer than 255 bytes';
  }
  if (foldName(segs[0]) === PARTIAL_DIR) return `reserved folder ${PARTIAL_DIR}`;
  return undefined;
}

/** The key two names share when a case-insensitive or normalisation-insensitive file system (macOS, Windows) would see one file. */
function foldName(s: string): string {
  return s.normalize('NFC').toLowerCase();
}

/**
 * Relative names that would land on the same local path: equal after case
 * folding and Unicode NFC (one file on macOS and Windows; on Linux two files
 * that no longer copy anywhere else), or an object `a` beside `a/b` (a file
 * where a folder must be, on every file system).
 */
export function findNameCollisions(rels: readonly string[]): NameCollision[] {
  const out: NameCollision[] = [];
  const files = new Map<string, string>();
  const dirs = new Map<string, string>();
  for (const rel of rels) {
    const key = foldName(rel);
    const other = files.get(key);
    if (other !== undefined)
      out.push({ a: other, b: rel, why: 'same name after case folding or Unicode NFC normalisation' });
    else files.set(key, rel);
    const segs = key.split('/');
    for (let i = 1; i < segs.length; i++) {
      const d = segs.slice(0, i).join('/');
      if (!dirs.has(d)) dirs.set(d, rel);
    }
  }
  for (const [key, rel] of files) {
    const child = dirs.get(key);
    if (child !== undefined) out.push({ a: rel, b: child, why: 'a file where another object needs a folder' });
  }
  return out;
}

/** Downloads every object under `src` (a gs:// prefix) into the local folder `dest`. */
export async function download(src: LocationLike, dest: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const t0 = performance.now();
  const loc = Location.parse(src);
  if (!loc.isGcs) throw new TypeError(`download: the source must be a gs:// location, got ${loc}`);
  const destRoot = path.resolve(dest);
  // Every request in flight listens to the caller's signal.
  if (opts.signal) setMaxListeners(0, opts.signal);
  const storage = opts.storage ?? createStorage();
  let objects = opts.objects ?? (await listAll(loc, { storage }));
  // Folder placeholders ("x/") are not files.
  objects = objects.filter((o) => !o.name.endsWith('/'));
  for (const o of objects) {
    if (!o.name.startsWith(loc.dirPrefix) && loc.path !== '') {
      throw new TypeError(`download: object ${o.name} is not under ${loc}`);
    }
  }
  const bad = objects.map((o) => ({ o, why: unsafeNameReason(relName(loc, o)) })).filter((x) => x.why);
  if (bad.length) {
    if ((opts.onUnsafeName ?? 'error') === 'error')
      throw new UnsafeObjectNameError(
        bad.map((b) => b.o.name),
        bad[0].why as string,
      );
    const skip = new Set(bad.map((b) => b.o));
    objects = objects.filter((o) => !skip.has(o));
  }
  const collisions = findNameCollisions(objects.map((o) => relName(loc, o)));
  if (collisions.length) {
    if ((opts.onUnsafeName ?? 'error') === 'error') {
      throw new NameCollisionError(collisions.map((c) => ({ ...c, a: loc.dirPrefix + c.a, b: loc.dirPrefix + c.b })));
    }
    const skip = new Set(collisions.flatMap((c) => [c.a, c.b]));
    objects = objects.filter((o) => !skip.has(relName(loc, o)));
  }
  const decompress = opts.decompress ?? true;
  const partialDir = path.join(destRoot, PARTIAL_DIR);
  // What is already there, learnt with one readdir per folder instead of a
  // stat per object (most objects of a fresh download are absent).
  const existing = await listExisting(destRoot);
  const partials = new Set(await fs.promises.readdir(partialDir).catch(() => [] as string[]));
  await fs.promises.mkdir(partialDir, { recursive: true });

  const totalBytes = objects.reduce((s, o) => s + o.size, 0);
  const progress = new TransferMeter(`download ${loc}`, objects.length, totalBytes, opts.progress);
  const result: DownloadResult = { files: [], downloaded: 0, skipped: 0, bytes: 0, retries: 0, ms: 0 };
  const failures: { name: string; error: Error }[] = [];
  const made = new Map<string, Promise<void>>();
  const realRoot = await fs.promises.realpath(destRoot);
  const realPartial = await fs.promises.realpath(partialDir);
  if (realPartial !== path.join(realRoot, PARTIAL_DIR)) {
    throw new StorageError(`${partialDir} resolves to ${realPartial}, outside the destination (symbolic link)`, {
      code: 'EUNSAFEPATH',
    });
  }
  // Creates a folder and checks that it really is inside the destination: a
  // symbolic link already there must not carry files elsewhere.
  const mkdirp = (d: string) => {
    let p = made.get(d);
    if (!p) {
      p = (async () => {
        await fs.promises.mkdir(d, { recursive: true });
        const real = await fs.promises.realpath(d);
        if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
          throw new StorageError(`${d} resolves to ${real}, outside the destination ${destRoot} (symbolic link)`, {
            code: 'EUNSAFEPATH',
          });
        }
      })();
      made.set(d, p);
    }
    return p;
  };

  const concurrency = Math.max(1, opts.concurrency ?? 32);
  const agent = createMediaAgent(concurrency);
  await mapLimit(objects, concurrency, async (o) => {
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('download aborted');
    const rel = relName(loc, o);
    const finalPath = path.join(destRoot, ...rel.split('/'));
    try {
      if (
        existing.has(rel) &&
        (await presentAndVerified(finalPath, o, opts.verifyExisting ?? 'checksum', decompress))
      ) {
        result.skipped++;
        result.files.push({ name: o.name, path: finalPath, size: o.size, status: 'skipped' });
        progress.add(1, o.size);
        return;
      }
      await mkdirp(path.dirname(finalPath));
      const pname = partialName(o);
      const partial = path.join(partialDir, pname);
      const { bytes, retries, gzip } = await fetchVerified(
        storage,
        loc.bucket,
        o,
        partial,
        partials.has(pname),
        opts,
        agent,
        (n) => progress.add(0, n),
      );
      const decoded = gzip && decompress;
      if (decoded) await gunzipInto(partial, finalPath, o);
      else await fs.promises.rename(partial, finalPath);
      result.bytes += bytes;
      result.retries += retries;
      result.downloaded++;
      result.files.push({
        name: o.name,
        path: finalPath,
        size: o.size,
        status: 'downloaded',
        ...(decoded ? { decompressed: true } : {}),
      });
      progress.add(1, 0);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      failures.push({ name: o.name, error: toStorageError(err, `downloading gs://${loc.bucket}/${o.name}`) });
    }
  }).finally(() => {
    progress.done();
    agent.destroy();
  });

  if (failures.length === 0) await fs.promises.rm(partialDir, { recursive: true, force: true }).catch(() => {});
  result.ms = performance.now() - t0;
  if (failures.length) throw new DownloadError(failures, result);
  return result;
}

const SMALL_OBJECT = 4 * 1024 * 1024;

/** Relative paths of the regular files below root (none when it does not exist), skipping our partial folder. */
async function listExisting(root: string): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await fs.promises.readdir(dir, { withFileTypes: true }).catch(() => []);
    await Promise.all(
      entries.map(async (e) => {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (r !== PARTIAL_DIR) await walk(path.join(dir, e.name), r);
        } else out.add(r);
      }),
    );
  };
  await walk(root, '');
  return out;
}

function relName(loc: Location, o: ListedObject): string {
  return o.name.slice(loc.dirPrefix.length);
}

function partialName(o: ListedObject): string {
  // Keyed by name and generation: a partial of an older generation is never resumed.
  return (
    crypto
      .createHash('sha1')
      .update(`${o.name}\n${o.generation ?? ''}\n${o.size}`)
      .digest('hex') + '.part'
  );
}

function isGzipStored(o: ListedObject): boolean {
  return (o.contentEncoding ?? '').trim().toLowerCase() === 'gzip';
}

/** Decompresses a verified gzip partial into place (through a second partial), stamped with the object's update time. */
async function gunzipInto(partial: string, finalPath: string, o: ListedObject): Promise<void> {
  const tmp = `${partial}.gunzip`;
  try {
    await pipeline(fs.createReadStream(partial), zlib.createGunzip(), fs.createWriteStream(tmp));
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw new StorageError(
      `${o.name}: stored with Content-Encoding gzip, but its verified bytes do not decompress (${(err as Error).message})`,
      {
        code: 'EGZIP',
      },
    );
  }
  await fs.promises.utimes(tmp, o.updated, o.updated);
  await fs.promises.rename(tmp, finalPath);
  await fs.promises.rm(partial, { force: true });
}

async function presentAndVerified(
  file: string,
  o: ListedObject,
  mode: 'checksum' | 'size',
  decompress: boolean,
): Promise<boolean> {
  const st = await fs.promises.stat(file).catch(() => undefined);
  if (!st || !st.isFile()) return false;
  // A decoded gzip object has neither the stored size nor the stored hashes:
  // the update time stamped on it at download is what identifies it.
  if (decompress && isGzipStored(o)) return Math.abs(st.mtimeMs - o.updated.getTime()) < 1;
  if (st.size !== o.size) return false;
  if (mode === 'size') return true;
  const h = await hashFile(file, new ContentHasher(o));
  return h.matches();
}

class StallError extends Error {
  readonly retryable = true;
  readonly code = 'ESTALL';
}

class ShortReadError extends Error {
  readonly retryable = true;
  readonly code = 'ESHORTREAD';
}

/** Fetches one object into `partial`, resuming what is there, until it verifies. `gzip`: the stored bytes are a gzip stream. */
async function fetchVerified(
  storage: Storage,
  bucket: string,
  o: ListedObject,
  partial: string,
  mayExist: boolean,
  opts: DownloadOptions,
  agent: MediaAgent,
  onBytes: (n: number) => void,
): Promise<{ bytes: number; retries: number; gzip: boolean }> {
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  let bytes = 0;
  let corruptRestarts = 0;
  let gzip = isGzipStored(o);
  return withRetries(
    async (attempt) => {
      let have = attempt > 0 || mayExist ? ((await fs.promises.stat(partial).catch(() => undefined))?.size ?? 0) : 0;
      if (have > o.size) {
        await fs.promises.rm(partial, { force: true });
        have = 0;
      }
      let hasher = new ContentHasher(o);
      if (have > 0) await hashFile(partial, hasher, have);
      if (have < o.size || o.size === 0) {
        const r = await fetchTail(storage, bucket, o, partial, have, hasher, stallMs, opts.signal, agent, onBytes);
        bytes += r.got;
        hasher = r.hasher;
        gzip ||= r.storedGzip;
        have = r.offset + r.got;
        if (have !== o.size) throw new ShortReadError(`got ${have} of ${o.size} bytes`);
      }
      if (!hasher.matches()) {
        await fs.promises.rm(partial, { force: true });
        // Corrupt bytes are retried from scratch a few times, then reported.
        if (++corruptRestarts > 2) {
          throw new StorageError(`${hasher.algorithm} mismatch for ${o.name} after ${corruptRestarts} full downloads`, {
            code: 'ECHECKSUM',
          });
        }
        throw Object.assign(new Error(`${hasher.algorithm} mismatch, restarting`), { retryable: true });
      }
      return { bytes, retries: attempt, gzip };
    },
    {
      maxRetries: opts.maxRetries ?? 8,
      retryDelayMs: opts.retryDelayMs,
      maxRetryDelayMs: opts.maxRetryDelayMs,
      signal: opts.signal,
    },
  );
}

/** Appends the object's bytes from `start` to `partial` (or rewrites it when the server ignores the range). */
async function fetchTail(
  storage: Storage,
  bucket: string,
  o: ListedObject,
  partial: string,
  start: number,
  hasher: ContentHasher,
  stallMs: number,
  signal: AbortSignal | undefined,
  agent: MediaAgent,
  onBytes: (n: number) => void,
): Promise<{ got: number; offset: number; hasher: ContentHasher; storedGzip: boolean }> {
  const { res, offset } = await openMedia(storage, {
    bucket,
    name: o.name,
    generation: o.generation,
    start,
    agent,
    signal,
    headersTimeoutMs: stallMs,
  });
  if (offset !== start) hasher = new ContentHasher(o);
  const served = String(res.headers['content-encoding'] ?? '')
    .trim()
    .toLowerCase();
  const storedGzip =
    isGzipStored(o) || String(res.headers['x-goog-stored-content-encoding'] ?? '').toLowerCase() === 'gzip';
  if (storedGzip && served !== 'gzip') {
    // Decompressed on the way (transcoding): no stored hash describes these bytes.
    res.destroy();
    throw new StorageError(
      `${o.name} is stored gzip-encoded but was served decompressed; its bytes cannot be verified`,
      { code: 'ETRANSCODED' },
    );
  }
  // A front end may compress an uncompressed object on the fly: undo that before hashing.
  const decode = served === 'gzip' && !storedGzip ? zlib.createGunzip() : undefined;
  let got = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => res.destroy(new StallError(`no data for ${stallMs} ms`)), stallMs);
  };
  arm();
  const h = hasher;
  const take = (chunk: Buffer) => {
    arm();
    got += chunk.length;
    h.update(chunk);
    onBytes(chunk.length);
  };
  const meter = () =>
    new Transform({
      transform(chunk: Buffer, _enc, cb) {
        take(chunk);
        cb(null, chunk);
      },
    });
  try {
    if (offset === 0 && o.size <= SMALL_OBJECT && !decode) {
      // Small objects: collect the body from the response's own events, then
      // one write. No stream pipeline: each pipeline() costs an
      // AbortController whose abort() on completion builds a DOMException
      // with a stack trace, which for thousands of small images is a large
      // part of the client's CPU.
      const chunks: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        res.on('data', (c: Buffer) => {
          take(c);
          chunks.push(c);
        });
        res.once('error', reject);
        res.once('end', resolve);
        // A body cut short without an error: res.complete below says so.
        res.once('close', resolve);
      });
      if (res.complete) await fs.promises.writeFile(partial, Buffer.concat(chunks));
    } else if (offset === 0 && o.size <= SMALL_OBJECT) {
      const chunks: Buffer[] = [];
      const collect = async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) chunks.push(c);
      };
      await pipeline(res, decode!, meter(), collect);
      if (res.complete) await fs.promises.writeFile(partial, Buffer.concat(chunks));
    } else {
      const sink = fs.createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' });
      await (decode ? pipeline(res, decode, meter(), sink) : pipeline(res, meter(), sink));
    }
  } finally {
    clearTimeout(timer);
  }
  if (!res.complete) throw Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' });
  return { got, offset, hasher, storedGzip };
}
