// Verified upload of files or a folder (checkpoints) to a GCS prefix, and a
// background queue for uploading while training goes on. Each file's MD5 and
// CRC32C are computed first and sent with the object (GCS rejects a
// mismatching upload), then compared with what the server stored. Files whose
// remote copy already has the same MD5 are skipped, so re-running an
// interrupted folder upload resumes it.
//
// Every write carries a precondition, ifGenerationMatch = the generation read
// just before (0: "must not exist yet"), which makes it idempotent: a retried
// write cannot overwrite an object someone else wrote in between (it fails
// with 412 instead), which is when the client library's conditional strategy
// retries writes too. Small files go up in one multipart request; above 5 MiB
// a resumable session, which after a failure asks the server how much it has
// (`Content-Range: bytes */N` -> 308 + Range) and sends only the rest. The
// Firebase emulator cannot hold a multi-request session, so that protocol is
// tested against test/storage/gcs-protocol-server.ts.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type { Storage } from '@google-cloud/storage';
import { createStorage, StorageError, statusOf, toStorageError } from './client';
import { apiJson, apiRequest, httpError, parseJsonBody, type ApiResponse } from './http';
import { withRetries, type RetryOptions } from './retry';
import { Location, type LocationLike } from './location';
import { mapLimit } from './pool';
import { fileDigests } from './verify';
import { TransferMeter, type TransferProgress } from './progress';

export interface UploadOptions {
  storage?: Storage;
  /** Uploads in flight (default 8). */
  concurrency?: number;
  /** Attempts after the first for one file (default 6). */
  maxRetries?: number;
  /** First backoff delay in ms (default 250), doubled per attempt with jitter. */
  retryDelayMs?: number;
  /** Backoff ceiling in ms (default 20,000). */
  maxRetryDelayMs?: number;
  /** Skip files whose remote object already has the same MD5 (default true). */
  skipExisting?: boolean;
  /** Content type for every object (default: guessed by the client from the name). */
  contentType?: string;
  /** Progress on stderr: redrawn on a TTY (default), a line every 5 s when true without a TTY, a callback, or false. */
  progress?: boolean | ((p: TransferProgress) => void);
}

export interface UploadedFile {
  /** Local path. */
  path: string;
  /** gs://bucket/object. */
  uri: string;
  size: number;
  md5Hash: string;
  crc32c: string;
  status: 'uploaded' | 'skipped';
}

export interface UploadResult {
  files: UploadedFile[];
  uploaded: number;
  skipped: number;
  bytes: number;
  ms: number;
}

/** The object changed (another writer) between our read of its generation and our write: nothing was overwritten. */
export class PreconditionFailedError extends StorageError {
  constructor(message: string) {
    super(message, { status: 412, code: 'EPRECONDITION' });
    this.name = 'PreconditionFailedError';
  }
}

export class UploadError extends StorageError {
  constructor(readonly failures: { path: string; error: Error }[]) {
    super(
      `${failures.length} file(s) failed to upload: ${failures
        .slice(0, 3)
        .map((f) => f.error.message)
        .join('; ')}`,
    );
    this.name = 'UploadError';
  }
}

/** Local files under `src` (a file or a folder) with their object names relative to the prefix. */
async function collect(src: string): Promise<{ file: string; rel: string }[]> {
  const abs = path.resolve(src);
  const st = await fs.promises.stat(abs).catch((e) => {
    throw new Error(`upload: ${abs} does not exist (${(e as NodeJS.ErrnoException).code})`);
  });
  if (st.isFile()) return [{ file: abs, rel: path.basename(abs) }];
  if (!st.isDirectory()) throw new Error(`upload: ${abs} is neither a file nor a folder`);
  const out: { file: string; rel: string }[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const e of await fs.promises.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      const t = e.isSymbolicLink() ? await fs.promises.stat(p).catch(() => undefined) : e;
      if (t?.isDirectory()) await walk(p, r);
      else if (t?.isFile()) out.push({ file: p, rel: r });
    }
  };
  await walk(abs, '');
  return out.sort((a, b) => (a.rel < b.rel ? -1 : 1));
}

/**
 * Uploads a file, or a folder's files (keeping their relative paths), below
 * the prefix `dest`: `upload('ckpt', 'gs://b/run1')` puts ckpt/e2.pt at
 * gs://b/run1/e2.pt.
 */
export async function upload(src: string, dest: LocationLike, opts: UploadOptions = {}): Promise<UploadResult> {
  const t0 = performance.now();
  const loc = Location.parse(dest);
  if (!loc.isGcs) throw new TypeError(`upload: the destination must be a gs:// location, got ${loc}`);
  const files = await collect(src);
  const storage = opts.storage ?? createStorage();
  const sizes = await Promise.all(files.map((f) => fs.promises.stat(f.file).then((s) => s.size)));
  const progress = new TransferMeter(
    `upload ${loc}`,
    files.length,
    sizes.reduce((a, b) => a + b, 0),
    opts.progress,
  );
  const result: UploadResult = { files: [], uploaded: 0, skipped: 0, bytes: 0, ms: 0 };
  const failures: { path: string; error: Error }[] = [];
  await mapLimit(files, Math.max(1, opts.concurrency ?? 8), async (f) => {
    try {
      const r = await uploadOne(storage, f.file, loc.bucket, loc.dirPrefix + f.rel, opts);
      result.files.push(r);
      if (r.status === 'uploaded') {
        result.uploaded++;
        result.bytes += r.size;
      } else result.skipped++;
      progress.add(1, r.size);
    } catch (err) {
      failures.push({ path: f.file, error: err as Error });
    }
  }).finally(() => progress.done());
  result.ms = performance.now() - t0;
  if (failures.length) throw new UploadError(failures);
  return result;
}

interface StoredMeta {
  md5Hash?: string;
  crc32c?: string;
  size: string;
  generation?: string;
}

type Digests = { md5Hash: string; crc32c: string; size: number };

const sameContent = (m: StoredMeta | undefined, local: Digests) =>
  !!m && m.md5Hash === local.md5Hash && (!m.crc32c || m.crc32c === local.crc32c) && Number(m.size) === local.size;

/** Uploads one local file to exactly gs://bucket/name, verified; retried on transient errors (every write is conditional). */
export async function uploadOne(
  storage: Storage,
  file: string,
  bucketName: string,
  name: string,
  opts: UploadOptions = {},
): Promise<UploadedFile> {
  const uri = `gs://${bucketName}/${name}`;
  const objectPath = `/storage/v1/b/${encodeURIComponent(bucketName)}/o/${encodeURIComponent(name)}`;
  const retry: RetryOptions = {
    maxRetries: opts.maxRetries ?? 6,
    retryDelayMs: opts.retryDelayMs ?? 250,
    maxRetryDelayMs: opts.maxRetryDelayMs,
  };
  const stat = () =>
    withRetries(
      () =>
        apiJson<StoredMeta>(storage, {
          method: 'GET',
          path: objectPath,
          query: { fields: 'md5Hash,crc32c,size,generation' },
        }).catch((e) => {
          if (statusOf(e) === 404) return undefined;
          throw e;
        }),
      retry,
    );
  try {
    let local = await fileDigests(file);
    let remote = await stat();
    const result = (status: 'uploaded' | 'skipped'): UploadedFile => ({
      path: file,
      uri,
      size: local.size,
      md5Hash: local.md5Hash,
      crc32c: local.crc32c,
      status,
    });
    if ((opts.skipExisting ?? true) && sameContent(remote, local)) return result('skipped');
    for (let round = 0; ; round++) {
      const generation = remote?.generation ?? '0';
      let m: StoredMeta | undefined;
      try {
        m =
          local.size > RESUMABLE_ABOVE
            ? await resumableUpload(storage, file, bucketName, name, local, generation, retry, opts.contentType)
            : await withRetries(
                () => multipartUpload(storage, file, bucketName, name, local, generation, opts.contentType),
                retry,
              );
      } catch (err) {
        if (statusOf(err) !== 412) throw err;
        // 412 after a retry may be our own earlier attempt, which landed
        // while its response was lost: then the object holds our bytes.
        const now = await stat();
        if (!sameContent(now, local)) {
          throw new PreconditionFailedError(
            `${uri} changed while uploading ${file} (expected generation ${generation}, now ${now?.generation ?? 'deleted'}): not overwritten`,
          );
        }
        m = now;
      }
      if (sameContent(m, local)) return result('uploaded');
      // The file changed while it was read (a checkpoint replaced meanwhile):
      // hash it again and write over the generation we just made.
      if (round >= 2)
        throw new StorageError(
          `${uri}: stored object does not match ${file} (size/md5/crc32c) after ${round + 1} uploads`,
        );
      local = await fileDigests(file);
      remote = m;
    }
  } catch (err) {
    throw toStorageError(err, `uploading ${file} to ${uri}`);
  }
}

/** Files above this go up through a resumable session (GCS's advice: multipart for small objects only). */
const RESUMABLE_ABOVE = 5 * 1024 * 1024;

/** A body that streams bytes [start, start + size) of an open file (read through one descriptor). */
function fileBody(
  fh: fs.promises.FileHandle,
  file: string,
  start: number,
  size: number,
  head?: Buffer,
  tail?: Buffer,
): { length: number; open: () => Readable } {
  return {
    length: (head?.length ?? 0) + size + (tail?.length ?? 0),
    open: () =>
      Readable.from(
        (async function* () {
          if (head) yield head;
          let pos = 0;
          const buf = Buffer.allocUnsafe(1 << 20);
          while (pos < size) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), start + pos);
            if (bytesRead === 0) throw new Error(`${file} shrank while uploading`);
            pos += bytesRead;
            yield Buffer.from(buf.subarray(0, bytesRead));
          }
          if (tail) yield tail;
        })(),
      ),
  };
}

/** The next byte a resumable session wants, from a 308's `Range: bytes=0-K` (none: nothing persisted). */
function persistedBytes(res: ApiResponse): number {
  const m = /^bytes=0-(\d+)$/.exec(String(res.headers.range ?? '').trim());
  return m ? Number(m[1]) + 1 : 0;
}

class SessionLostError extends Error {
  readonly retryable = true;
  readonly code = 'ESESSION';
}

/**
 * Google's resumable upload protocol: one POST opens a session (with the
 * MD5, CRC32C and the precondition, so GCS refuses damaged bytes and a lost
 * race), one PUT sends the bytes. After a failure the session is asked how
 * much it holds (`Content-Range: bytes *\/N`: 308 with `Range: bytes=0-K`, or
 * 200/201 when the object is already complete) and only the rest is sent; a
 * session that is gone (404/410, or a server that cannot answer the query)
 * is replaced by a new one. All of it runs in one retry loop.
 */
async function resumableUpload(
  storage: Storage,
  file: string,
  bucket: string,
  name: string,
  local: Digests,
  generation: string,
  retry: RetryOptions,
  contentType = 'application/octet-stream',
): Promise<StoredMeta> {
  const fh = await fs.promises.open(file, 'r');
  let session: URL | undefined;
  let offset = 0;
  const sessionRequest = (headers: Record<string, string>, body?: { length: number; open: () => Readable }) =>
    apiRequest(storage, {
      method: 'PUT',
      path: session!.pathname,
      query: Object.fromEntries(session!.searchParams),
      headers: { 'content-type': contentType, ...headers },
      body,
    });
  try {
    return await withRetries(async (attempt) => {
      if (session && attempt > 0) {
        const q = await sessionRequest({ 'content-range': `bytes */${local.size}` });
        if (q.status === 200 || q.status === 201) return parseJsonBody<StoredMeta>(q, 'an upload session');
        if (q.status === 308) offset = persistedBytes(q);
        else if (q.status >= 500 || q.status === 429 || q.status === 408) throw httpError(q);
        else session = undefined;
      }
      if (!session) {
        let location = '';
        const opened = await apiRequest(storage, {
          method: 'POST',
          path: `/upload/storage/v1/b/${encodeURIComponent(bucket)}/o`,
          query: { uploadType: 'resumable', name, ifGenerationMatch: generation },
          headers: {
            'content-type': 'application/json; charset=UTF-8',
            'x-upload-content-type': contentType,
            'x-upload-content-length': String(local.size),
          },
          body: Buffer.from(JSON.stringify({ name, md5Hash: local.md5Hash, crc32c: local.crc32c, contentType })),
        });
        if (opened.status < 200 || opened.status >= 300) throw httpError(opened);
        location = String(opened.headers.location ?? '');
        if (!location)
          throw Object.assign(new StorageError(`gs://${bucket}/${name}: the server opened no upload session`), {
            retryable: true,
          });
        session = new URL(location);
        offset = 0;
      }
      const res = await sessionRequest(
        { 'content-range': `bytes ${offset}-${local.size - 1}/${local.size}` },
        fileBody(fh, file, offset, local.size - offset),
      );
      if (res.status === 200 || res.status === 201) return parseJsonBody<StoredMeta>(res, 'an upload session');
      if (res.status === 308) {
        offset = persistedBytes(res);
        throw new SessionLostError(`the session holds ${offset} of ${local.size} bytes`);
      }
      if (res.status === 404 || res.status === 410) {
        session = undefined;
        throw new SessionLostError(`upload session gone (HTTP ${res.status})`);
      }
      throw httpError(res);
    }, retry);
  } finally {
    await fh.close();
  }
}

/**
 * A JSON-API multipart upload (metadata + bytes in one request), streamed
 * from the file. The MD5 and CRC32C we send make GCS refuse damaged bytes,
 * and the precondition makes a repeated request harmless.
 */
async function multipartUpload(
  storage: Storage,
  file: string,
  bucket: string,
  name: string,
  local: Digests,
  generation: string,
  contentType = 'application/octet-stream',
): Promise<StoredMeta> {
  const boundary = `torchline-${crypto.randomBytes(16).toString('hex')}`;
  const meta = JSON.stringify({ name, md5Hash: local.md5Hash, crc32c: local.crc32c, contentType });
  const head = Buffer.from(
    `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n${meta}\r\n` +
      `--${boundary}\r\nContent-Type: ${contentType}\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const fh = await fs.promises.open(file, 'r');
  try {
    // Read through one descriptor: a file replaced meanwhile (atomic checkpoint writes) is read consistently.
    return await apiJson(storage, {
      method: 'POST',
      path: `/upload/storage/v1/b/${encodeURIComponent(bucket)}/o`,
      query: { uploadType: 'multipart', ifGenerationMatch: generation, fields: 'md5Hash,crc32c,size,generation' },
      headers: { 'content-type': `multipart/related; boundary=${boundary}` },
      body: fileBody(fh, file, 0, local.size, head, tail),
    });
  } finally {
    await fh.close();
  }
}

/**
 * A background upload queue: `add()` returns at once and the upload runs
 * while the caller goes on (e.g. training); `flush()` waits for everything
 * added so far and throws an UploadError for the ones that failed.
 */
export class UploadQueue {
  private readonly loc: Location;
  private readonly storage: Storage;
  private readonly queue: {
    file: string;
    name: string;
    resolve: (u: UploadedFile) => void;
    reject: (e: Error) => void;
  }[] = [];
  private running = 0;
  private inflight = new Set<Promise<unknown>>();
  private failures: { path: string; error: Error }[] = [];
  private done: UploadedFile[] = [];
  private closed = false;

  constructor(
    dest: LocationLike,
    private readonly opts: UploadOptions = {},
  ) {
    this.loc = Location.parse(dest);
    if (!this.loc.isGcs) throw new TypeError(`UploadQueue: the destination must be a gs:// location, got ${this.loc}`);
    this.storage = opts.storage ?? createStorage();
  }

  /** Files queued or uploading. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  /**
   * Queues a local file; `name` is its object name below the prefix (default:
   * its base name). The returned promise settles with this file's result;
   * failures are also reported by the next flush().
   */
  add(file: string, name?: string): Promise<UploadedFile> {
    if (this.closed) return Promise.reject(new Error('UploadQueue is closed'));
    const objectName = this.loc.dirPrefix + (name ?? path.basename(file)).replace(/^\/+/, '');
    const p = new Promise<UploadedFile>((resolve, reject) => {
      this.queue.push({ file: path.resolve(file), name: objectName, resolve, reject });
    });
    p.catch(() => {}); // reported by flush(); callers need not await add()
    this.pump();
    return p;
  }

  private pump(): void {
    const limit = Math.max(1, this.opts.concurrency ?? 2);
    while (this.running < limit && this.queue.length) {
      const job = this.queue.shift()!;
      this.running++;
      const t = uploadOne(this.storage, job.file, this.loc.bucket, job.name, this.opts)
        .then(
          (r) => {
            this.done.push(r);
            job.resolve(r);
          },
          (e: Error) => {
            this.failures.push({ path: job.file, error: e });
            job.reject(e);
          },
        )
        .finally(() => {
          this.running--;
          this.inflight.delete(t);
          this.pump();
        });
      this.inflight.add(t);
    }
  }

  /** Waits until everything added so far is uploaded; throws UploadError listing failures since the last flush. */
  async flush(): Promise<UploadedFile[]> {
    while (this.queue.length || this.inflight.size) await Promise.race([...this.inflight]);
    const failures = this.failures;
    const done = this.done;
    this.failures = [];
    this.done = [];
    if (failures.length) throw new UploadError(failures);
    return done;
  }

  /** flush(), then refuse further add()s. */
  async close(): Promise<UploadedFile[]> {
    this.closed = true;
    return this.flush();
  }
}
