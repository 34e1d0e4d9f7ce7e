// A small in-memory server that follows Google's JSON-API upload protocols as
// documented (https://cloud.google.com/storage/docs/performing-resumable-uploads,
// .../docs/json_api/v1/objects/insert, .../docs/request-preconditions), for the
// parts the Firebase emulator lacks: multi-request resumable sessions
// (`Content-Range: bytes */N` status queries answered 308 + `Range: bytes=0-K`,
// 200/201 once complete, 404 for an unknown session) and `ifGenerationMatch`
// (412 when the live generation differs; 0 means "must not exist"). Like GCS,
// a session keeps what it received of an interrupted PUT, rounded down to a
// multiple of 256 KiB, so a client must resume from the server's offset, not
// its own. Faults are injected one request at a time.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CRC32C } from '@google-cloud/storage';

interface StoredObject {
  data: Buffer;
  generation: number;
  md5Hash: string;
  crc32c: string;
}

interface Session {
  bucket: string;
  name: string;
  size: number;
  ifGenerationMatch?: string;
  md5Hash?: string;
  crc32c?: string;
  received: Buffer[];
  persisted: number;
  done?: Record<string, unknown>;
}

export interface ProtocolServer {
  url: string;
  objects: Map<string, StoredObject>;
  stats: {
    sessionsOpened: number;
    statusQueries: number;
    bytesReceived: number;
    writes: number;
    writeQueries: URLSearchParams[];
  };
  /** The next data PUT is cut (socket destroyed) after this many body bytes. */
  cutNextPut(afterBytes: number): void;
  /** The next request that completes an object is committed, then its connection destroyed before any response. */
  loseNextFinalResponse(): void;
  /** Sessions are forgotten when their PUT is cut (the status query then answers 404). */
  expireSessionsOnCut(on: boolean): void;
  /** Runs once before the next write is committed (a concurrent writer). */
  beforeNextCommit(fn: () => void): void;
  /** Stores an object as another writer would. */
  put(bucket: string, name: string, data: Buffer): void;
  close(): Promise<void>;
}

const GRANULE = 256 * 1024;

function digests(data: Buffer) {
  const crc = new CRC32C();
  crc.update(data);
  return { md5Hash: crypto.createHash('md5').update(data).digest('base64'), crc32c: crc.toString() };
}

export async function startProtocolServer(): Promise<ProtocolServer> {
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, Session>();
  const stats: ProtocolServer['stats'] = {
    sessionsOpened: 0,
    statusQueries: 0,
    bytesReceived: 0,
    writes: 0,
    writeQueries: [],
  };
  let cutAfter: number | undefined;
  let loseFinal = false;
  let expireOnCut = false;
  let beforeCommit: (() => void) | undefined;
  let generation = 1000;
  const sockets = new Set<Socket>();
  const key = (b: string, n: string) => `${b}/${n}`;

  const meta = (bucket: string, name: string, o: StoredObject) => ({
    kind: 'storage#object',
    bucket,
    name,
    size: String(o.data.length),
    generation: String(o.generation),
    md5Hash: o.md5Hash,
    crc32c: o.crc32c,
  });
  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const error = (res: http.ServerResponse, status: number, message: string) =>
    json(res, status, { error: { code: status, message } });
  const precondition = (bucket: string, name: string, want: string | undefined): boolean => {
    if (want === undefined) return true;
    const live = objects.get(key(bucket, name));
    return String(live?.generation ?? 0) === want;
  };
  /** Commits an object, or answers 412/400 as GCS does; returns the response body or undefined after answering. */
  const commit = (
    res: http.ServerResponse,
    bucket: string,
    name: string,
    data: Buffer,
    want: string | undefined,
    md5?: string,
    crc?: string,
  ): Record<string, unknown> | undefined => {
    beforeCommit?.();
    beforeCommit = undefined;
    if (!precondition(bucket, name, want)) {
      error(res, 412, 'At least one of the pre-conditions you specified did not hold.');
      return undefined;
    }
    const d = digests(data);
    if ((md5 && md5 !== d.md5Hash) || (crc && crc !== d.crc32c)) {
      error(res, 400, 'Provided MD5 hash / CRC32C does not match the data');
      return undefined;
    }
    const o = { data, generation: ++generation, ...d };
    objects.set(key(bucket, name), o);
    stats.writes++;
    const body = meta(bucket, name, o);
    if (loseFinal) {
      loseFinal = false;
      res.socket?.destroy();
      return body;
    }
    json(res, 200, body);
    return body;
  };

  // Counts only the data PUTs' bodies in stats.bytesReceived.
  const readBody = (
    req: http.IncomingMessage,
    limit?: number,
    onCut?: (got: Buffer[]) => void,
    count = false,
  ): Promise<Buffer | undefined> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let n = 0;
      let cut = false;
      req.on('data', (c: Buffer) => {
        if (cut) return;
        if (limit !== undefined && n + c.length >= limit) {
          chunks.push(c.subarray(0, limit - n));
          if (count) stats.bytesReceived += limit - n;
          cut = true;
          onCut?.(chunks);
          req.socket.destroy();
          resolve(undefined);
          return;
        }
        chunks.push(c);
        n += c.length;
        if (count) stats.bytesReceived += c.length;
      });
      req.on('end', () => !cut && resolve(Buffer.concat(chunks)));
      req.on('error', () => !cut && resolve(undefined));
    });

  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const q = u.searchParams;
    let m: RegExpExecArray | null;
    if (req.method === 'GET' && (m = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(u.pathname))) {
      const [bucket, name] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
      const o = objects.get(key(bucket, name));
      if (!o) return error(res, 404, 'No such object');
      return json(res, 200, meta(bucket, name, o));
    }
    if ((m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(u.pathname))) {
      const bucket = decodeURIComponent(m[1]);
      if (req.method === 'POST') stats.writeQueries.push(new URLSearchParams(q));
      if (req.method === 'POST' && q.get('uploadType') === 'multipart') {
        const body = await readBody(req);
        if (!body) return;
        const boundary = /boundary=([^;]+)/.exec(String(req.headers['content-type']))?.[1];
        if (!boundary) return error(res, 400, 'no boundary');
        const text = body.toString('latin1');
        const first = text.indexOf('\r\n\r\n');
        const metaEnd = text.indexOf(`\r\n--${boundary}`, first);
        const md = JSON.parse(text.slice(first + 4, metaEnd));
        const dataStart = text.indexOf('\r\n\r\n', metaEnd + 2) + 4;
        const dataEnd = text.lastIndexOf(`\r\n--${boundary}--`);
        commit(
          res,
          bucket,
          md.name,
          body.subarray(dataStart, dataEnd),
          q.get('ifGenerationMatch') ?? undefined,
          md.md5Hash,
          md.crc32c,
        );
        return;
      }
      if (req.method === 'POST' && q.get('uploadType') === 'resumable') {
        const body = await readBody(req);
        if (!body) return;
        const md = body.length ? JSON.parse(body.toString('utf8')) : {};
        const name = q.get('name') ?? md.name;
        const want = q.get('ifGenerationMatch') ?? undefined;
        if (!precondition(bucket, name, want))
          return error(res, 412, 'At least one of the pre-conditions you specified did not hold.');
        const id = crypto.randomBytes(8).toString('hex');
        sessions.set(id, {
          bucket,
          name,
          size: Number(req.headers['x-upload-content-length']),
          ifGenerationMatch: want,
          md5Hash: md.md5Hash,
          crc32c: md.crc32c,
          received: [],
          persisted: 0,
        });
        stats.sessionsOpened++;
        const loc = `http://${req.headers.host}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
        res.writeHead(200, { location: loc, 'content-length': '0' });
        return res.end();
      }
      if (req.method === 'PUT' && q.get('upload_id')) {
        const id = q.get('upload_id')!;
        const s = sessions.get(id);
        const range = String(req.headers['content-range'] ?? '');
        if (!s) {
          req.resume();
          return error(res, 404, 'No such upload session');
        }
        const status = (r: http.ServerResponse) => {
          if (s.done) return json(r, 200, s.done);
          r.writeHead(
            308,
            s.persisted > 0
              ? { range: `bytes=0-${s.persisted - 1}`, 'content-length': '0' }
              : { 'content-length': '0' },
          );
          r.end();
        };
        let mm: RegExpExecArray | null;
        if ((mm = /^bytes \*\/(\d+)$/.exec(range))) {
          req.resume();
          stats.statusQueries++;
          return status(res);
        }
        if (!(mm = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(range))) {
          req.resume();
          return error(res, 400, `bad Content-Range ${JSON.stringify(range)}`);
        }
        const [start, end, total] = [Number(mm[1]), Number(mm[2]), Number(mm[3])];
        if (start !== s.persisted || total !== s.size) {
          req.resume();
          return error(res, 400, `chunk starts at ${start}, the session holds ${s.persisted} of ${s.size}`);
        }
        const limit = cutAfter;
        cutAfter = undefined;
        const body = await readBody(
          req,
          limit,
          (got) => {
            // What GCS keeps of an interrupted request: whole 256 KiB units.
            const n = Buffer.concat(got).length;
            const keep = Math.floor(n / GRANULE) * GRANULE;
            s.received.push(Buffer.concat(got).subarray(0, keep));
            s.persisted += keep;
            if (expireOnCut) sessions.delete(id);
          },
          true,
        );
        if (!body) return;
        if (body.length !== end - start + 1) return error(res, 400, 'body length does not match Content-Range');
        s.received.push(body);
        s.persisted += body.length;
        if (s.persisted < s.size) return status(res);
        const done = commit(res, s.bucket, s.name, Buffer.concat(s.received), s.ifGenerationMatch, s.md5Hash, s.crc32c);
        if (done) s.done = done;
        return;
      }
    }
    req.resume();
    error(res, 400, `not implemented: ${req.method} ${u.pathname}`);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    objects,
    stats,
    cutNextPut: (n) => (cutAfter = n),
    loseNextFinalResponse: () => (loseFinal = true),
    expireSessionsOnCut: (on) => (expireOnCut = on),
    beforeNextCommit: (fn) => (beforeCommit = fn),
    put: (bucket, name, data) => objects.set(key(bucket, name), { data, generation: ++generation, ...digests(data) }),
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
