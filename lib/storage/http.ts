// The GCS JSON API over Node's own HTTP client. The client library (7.x,
// node-fetch underneath) neither ends nor errors when a connection is reset
// or cut short in the middle of a body with a Content-Length, so a transfer
// or even a list call would wait forever; Node's IncomingMessage reports
// both. The library still provides the configuration: endpoint (or
// STORAGE_EMULATOR_HOST), credentials and auth headers (none for an
// emulator, as the library does), user project.
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import type { Storage } from '@google-cloud/storage';
import { isRetryableError, StorageError } from './client';
import { sleep } from './pool';

export interface MediaAgent {
  http: http.Agent;
  https: https.Agent;
  destroy(): void;
}

export function createMediaAgent(maxSockets: number): MediaAgent {
  const h = new http.Agent({ keepAlive: true, maxSockets });
  const s = new https.Agent({ keepAlive: true, maxSockets });
  return {
    http: h,
    https: s,
    destroy: () => {
      h.destroy();
      s.destroy();
    },
  };
}

// Idle keep-alive sockets are unref'd by Node's agent: they never hold a process open.
let sharedAgent: MediaAgent | undefined;
export function defaultAgent(): MediaAgent {
  sharedAgent ??= createMediaAgent(64);
  return sharedAgent;
}

function endpointOf(storage: Storage): string {
  return ((storage as any).apiEndpoint as string).replace(/\/+$/, '');
}

async function authHeaders(storage: Storage, url: string): Promise<Record<string, string>> {
  const s = storage as any;
  if (s.customEndpoint && !s.useAuthWithCustomEndpoint) return {};
  return { ...(await s.authClient.getRequestHeaders(url)) };
}

export interface MediaRequest {
  bucket: string;
  name: string;
  generation?: string;
  /** First byte (default 0). */
  start?: number;
  /** Last byte, inclusive (default: to the end). */
  end?: number;
  agent?: MediaAgent;
  signal?: AbortSignal;
  /** Abort when the response headers take longer than this (ms). */
  headersTimeoutMs?: number;
}

export interface MediaResponse {
  res: http.IncomingMessage;
  /** Where the body starts in the object: `start` for a 206, 0 when the server ignored the range. */
  offset: number;
}

/** GETs the stored bytes (no gunzip) of one object; rejects on non-2xx with the status. */
export async function openMedia(storage: Storage, req: MediaRequest): Promise<MediaResponse> {
  const base = endpointOf(storage);
  const q = new URLSearchParams({ alt: 'media' });
  if (req.generation) q.set('generation', req.generation);
  const userProject = (storage as any).userProject;
  if (userProject) q.set('userProject', userProject);
  const url = `${base}/download/storage/v1/b/${encodeURIComponent(req.bucket)}/o/${encodeURIComponent(req.name)}?${q}`;
  const headers: Record<string, string> = {
    ...(await authHeaders(storage, url)),
    'accept-encoding': 'identity',
    'user-agent': 'torchline-storage',
  };
  const start = req.start ?? 0;
  if (start > 0 || req.end !== undefined) headers.range = `bytes=${start}-${req.end ?? ''}`;
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise<MediaResponse>((resolve, reject) => {
    const r = mod.request(
      u,
      {
        method: 'GET',
        headers,
        agent: req.agent ? (u.protocol === 'https:' ? req.agent.https : req.agent.http) : undefined,
        signal: req.signal,
        timeout: req.headersTimeoutMs ?? 60_000,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status === 200 || status === 206) {
          r.setTimeout(0);
          resolve({ res, offset: status === 206 ? start : 0 });
          return;
        }
        // Read a little of the error body for the message, then fail.
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          if (n < 2048) chunks.push(c);
          n += c.length;
        });
        const fail = () => {
          const body = Buffer.concat(chunks).toString('utf8').slice(0, 300).replace(/\s+/g, ' ');
          let message = body;
          try {
            message = JSON.parse(body)?.error?.message ?? body;
          } catch {
            /* not JSON */
          }
          reject(new StorageError(`HTTP ${status}: ${message || res.statusMessage}`, { status }));
        };
        res.on('end', fail);
        res.on('error', fail);
      },
    );
    r.on('timeout', () => r.destroy(Object.assign(new Error('timed out waiting for response headers'), { code: 'ETIMEDOUT' })));
    r.on('error', reject);
    r.end();
  });
}

/** Reads bytes [start, end] of an object into memory (header reads). */
export async function readRange(storage: Storage, bucket: string, name: string, start: number, end: number): Promise<Buffer> {
  const { res } = await openMedia(storage, { bucket, name, start, end });
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  if (!res.complete) throw Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' });
  const buf = Buffer.concat(chunks);
  // A server that ignores Range sends everything: keep the asked-for slice.
  return res.statusCode === 200 ? buf.subarray(start, end + 1) : buf;
}

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path below the endpoint, e.g. `/storage/v1/b/x/o`. */
  path: string;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  /** A body: bytes, or a stream factory with its length. */
  body?: Buffer | { length: number; open: () => Readable };
  agent?: MediaAgent;
  /** Socket idle timeout in ms (default 60,000). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Receives the response headers of a successful call (e.g. a resumable session's Location). */
  onHeaders?: (headers: http.IncomingHttpHeaders) => void;
  /** The success body carries nothing (opening a resumable session: GCS sends none, the emulator "OK"). */
  ignoreBody?: boolean;
}

/** One JSON API call; resolves with the parsed JSON body (or {} when empty), rejects with the HTTP status on non-2xx. */
export async function apiJson<T = any>(storage: Storage, req: ApiRequest): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) q.set(k, String(v));
  const userProject = (storage as any).userProject;
  if (userProject) q.set('userProject', userProject);
  const qs = q.toString();
  const url = `${endpointOf(storage)}${req.path}${qs ? `?${qs}` : ''}`;
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  const agent = req.agent ?? defaultAgent();
  const headers: Record<string, string> = {
    ...(await authHeaders(storage, url)),
    'user-agent': 'torchline-storage',
    ...req.headers,
  };
  const body = req.body;
  if (body) headers['content-length'] = String(Buffer.isBuffer(body) ? body.length : body.length);
  return new Promise<T>((resolve, reject) => {
    const r = mod.request(
      u,
      { method: req.method, headers, agent: u.protocol === 'https:' ? agent.https : agent.http, signal: req.signal, timeout: req.timeoutMs ?? 60_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          if (!res.complete) {
            reject(Object.assign(new Error('connection closed before the response ended'), { code: 'ECONNRESET' }));
            return;
          }
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            let message = text.slice(0, 300).replace(/\s+/g, ' ');
            try {
              message = JSON.parse(text)?.error?.message ?? message;
            } catch {
              /* not JSON */
            }
            reject(new StorageError(`HTTP ${status}: ${message || res.statusMessage}`, { status }));
            return;
          }
          req.onHeaders?.(res.headers);
          if (req.ignoreBody) {
            resolve({} as T);
            return;
          }
          try {
            resolve((text ? JSON.parse(text) : {}) as T);
          } catch {
            reject(Object.assign(new Error(`unparsable response from ${u.pathname}`), { code: 'ECONNRESET' }));
          }
        });
      },
    );
    r.on('timeout', () => r.destroy(Object.assign(new Error(`no response data for ${req.timeoutMs ?? 60_000} ms`), { code: 'ETIMEDOUT' })));
    r.on('error', reject);
    if (!body) r.end();
    else if (Buffer.isBuffer(body)) r.end(body);
    else {
      const s = body.open();
      s.on('error', (e) => r.destroy(e));
      s.pipe(r);
    }
  });
}

export interface RetryOptions {
  maxRetries?: number;
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  signal?: AbortSignal;
}

/** Runs fn until it succeeds, retrying retryable errors with exponential backoff and jitter. */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const max = opts.maxRetries ?? 6;
  const base = opts.retryDelayMs ?? 250;
  const cap = opts.maxRetryDelayMs ?? 20_000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (attempt >= max || !isRetryableError(err)) throw err;
      await sleep(Math.min(cap, base * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}
