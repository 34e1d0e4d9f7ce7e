// One file over http(s) into a local temp file, hashed with SHA-256 as it
// arrives. Redirects are followed; a connection reset, a stall or a 5xx is
// retried with backoff, resuming with a Range request where the server allows
// it. An unreachable host (offline, DNS failure, refused) fails at once: no
// retry loop stands between the user and the "offline" message.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface HttpFetchOptions {
  /** Called with each chunk's size, and once with the total size when the server tells it. */
  onBytes?: (n: number) => void;
  onTotal?: (bytes: number) => void;
  /** Abort and retry when nothing arrives for this long (ms, default 30,000). */
  stallTimeoutMs?: number;
  /** Attempts after the first on transient failures (default 5). */
  maxRetries?: number;
  signal?: AbortSignal;
}

/** Why the URL could not be fetched; `unreachable` marks network-level failures (offline). */
export class HttpFetchError extends Error {
  constructor(
    message: string,
    readonly url: string,
    readonly opts: { status?: number; code?: string; unreachable?: boolean; retryable?: boolean } = {},
  ) {
    super(message);
    this.name = 'HttpFetchError';
  }
}

const UNREACHABLE = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
]);
const TRANSIENT = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ESTALL',
  'ESHORTREAD',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

function classify(err: unknown, url: string): HttpFetchError {
  if (err instanceof HttpFetchError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  const msg = (err as Error)?.message ?? String(err);
  if (code && UNREACHABLE.has(code)) return new HttpFetchError(msg, url, { code, unreachable: true });
  return new HttpFetchError(msg, url, { code, retryable: !!code && TRANSIENT.has(code) });
}

interface Opened {
  res: http.IncomingMessage;
  url: string;
}

/** GET with redirects; resolves on the first non-redirect response. */
function open(
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
  hops = 0,
): Promise<Opened> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new HttpFetchError(`invalid URL ${url}`, url));
      return;
    }
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!mod) {
      reject(new HttpFetchError(`unsupported URL scheme ${u.protocol} in ${url}`, url));
      return;
    }
    const req = mod.get(u, { headers: { 'user-agent': 'torchline', ...headers }, signal }, (res) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (hops >= 5) {
          reject(new HttpFetchError(`too many redirects from ${url}`, url, { status }));
          return;
        }
        open(new URL(res.headers.location, u).href, headers, timeoutMs, signal, hops + 1).then(resolve, reject);
        return;
      }
      resolve({ res, url });
    });
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error(`no response from ${u.host} for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', (err) => reject(classify(err, url)));
  });
}

/**
 * Downloads `url` into `dest` (created or replaced) and returns the SHA-256
 * (hex) and size of what was written.
 */
export async function httpFetchToFile(
  url: string,
  dest: string,
  options: HttpFetchOptions = {},
): Promise<{ sha256: string; bytes: number }> {
  const stallMs = options.stallTimeoutMs ?? 30_000;
  const maxRetries = options.maxRetries ?? 5;
  await fs.promises.writeFile(dest, '');
  let have = 0;
  let hash = crypto.createHash('sha256');
  let reportedTotal = false;
  for (let attempt = 0; ; attempt++) {
    try {
      const { res } = await open(url, have > 0 ? { range: `bytes=${have}-` } : {}, stallMs, options.signal);
      const status = res.statusCode ?? 0;
      const range = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
      if (status === 206 && (!range || Number(range[1]) !== have)) {
        res.resume();
        throw new HttpFetchError(
          `the server answered a range request for byte ${have} with ${res.headers['content-range']}`,
          url,
          { status },
        );
      }
      if (status === 200 && have > 0) {
        // The server ignored the range: start over.
        await fs.promises.writeFile(dest, '');
        have = 0;
        hash = crypto.createHash('sha256');
      } else if (status !== 200 && status !== 206) {
        res.resume();
        throw new HttpFetchError(`HTTP ${status} ${res.statusMessage ?? ''}`.trim(), url, {
          status,
          retryable: status === 408 || status === 429 || status >= 500,
        });
      }
      const length = Number(res.headers['content-length']);
      const expected =
        Number.isFinite(length) && res.headers['content-length'] !== undefined ? have + length : undefined;
      if (expected !== undefined && !reportedTotal) {
        reportedTotal = true;
        options.onTotal?.(expected);
      }
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => res.destroy(Object.assign(new Error(`no data for ${stallMs} ms`), { code: 'ESTALL' })),
          stallMs,
        );
      };
      arm();
      const h = hash;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          arm();
          h.update(chunk);
          options.onBytes?.(chunk.length);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(res, meter, fs.createWriteStream(dest, { flags: 'a' }));
      } finally {
        clearTimeout(timer);
      }
      have = (await fs.promises.stat(dest)).size;
      if (!res.complete || (expected !== undefined && have !== expected)) {
        throw new HttpFetchError(`connection closed after ${have} of ${expected ?? '?'} bytes`, url, {
          code: 'ESHORTREAD',
          retryable: true,
        });
      }
      return { sha256: hash.digest('hex'), bytes: have };
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason ?? e;
      const err = classify(e, url);
      if (attempt >= maxRetries || !err.opts.retryable) throw err;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random())));
      // What reached the disk is what we resume from; hash it again, since
      // chunks hashed before the failure may not all have been written.
      have = (await fs.promises.stat(dest).catch(() => undefined))?.size ?? 0;
      hash = crypto.createHash('sha256');
      if (have > 0) for await (const c of fs.createReadStream(dest)) hash.update(c as Buffer);
    }
  }
}
