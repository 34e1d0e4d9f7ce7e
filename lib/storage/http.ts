// The GCS JSON API over Node's own HTTP client. Every request torchline makes
// goes through here; @google-cloud/storage provides only the configuration:
// endpoint (or STORAGE_EMULATOR_HOST), credentials and auth headers (none for
// an emulator, as the library does), user project, and its CRC32C class.
// Why not the library's own requests: its media and list streams (7.x) neither
// end nor error when a connection is reset in the middle of a body with a
// Content-Length, so a transfer waits forever (pinned by
// test/storage/library.test.ts against the fault proxy: when an upgrade fixes
// it, that test fails and says so). Node's IncomingMessage reports both.
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import type { Storage } from '@google-cloud/storage';
import { StorageError } from './client';

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

/**
 * GETs the stored bytes of one object; rejects on non-2xx with the status.
 * Asks for `Accept-Encoding: gzip`, as the client library does: an object
 * stored with `Content-Encoding: gzip` then comes back as stored (its size,
 * MD5 and CRC32C are those of the stored bytes, and Range applies to them),
 * where `identity` would make GCS decompress it on the fly, ignore Range and
 * send bytes that no stored hash describes. Node's client never gunzips by
 * itself: the caller sees the response's content-encoding and decides.
 */
export async function openMedia(storage: Storage, req: MediaRequest): Promise<MediaResponse> {
  const base = endpointOf(storage);
  const q = new URLSearchParams({ alt: 'media' });
  if (req.generation) q.set('generation', req.generation);
  const userProject = (storage as any).userProject;
  if (userProject) q.set('userProject', userProject);
  const url = `${base}/download/storage/v1/b/${encodeURIComponent(req.bucket)}/o/${encodeURIComponent(req.name)}?${q}`;
  const headers: Record<string, string> = {
    ...(await authHeaders(storage, url)),
    'accept-encoding': 'gzip',
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
    r.on('timeout', () =>
      r.destroy(Object.assign(new Error('timed out waiting for response headers'), { code: 'ETIMEDOUT' })),
    );
    r.on('error', reject);
    r.end();
  });
}

/**
 * Reads stored bytes [start, end] of an object into memory (header reads).
 * `gzip` is true when the response carries `Content-Encoding: gzip`, i.e. the
 * bytes are (part of) a gzip stream.
 */
export async function readRange(
  storage: Storage,
  bucket: string,
  name: string,
  start: number,
  end: number,
  generation?: string,
): Promise<{ bytes: Buffer; gzip: boolean }> {
  const { res } = await openMedia(storage, { bucket, name, start, end, generation });
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  if (!res.complete) throw Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' });
  const buf = Buffer.concat(chunks);
  const gzip = String(res.headers['content-encoding'] ?? '').toLowerCase() === 'gzip';
  // A server that ignores Range sends everything: keep the asked-for slice.
  return { bytes: res.statusCode === 200 ? buf.subarray(start, end + 1) : buf, gzip };
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
}

export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/**
 * One JSON API call; resolves with the status, headers and body text of any
 * complete response (the caller judges the status), rejects when the
 * connection fails or closes before the response ends.
 */
export async function apiRequest(storage: Storage, req: ApiRequest): Promise<ApiResponse> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) q.set(k, String(v));
  const userProject = (storage as any).userProject;
  if (userProject && !q.has('userProject')) q.set('userProject', userProject);
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
  headers['content-length'] = String(body ? body.length : 0);
  return new Promise<ApiResponse>((resolve, reject) => {
    const r = mod.request(
      u,
      {
        method: req.method,
        headers,
        agent: u.protocol === 'https:' ? agent.https : agent.http,
        signal: req.signal,
        timeout: req.timeoutMs ?? 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          if (!res.complete) {
            reject(Object.assign(new Error('connection closed before the response ended'), { code: 'ECONNRESET' }));
            return;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    r.on('timeout', () =>
      r.destroy(Object.assign(new Error(`no response data for ${req.timeoutMs ?? 60_000} ms`), { code: 'ETIMEDOUT' })),
    );
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

/** The StorageError for a non-2xx response: the status and the server's message. */
export function httpError(res: ApiResponse, statusMessage?: string): StorageError {
  let message = res.text.slice(0, 300).replace(/\s+/g, ' ');
  try {
    message = JSON.parse(res.text)?.error?.message ?? message;
  } catch {
    /* not JSON */
  }
  return new StorageError(`HTTP ${res.status}: ${message || statusMessage || http.STATUS_CODES[res.status] || ''}`, {
    status: res.status,
  });
}

/** Parses a JSON body ({} when empty); a body that is not JSON counts as a broken response (retryable). */
export function parseJsonBody<T = any>(res: ApiResponse, what: string): T {
  try {
    return (res.text ? JSON.parse(res.text) : {}) as T;
  } catch {
    throw Object.assign(new Error(`unparsable response from ${what}`), { code: 'ECONNRESET' });
  }
}

/** One JSON API call; resolves with the parsed JSON body (or {} when empty), rejects with the HTTP status on non-2xx. */
export async function apiJson<T = any>(storage: Storage, req: ApiRequest): Promise<T> {
  const res = await apiRequest(storage, req);
  if (res.status < 200 || res.status >= 300) throw httpError(res);
  return parseJsonBody<T>(res, req.path);
}
