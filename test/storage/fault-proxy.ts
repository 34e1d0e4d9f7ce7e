// A small HTTP proxy between the GCS client and the emulator that injects
// faults: connection resets (mid-body), 503s, truncated bodies, stalls, and
// added latency. Decisions come from a seeded generator so a failing run can
// be replayed.
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform } from 'node:stream';
import { rng } from '../support/seed';

export type FaultKind = 'reset' | 'status503' | 'status429' | 'truncate' | 'stall';

export interface FaultConfig {
  /** Probability of each fault per matching request. */
  reset?: number;
  status503?: number;
  status429?: number;
  truncate?: number;
  stall?: number;
  /** Inject at most this many faults, then forward untouched (default: no limit). */
  limit?: number;
  /** Which requests may be faulted (default: all). */
  match?: (req: http.IncomingMessage) => boolean;
  /** Added delay before forwarding each request (ms). */
  latencyMs?: number;
  /** Throttle response bodies to about this many bytes per second. */
  bandwidth?: number;
}

export interface FaultProxy {
  url: string;
  port: number;
  counts: Record<FaultKind | 'requests' | 'forwarded', number>;
  setFaults(cfg: FaultConfig): void;
  close(): Promise<void>;
}

/** mulberry32: small, fast, seeded (the tests' one generator). */
export const seededRandom: (seed: number) => () => number = rng;

function throttle(bytesPerSecond: number): Transform {
  const piece = 16 * 1024;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const send = async () => {
        for (let i = 0; i < chunk.length; i += piece) {
          this.push(chunk.subarray(i, i + piece));
          await new Promise((r) => setTimeout(r, (1000 * Math.min(piece, chunk.length - i)) / bytesPerSecond));
        }
      };
      send().then(() => cb(), cb);
    },
  });
}

export async function startFaultProxy(upstream: string, seed = 1): Promise<FaultProxy> {
  const up = new URL(upstream);
  const rand = seededRandom(seed);
  let cfg: FaultConfig = {};
  const counts: FaultProxy['counts'] = {
    requests: 0,
    forwarded: 0,
    reset: 0,
    status503: 0,
    status429: 0,
    truncate: 0,
    stall: 0,
  };
  const sockets = new Set<Socket>();
  let injected = 0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const pick = (req: http.IncomingMessage): FaultKind | undefined => {
    if (cfg.match && !cfg.match(req)) return undefined;
    if (cfg.limit !== undefined && injected >= cfg.limit) return undefined;
    const r = rand();
    let acc = 0;
    for (const k of ['reset', 'status503', 'status429', 'truncate', 'stall'] as FaultKind[]) {
      acc += cfg[k] ?? 0;
      if (r < acc) {
        injected++;
        return k;
      }
    }
    return undefined;
  };

  const server = http.createServer((req, res) => {
    counts.requests++;
    const fault = pick(req);
    if (fault) counts[fault]++;
    if (fault === 'status503' || fault === 'status429') {
      req.resume();
      const code = fault === 'status503' ? 503 : 429;
      res.writeHead(code, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ error: { code, message: 'injected fault' } }));
      return;
    }
    const forward = () => {
      const preq = http.request(
        {
          host: up.hostname,
          port: up.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent,
        },
        (pres) => {
          counts.forwarded++;
          if (!fault) {
            res.writeHead(pres.statusCode ?? 502, pres.headers);
            if (cfg.bandwidth) pres.pipe(throttle(cfg.bandwidth)).pipe(res);
            else pres.pipe(res);
            return;
          }
          // Faults mid-body: send headers and part of the body, then fail.
          res.writeHead(pres.statusCode ?? 502, pres.headers);
          const chunks: Buffer[] = [];
          pres.on('data', (c: Buffer) => chunks.push(c));
          pres.on('end', () => {
            const body = Buffer.concat(chunks);
            const cut = Math.floor(body.length * rand());
            res.write(body.subarray(0, cut));
            const sock = res.socket as Socket | null;
            if (fault === 'reset') setImmediate(() => sock?.resetAndDestroy());
            else if (fault === 'truncate') setImmediate(() => sock?.destroy());
            // 'stall': leave the connection open and silent; the client's
            // stall timeout (or close()) ends it.
          });
        },
      );
      preq.on('error', () => res.destroy());
      req.pipe(preq);
    };
    if (cfg.latencyMs) setTimeout(forward, cfg.latencyMs);
    else forward();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    counts,
    setFaults: (c) => {
      cfg = c;
      injected = 0;
    },
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      agent.destroy();
      await closed;
    },
  };
}
