// A local HTTP file server standing in for download.pytorch.org: serves
// files by URL path, honours Range requests, counts GETs per path, and can
// misbehave on purpose (flip a byte, cut the connection once, go slowly).
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Served {
  file: string;
  /** Flip one byte in the middle of every response body. */
  corrupt?: boolean;
  /** Destroy the socket after this many body bytes, on the first GET only. */
  cutOnceAfter?: number;
  /** Pause this long (ms) after every 1 MiB, so concurrent clients overlap. */
  delayPerMiB?: number;
}

export interface FileServer {
  url: string;
  routes: Map<string, Served>;
  gets: Map<string, number>;
  ranges: string[];
  close(): Promise<void>;
}

export async function startFileServer(): Promise<FileServer> {
  const routes = new Map<string, Served>();
  const gets = new Map<string, number>();
  const ranges: string[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer(async (req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    const r = routes.get(p);
    if (req.method !== 'GET' || !r) {
      res.writeHead(404).end('not found');
      return;
    }
    const n = (gets.get(p) ?? 0) + 1;
    gets.set(p, n);
    const data = fs.readFileSync(r.file);
    if (r.corrupt) data[data.length >> 1] ^= 0xff;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    if (m) {
      ranges.push(String(req.headers.range));
      start = Number(m[1]);
      res.writeHead(206, {
        'content-length': data.length - start,
        'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
      });
    } else res.writeHead(200, { 'content-length': data.length });
    const MiB = 1 << 20;
    for (let off = start; off < data.length; off += MiB) {
      const chunk = data.subarray(off, Math.min(data.length, off + MiB));
      if (r.cutOnceAfter !== undefined && n === 1 && off - start + chunk.length > r.cutOnceAfter) {
        res.write(chunk.subarray(0, r.cutOnceAfter - (off - start)));
        await new Promise((ok) => setTimeout(ok, 20));
        req.socket.destroy();
        return;
      }
      if (!res.write(chunk)) await new Promise((ok) => res.once('drain', ok));
      if (r.delayPerMiB) await new Promise((ok) => setTimeout(ok, r.delayPerMiB));
      if (res.destroyed) return;
    }
    res.end();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    routes,
    gets,
    ranges,
    close: () =>
      new Promise((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  };
}
