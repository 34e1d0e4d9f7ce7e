// A table in the GCS emulator, read by byte range through a proxy that resets
// connections, cuts bodies short and answers 503: the same samples as the
// local copy, every row group fetched once per epoch, no more row groups in
// memory than the bound, and rank shares that partition the table.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Storage } from '@google-cloud/storage';
import {
  DataLoader,
  ParquetImageDataset,
  startGcsEmulator,
  storage as st,
  transforms as T,
  type GcsEmulator,
} from '../../lib';
import { startFaultProxy, type FaultProxy } from '../storage/fault-proxy';
import { seedObjects, walk } from '../storage/helpers';
import { makeTable, photos, tmpDir } from './helpers';

const SEED = Number(process.env.TEST_SEED ?? 4242);
const BUCKET = 'pq-bkt';
let emu: GcsEmulator;
let storage: Storage;
let proxy: FaultProxy;
let viaProxy: Storage;
let local: string;
const EVAL = [T.Resize(36), T.CenterCrop(32)];

beforeAll(async () => {
  emu = await startGcsEmulator();
  storage = st.createStorage({ emulatorHost: emu.url });
  proxy = await startFaultProxy(emu.url, SEED);
  viaProxy = st.createStorage({ emulatorHost: proxy.url, maxRetries: 8, maxRetryDelay: 0.05 });
  local = path.join(tmpDir('pq-gcs'), 'table');
  const jpegs = photos().slice(0, 30);
  makeTable({
    out: local,
    kind: 'binaryFile',
    rowGroupRows: 3,
    filesPerPartition: 2,
    rows: jpegs.map((file, i) => ({ file, label: i % 3 })),
  });
  await seedObjects(
    storage,
    BUCKET,
    walk(local).map((rel) => ({ name: `tables/bin/${rel}`, data: fs.readFileSync(path.join(local, rel)) })),
  );
});

afterAll(async () => {
  await proxy?.close();
  await emu?.stop();
  if (local) fs.rmSync(path.dirname(local), { recursive: true, force: true });
});

async function pixels(loader: DataLoader): Promise<{ indices: number[]; bytes: Buffer }> {
  const indices: number[] = [];
  const parts: Buffer[] = [];
  for await (const b of loader) {
    indices.push(...b.indices);
    const ta = b.images.toTypedArray();
    parts.push(Buffer.from(ta.buffer, ta.byteOffset, ta.byteLength));
    b.images.dispose();
    b.labels.dispose();
  }
  return { indices, bytes: Buffer.concat(parts) };
}

describe(`Parquet from gs:// (fault seed ${SEED})`, () => {
  it('lists like the local copy and streams the same samples through resets, short bodies and 503s', async () => {
    const ref = await ParquetImageDataset.open(local, { shuffleBuffer: 2 });
    const ds = await ParquetImageDataset.open(`gs://${BUCKET}/tables/bin/`, {
      storage: viaProxy,
      shuffleBuffer: 2,
      readAhead: 2,
    });
    expect(ds.describe().rowGroups).toBe(ref.describe().rowGroups);
    expect(ds.describe().files).toBe(6);
    expect(Array.from(ds.targets)).toEqual(Array.from(ref.targets));
    const isMedia = (req: { url?: string }) => (req.url ?? '').includes('alt=media');
    proxy.setFaults({ reset: 0.15, truncate: 0.15, status503: 0.15, match: isMedia, latencyMs: 5 });
    const opts = { batchSize: 4, shuffle: true, seed: 3, transform: EVAL, numWorkers: 2 };
    const a = await pixels(new DataLoader(ds, opts));
    proxy.setFaults({});
    const b = await pixels(new DataLoader(ref, opts));
    expect(proxy.counts.reset + proxy.counts.truncate + proxy.counts.status503).toBeGreaterThan(0);
    expect(a.indices).toEqual(b.indices);
    expect(a.indices.length).toBe(30);
    expect(a.bytes.equals(b.bytes)).toBe(true);
  });

  it('reads each row group once per epoch, ahead of the loader, holding at most the bound', async () => {
    const ds = await ParquetImageDataset.open(`gs://${BUCKET}/tables/bin/`, {
      storage,
      shuffleBuffer: 2,
      readAhead: 1,
    });
    expect(ds.maxResidentRowGroups).toBe(5);
    const sampler = ds.sampler({ shuffle: true, seed: 9 });
    const order = sampler.indices(0);
    const reader = ds.openEpoch(order);
    let peakNow = 0;
    for (let i = 0; i < order.length; i += 4) {
      const items = await reader.getItems(Array.from(order.slice(i, i + 4)));
      expect(items.every((it) => it.source instanceof Uint8Array && it.source.length > 0)).toBe(true);
      peakNow = Math.max(peakNow, reader.residentCount);
    }
    expect(reader.fetches).toBe(ds.table.rowGroups.length);
    expect(reader.peakResident).toBeLessThanOrEqual(ds.maxResidentRowGroups);
    expect(reader.residentCount).toBe(0); // every row handed out: nothing kept
    reader.close();
  });

  it('ranks read disjoint row-group shares that cover the table, with equal batch counts', async () => {
    const world = 3;
    const seen: number[][] = [];
    for (let rank = 0; rank < world; rank++) {
      const ds = await ParquetImageDataset.open(`gs://${BUCKET}/tables/bin/`, { storage, rank, worldSize: world });
      const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 1, transform: EVAL, numWorkers: 2 });
      seen.push((await pixels(loader)).indices);
    }
    expect(new Set(seen.map((s) => s.length)).size).toBe(1);
    const all = new Set(seen.flat());
    expect(all.size).toBe(30);
  });
});
