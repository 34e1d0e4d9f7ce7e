// Resumable uploads that resume, and writes that are retried only because
// they are conditional, against gcs-protocol-server.ts: a server written from
// Google's documented resumable-upload and precondition protocols, since the
// Firebase emulator finalises a session on its first PUT and ignores
// ifGenerationMatch (see /work/shared/DESIGN.md "GCS in tests").
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import { storage as st } from '../../lib';
import { startProtocolServer, type ProtocolServer } from './gcs-protocol-server';
import { tmpDir } from './helpers';

const BUCKET = 'proto-bkt';
const MiB = 1024 * 1024;
let server: ProtocolServer;
let storage: Storage;
let dir: string;

const file = (name: string, size: number, seed = 1) => {
  const data = crypto.createHash('sha256').update(String(seed)).digest();
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i += data.length) data.copy(buf, i);
  buf.writeUInt32LE(seed, 0);
  const p = path.join(dir, name);
  fs.writeFileSync(p, buf);
  return { p, buf };
};
const fast = { retryDelayMs: 1, maxRetries: 6, progress: false } as const;

beforeAll(async () => {
  server = await startProtocolServer();
  storage = st.createStorage({ emulatorHost: server.url });
  dir = tmpDir('proto');
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => server.expireSessionsOnCut(false));

const delta = (before: ProtocolServer['stats']) => ({
  sessions: server.stats.sessionsOpened - before.sessionsOpened,
  queries: server.stats.statusQueries - before.statusQueries,
  bytes: server.stats.bytesReceived - before.bytesReceived,
  writes: server.stats.writes - before.writes,
});
const snap = () => ({ ...server.stats });

describe('resumable upload (Google protocol)', () => {
  it('resumes a cut PUT from the offset the server reports, in the same session', async () => {
    const { p, buf } = file('a.bin', 12 * MiB + 123);
    server.cutNextPut(5 * MiB + 1000);
    const before = snap();
    const r = await st.uploadOne(storage, p, BUCKET, 'ckpt/a.bin', fast);
    const d = delta(before);
    expect(r.status).toBe('uploaded');
    expect(server.objects.get(`${BUCKET}/ckpt/a.bin`)!.data.equals(buf)).toBe(true);
    expect(d.sessions).toBe(1);
    expect(d.queries).toBe(1);
    // The server kept 5 MiB (whole 256 KiB units): only the rest was sent again.
    expect(d.bytes).toBe(5 * MiB + 1000 + (buf.length - 5 * MiB));
  });

  it('a 308 without Range (nothing kept) restarts at byte 0 of the same session', async () => {
    const { p, buf } = file('b.bin', 6 * MiB, 2);
    server.cutNextPut(100 * 1024);
    const before = snap();
    await st.uploadOne(storage, p, BUCKET, 'ckpt/b.bin', fast);
    const d = delta(before);
    expect(server.objects.get(`${BUCKET}/ckpt/b.bin`)!.data.equals(buf)).toBe(true);
    expect(d.sessions).toBe(1);
    expect(d.bytes).toBe(100 * 1024 + buf.length);
  });

  it('a lost final response: the status query answers 200 and nothing is sent again', async () => {
    const { p, buf } = file('c.bin', 6 * MiB, 3);
    server.loseNextFinalResponse();
    const before = snap();
    const r = await st.uploadOne(storage, p, BUCKET, 'ckpt/c.bin', fast);
    const d = delta(before);
    expect(r.status).toBe('uploaded');
    expect(d).toEqual({ sessions: 1, queries: 1, bytes: buf.length, writes: 1 });
  });

  it('a session the server no longer knows (404) is replaced by a new one', async () => {
    const { p, buf } = file('d.bin', 6 * MiB, 4);
    server.expireSessionsOnCut(true);
    server.cutNextPut(3 * MiB);
    const before = snap();
    await st.uploadOne(storage, p, BUCKET, 'ckpt/d.bin', fast);
    const d = delta(before);
    expect(server.objects.get(`${BUCKET}/ckpt/d.bin`)!.data.equals(buf)).toBe(true);
    expect(d.sessions).toBe(2);
    expect(d.writes).toBe(1);
  });
});

describe('conditional writes (ifGenerationMatch)', () => {
  it('every write carries the generation read just before it (0: must not exist)', async () => {
    const { p } = file('e.bin', 1000, 5);
    server.stats.writeQueries.length = 0;
    await st.uploadOne(storage, p, BUCKET, 'w/e.bin', fast);
    const gen = server.objects.get(`${BUCKET}/w/e.bin`)!.generation;
    file('e.bin', 2000, 6);
    await st.uploadOne(storage, p, BUCKET, 'w/e.bin', fast);
    const { p: big } = file('big.bin', 6 * MiB, 7);
    await st.uploadOne(storage, big, BUCKET, 'w/big.bin', fast);
    expect(server.stats.writeQueries.map((q) => q.get('ifGenerationMatch'))).toEqual(['0', String(gen), '0']);
  });

  it('a retried write whose first attempt landed (response lost) is not written twice', async () => {
    const { p, buf } = file('f.bin', 5000, 8);
    server.loseNextFinalResponse();
    const before = snap();
    const r = await st.uploadOne(storage, p, BUCKET, 'w/f.bin', fast);
    expect(r.status).toBe('uploaded');
    expect(delta(before).writes).toBe(1);
    expect(server.objects.get(`${BUCKET}/w/f.bin`)!.data.equals(buf)).toBe(true);
  });

  it.each([
    ['multipart', 5000],
    ['resumable', 6 * MiB],
  ])('another writer between our read and our write wins (%s): nothing is overwritten', async (_kind, size) => {
    const { p } = file('g.bin', size, 9);
    const theirs = Buffer.from('written by someone else');
    server.beforeNextCommit(() => server.put(BUCKET, `w/g-${size}.bin`, theirs));
    const err = await st.uploadOne(storage, p, BUCKET, `w/g-${size}.bin`, fast).catch((e) => e);
    expect(err).toBeInstanceOf(st.StorageError);
    expect(err.message).toMatch(/changed while uploading .*not overwritten/);
    expect(err.status).toBe(412);
    expect(server.objects.get(`${BUCKET}/w/g-${size}.bin`)!.data.equals(theirs)).toBe(true);
  });
});
