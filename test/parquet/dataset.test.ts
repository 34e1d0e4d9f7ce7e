// ParquetImageDataset over tables in Spark's exact layout and schemas,
// written by the Python peer (pyarrow): both image sources, three codecs,
// pixels identical to reading the original files, corrupt row groups and
// undecodable images under both onError policies.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLoader, ManifestDataset, ParquetImageDataset, transforms as T } from '../../lib';
import type { Batch } from '../../lib/data';
import { makeImages, makeTable, photos, tmpDir, type WrittenTable } from './helpers';

const dirs: string[] = [];
const mk = (tag: string) => {
  const d = tmpDir(tag);
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const EVAL = [T.Resize(40), T.CenterCrop(32), T.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])];

async function all(loader: DataLoader): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader) out.push(b);
  return out;
}

/** The loader's samples as (dataset index -> float array, label). */
async function samples(loader: DataLoader): Promise<Map<number, { px: Buffer; label: number }>> {
  const m = new Map<number, { px: Buffer; label: number }>();
  for (const b of await all(loader)) {
    const ta = b.images.toTypedArray();
    const px = Buffer.from(ta.buffer, ta.byteOffset, ta.byteLength);
    const labels = b.labels.toArray();
    const per = px.length / b.indices.length;
    b.indices.forEach((idx, k) =>
      m.set(idx, { px: Buffer.from(px.subarray(k * per, (k + 1) * per)), label: Number(labels[k]) }),
    );
    b.images.dispose();
    b.labels.dispose();
  }
  return m;
}

/** Same pixels and labels as the same images read from their files, row for row. */
async function expectSameAsFiles(ds: ParquetImageDataset, rows: { file: string; label: number }[], w: WrittenTable) {
  const files = new ManifestDataset(
    w.order.map((i) => ({ uri: rows[i].file, label: rows[i].label })),
    { transform: EVAL },
  );
  const a = await samples(new DataLoader(ds, { transform: EVAL, batchSize: 5, numWorkers: 2 }));
  const b = await samples(new DataLoader(files, { batchSize: 5, numWorkers: 2 }));
  expect(a.size).toBe(rows.length);
  for (let i = 0; i < rows.length; i++) {
    expect(a.get(i)!.label, `label of row ${i}`).toBe(b.get(i)!.label);
    expect(a.get(i)!.px.equals(b.get(i)!.px), `pixels of row ${i} (${rows[w.order[i]].file})`).toBe(true);
  }
}

describe('binaryFile tables', () => {
  const jpegs = photos().slice(0, 18);
  const rows = jpegs.map((file, i) => ({ file, label: i % 3 }));

  for (const compression of ['snappy', 'gzip', 'zstd'] as const) {
    it(`${compression}: Spark's layout is listed, and every row decodes as its original file does`, async () => {
      const out = path.join(mk('pq-bin'), 'table');
      const w = makeTable({ out, kind: 'binaryFile', compression, rowGroupRows: 2, filesPerPartition: 2, rows });
      const ds = await ParquetImageDataset.open(out);
      const d = ds.describe();
      expect(d.kind).toBe('binaryFile');
      expect(d.files).toBe(6); // _SUCCESS and the .crc companions are hidden
      expect(d.rows).toBe(18);
      expect(d.rowGroups).toBe(w.files.reduce((n, f) => n + f.rowGroups.length, 0));
      expect(d.partitionColumns).toEqual([{ name: 'label', type: 'int' }]);
      expect(d.partitions.map((p) => [p.values.label, p.rows])).toEqual([
        [0, 6],
        [1, 6],
        [2, 6],
      ]);
      expect(ds.labelColumn).toBe('label');
      expect(ds.classes).toEqual(['0', '1', '2']);
      await expectSameAsFiles(ds, rows, w);
    });
  }

  it('an undecodable image is skipped or raised as onError says; a corrupt row group skips all its rows, logged once', async () => {
    const out = path.join(mk('pq-bad'), 'table');
    // part file 2 is label=1's first file; its row group 0 is garbled on disk.
    const w = makeTable({
      out,
      kind: 'binaryFile',
      rowGroupRows: 2,
      filesPerPartition: 2,
      rows,
      undecodable: [3],
      corruptRowGroup: { partFile: 2, rowGroup: 0 },
    });
    const ds = await ParquetImageDataset.open(out);
    const logs: string[] = [];
    const loader = new DataLoader(ds, {
      transform: EVAL,
      batchSize: 4,
      numWorkers: 2,
      onError: 'skip',
      log: (m) => logs.push(m),
    });
    const got = await samples(loader);
    const corruptRows = w.files[2].rows.slice(0, 2);
    const lost = new Set([3, ...corruptRows]);
    expect(got.size).toBe(rows.length - lost.size);
    for (const [idx] of got) expect(lost.has(w.order[idx])).toBe(false);
    expect(logs.filter((l) => /row group 0/.test(l) && /cannot read/.test(l))).toHaveLength(1);
    expect(logs.some((l) => l.includes(path.basename(rows[3].file)))).toBe(true);
    expect(loader.skipped.map((s) => s.index).sort((a, b) => a - b)).toHaveLength(2);

    // raise: the first bad sample rejects the iteration with its name and reason.
    const strict = new DataLoader(ds, { transform: EVAL, batchSize: 4, numWorkers: 2 });
    await expect(all(strict)).rejects.toThrow(/cannot load .*(row group 0|\.jpg)/);
  });
});

describe('image tables', () => {
  let pngs: { file: string; mode: string }[];
  beforeAll(() => {
    pngs = makeImages(mk('pq-png'), 16, 7);
  });

  it('BGR(A) and grey rows give the pixels of decoding the original PNGs, bit for bit', async () => {
    const rows = pngs.map((p, i) => ({ file: p.file, label: i % 2 }));
    const out = path.join(mk('pq-img'), 'table');
    const w = makeTable({ out, kind: 'image', rowGroupRows: 3, rows });
    const ds = await ParquetImageDataset.open(out);
    expect(ds.describe().kind).toBe('image');
    const first = await ds.get(0);
    expect(first.source).toHaveProperty('bgr');
    expect([0, 16, 24]).toContain((first.source as { mode: number }).mode);
    await expectSameAsFiles(ds, rows, w);
    // uint8 output and a random crop go through the same native transforms.
    const rrc = [T.RandomResizedCrop(24), T.RandomHorizontalFlip()];
    const files = new ManifestDataset(
      w.order.map((i) => ({ uri: rows[i].file, label: rows[i].label })),
      { transform: rrc },
    );
    const a = await samples(new DataLoader(ds, { transform: rrc, batchSize: 4, seed: 5, uint8: true }));
    const b = await samples(new DataLoader(files, { batchSize: 4, seed: 5, uint8: true }));
    for (let i = 0; i < rows.length; i++) expect(a.get(i)!.px.equals(b.get(i)!.px), `row ${i}`).toBe(true);
  });

  it("Spark's invalid image rows (mode -1, no data) are skipped or raised", async () => {
    const rows = pngs.slice(0, 6).map((p, i) => ({ file: p.file, label: i % 2 }));
    const out = path.join(mk('pq-inv'), 'table');
    const w = makeTable({
      out,
      kind: 'image',
      rowGroupRows: 4,
      rows,
      undecodable: [4],
      partitionBy: false,
      compression: 'zstd',
    });
    // No partition folders: the label is the `label` field of the rows.
    await expect(ParquetImageDataset.open(out, { labelColumn: 'klass' })).rejects.toThrow(/no column klass/);
    const ds = await ParquetImageDataset.open(out);
    expect(ds.labelColumn).toBe('label');
    expect(Array.from(ds.targets)).toEqual(w.order.map((i) => rows[i].label));
    const logs: string[] = [];
    const got = await samples(
      new DataLoader(ds, { transform: EVAL, batchSize: 4, onError: 'skip', log: (m) => logs.push(m) }),
    );
    expect(got.size).toBe(5);
    expect(got.has(w.order.indexOf(4))).toBe(false);
    expect(logs.join('\n')).toMatch(/Spark could not decode this image/);
    await expect(all(new DataLoader(ds, { transform: EVAL, batchSize: 4 }))).rejects.toThrow(/invalid image row/);
  });
});

describe('errors', () => {
  it('a folder that is not a Spark image table says what it found', async () => {
    const d = mk('pq-notpq');
    fs.writeFileSync(path.join(d, 'part-00000.parquet'), 'not parquet at all');
    await expect(ParquetImageDataset.open(d)).rejects.toThrow(/not a Parquet file/);
    await expect(ParquetImageDataset.open(path.join(d, 'missing'))).rejects.toThrow(/does not exist/);
  });
});
