// Verified parallel download of a GCS prefix (or a chosen list of objects)
// into a local folder. Each object streams into a partial file under
// `<dest>/.torchline-partial/`, is checked against the object's MD5 (or
// CRC32C) and only then renamed into place, so a file at its final path is
// always complete and verified. Interrupted transfers resume from the partial
// file with a Range request; 408/429/5xx, connection resets and stalls are
// retried with exponential backoff and jitter. Object names that would land
// outside the destination are refused before anything is written.
import * as crypto from 'node:crypto';
import { setMaxListeners } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Storage } from '@google-cloud/storage';
import { createStorage, isRetryableError, StorageError, toStorageError } from './client';
import { Location, type LocationLike } from './location';
import { listAll, type ListedObject } from './listing';
import { mapLimit, sleep } from './pool';
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
  /** How a file already at its final path is accepted: 'checksum' (default) or 'size'. */
  verifyExisting?: 'checksum' | 'size';
  /** Unsafe object names: 'error' (default) refuses the whole download before writing; 'skip' leaves them out. */
  onUnsafeName?: 'error' | 'skip';
  /** Progress on stderr: redrawn on a TTY (default), a line every 5 s when true without a TTY, a callback, or false. */
  progress?: boolean | ((p: TransferProgress) => void);
  signal?: AbortSignal;
}

export interface DownloadedFile {
  name: string;
  path: string;
  size: number;
  status: 'downloaded' | 'skipped';
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
  constructor(readonly names: string[], reason: string) {
    super(
      `refusing to download ${names.length} object(s) whose names would escape or confuse the destination ` +
        `(${reason}): ${names.slice(0, 5).map((n) => JSON.stringify(n)).join(', ')}${names.length > 5 ? ', ...' : ''}`,
      { code: 'EUNSAFENAME' },
    );
    this.name = 'UnsafeObjectNameError';
  }
}

export class DownloadError extends StorageError {
  constructor(readonly failures: { name: string; error: Error }[], readonly result: DownloadResult) {
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
 * absolute or drive paths, `.`/`..`/empty segments, backslashes, control
 * characters, percent-encoded separators or dots, over-long segments, and
 * names that collide with our partial folder.
 */
export function unsafeNameReason(rel: string): string | undefined {
  if (rel === '') return 'empty name';
  if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel)) return 'absolute path';
  if (rel.includes('\\')) return 'backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(rel)) return 'control character';
  if (/%(?:2e|2f|5c|00)/i.test(rel)) return 'percent-encoded dot, slash or NUL';
  const n = rel.normalize('NFKC');
  if (n !== rel && (n.includes('\\') || n.split('/').length !== rel.split('/').length || n.split('/').some((x) => x === '.' || x === '..'))) {
    return 'Unicode form that normalises to a separator or dot segment';
  }
  const segs = rel.split('/');
  for (const s of segs) {
    if (s === '') return 'empty path segment';
    if (s === '.' || s === '..') return `"${s}" segment`;
    if (Buffer.byteLength(s) > 255) return 'segment longer than 255 bytes';
  }
  if (segs[0] === PARTIAL_DIR) return `reserved folder ${PARTIAL_DIR}`;
  return undefined;
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
    if ((opts.onUnsafeName ?? 'error') === 'error') throw new UnsafeObjectNameError(bad.map((b) => b.o.name), bad[0].why as string);
    const skip = new Set(bad.map((b) => b.o));
    objects = objects.filter((o) => !skip.has(o));
  }
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
    throw new StorageError(`${partialDir} resolves to ${realPartial}, outside the destination (symbolic link)`, { code: 'EUNSAFEPATH' });
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
          throw new StorageError(`${d} resolves to ${real}, outside the destination ${destRoot} (symbolic link)`, { code: 'EUNSAFEPATH' });
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
      if (existing.has(rel) && (await presentAndVerified(finalPath, o, opts.verifyExisting ?? 'checksum'))) {
        result.skipped++;
        result.files.push({ name: o.name, path: finalPath, size: o.size, status: 'skipped' });
        progress.add(1, o.size);
        return;
      }
      await mkdirp(path.dirname(finalPath));
      const pname = partialName(o);
      const partial = path.join(partialDir, pname);
      const { bytes, retries } = await fetchVerified(storage, loc.bucket, o, partial, partials.has(pname), opts, agent, (n) => progress.add(0, n));
      await fs.promises.rename(partial, finalPath);
      result.bytes += bytes;
      result.retries += retries;
      result.downloaded++;
      result.files.push({ name: o.name, path: finalPath, size: o.size, status: 'downloaded' });
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
  return crypto.createHash('sha1').update(`${o.name}\n${o.generation ?? ''}\n${o.size}`).digest('hex') + '.part';
}

async function presentAndVerified(file: string, o: ListedObject, mode: 'checksum' | 'size'): Promise<boolean> {
  const st = await fs.promises.stat(file).catch(() => undefined);
  if (!st || !st.isFile() || st.size !== o.size) return false;
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

/** Fetches one object into `partial`, resuming what is there, until it verifies. */
async function fetchVerified(
  storage: Storage,
  bucket: string,
  o: ListedObject,
  partial: string,
  mayExist: boolean,
  opts: DownloadOptions,
  agent: MediaAgent,
  onBytes: (n: number) => void,
): Promise<{ bytes: number; retries: number }> {
  const maxRetries = opts.maxRetries ?? 8;
  const baseDelay = opts.retryDelayMs ?? 250;
  const maxDelay = opts.maxRetryDelayMs ?? 20_000;
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  let bytes = 0;
  let corruptRestarts = 0;
  for (let attempt = 0; ; attempt++) {
    try {
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
        have = r.offset + r.got;
        if (have !== o.size) throw new ShortReadError(`got ${have} of ${o.size} bytes`);
      }
      if (!hasher.matches()) {
        await fs.promises.rm(partial, { force: true });
        // Corrupt bytes are retried from scratch a few times, then reported.
        if (++corruptRestarts > 2) {
          throw new StorageError(`${hasher.algorithm} mismatch for ${o.name} after ${corruptRestarts} full downloads`, { code: 'ECHECKSUM' });
        }
        throw Object.assign(new Error(`${hasher.algorithm} mismatch, restarting`), { retryable: true });
      }
      return { bytes, retries: attempt };
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (attempt >= maxRetries || !isRetryableError(err)) throw err;
      // Backoff: base * 2^attempt, capped, with +-50% jitter.
      const delay = Math.min(maxDelay, baseDelay * 2 ** attempt) * (0.5 + Math.random());
      await sleep(delay);
    }
  }
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
): Promise<{ got: number; offset: number; hasher: ContentHasher }> {
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
  let got = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => res.destroy(new StallError(`no data for ${stallMs} ms`)), stallMs);
  };
  arm();
  const h = hasher;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      arm();
      got += chunk.length;
      h.update(chunk);
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  try {
    if (offset === 0 && o.size <= SMALL_OBJECT) {
      // Small objects: collect the body, then one write (fewer file system round trips than a stream).
      const chunks: Buffer[] = [];
      await pipeline(res, meter, async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) chunks.push(c);
      });
      if (res.complete) await fs.promises.writeFile(partial, Buffer.concat(chunks));
    } else {
      await pipeline(res, meter, fs.createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' }));
    }
  } finally {
    clearTimeout(timer);
  }
  if (!res.complete) throw Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' });
  return { got, offset, hasher };
}
