// Object bytes over the JSON API's media endpoint with Node's own HTTP
// client. The client library's read stream (7.x, node-fetch underneath)
// neither ends nor errors when a connection is reset or cut short in the
// middle of a body with a Content-Length, so a download would wait forever;
// Node's IncomingMessage reports both. Auth headers come from the client's
// own auth (none for an emulator, as the library does).
import * as http from 'node:http';
import * as https from 'node:https';
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
