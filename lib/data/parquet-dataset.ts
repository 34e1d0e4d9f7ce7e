// ParquetImageDataset: the rows of a Spark `image` or `binaryFile` table as
// DataLoader samples. Rows are read a row group at a time (one byte-range
// read of the columns needed, then hyparquet decodes it) and only while the
// loader needs them:
//
//   - A DataLoader iteration announces its order (openEpoch); the reader
//     fetches the row groups that order needs next, up to `readAhead`
//     (default shuffleBuffer: the whole next window) ahead of the furthest one asked for, and drops a row group once every row the
//     order takes from it has been handed out.
//   - At most `maxResidentRowGroups` row groups (default
//     2 * shuffleBuffer + readAhead) are held or in flight; past that the
//     least recently used one not needed by a pending batch is dropped (and
//     read again if asked for later). A batch's own row groups are always
//     read, so the bound is max(maxResidentRowGroups, row groups of the
//     batches in flight). Memory is that many row groups' decoded columns:
//     Spark's default row group is 128 MiB, so ~1.5 GiB with the defaults (12);
//     lower shuffleBuffer / readAhead or write smaller row groups
//     (parquet.block.size) to use less.
//
// A row group that cannot be read (corrupt pages, bad compression) makes
// every row of it an error sample: skipped (logged once per row group) or
// raised, as the loader's onError says. A row whose image cannot be decoded
// fails alone, like a bad file in a folder.
import type { Storage } from '@google-cloud/storage';
import type { LocationLike } from '../storage/location';
import { mapLimit } from '../storage/pool';
import type { PartitionValue } from '../storage/spark';
import { mapLabels, type DataItem, type Dataset, type EpochReader, type LabeledOptions } from './datasets';
import { parquetLib, rangeBuffer } from './parquet-source';
import { RowGroupSampler, type RowGroupSamplerOptions } from './parquet-sampler';
import { describeTable, openParquetTable, rowGroupRange, type ParquetTable, type RowGroupInfo } from './parquet-table';
import type { Transform } from './transforms';

export interface ParquetDatasetOptions extends LabeledOptions {
  /**
   * Where the label is: a partition column (`label=3/` folders) or a field of
   * the files (top-level, or dotted inside a struct). Default: the only
   * partition column, else a field named `label`.
   */
  labelColumn?: string;
  storage?: Storage;
  /** Row groups shuffled together by the default sampler (default 4). */
  shuffleBuffer?: number;
  /** Row groups fetched ahead of the furthest one the loader asked for (default shuffleBuffer). */
  readAhead?: number;
  /** Upper bound on row groups held or in flight (default 2 * shuffleBuffer + readAhead). */
  maxResidentRowGroups?: number;
  /** With data-parallel training: this process's share of the row groups (see RowGroupSampler). */
  rank?: number;
  worldSize?: number;
  /** Spark's pathGlobFilter on part-file names. */
  pathGlobFilter?: string;
  /** Footers / label columns read at once (default 16). */
  concurrency?: number;
}

type RowLabel = { kind: 'partition'; name: string } | { kind: 'field'; path: string[] };

function labelValue(v: unknown, where: string): string | number {
  if (typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < 0n) throw new Error(`label ${v} of ${where} is out of range`);
    return Number(v);
  }
  if (v === null || v === undefined) throw new Error(`${where} has no label (null)`);
  throw new Error(`label of ${where} must be an integer or a string, got ${typeof v}`);
}

interface LoadedGroup {
  where: string;
  items?: DataItem[];
  error?: string;
}

/** Decodes one row group's needed columns into loader items. */
async function readGroup(ds: ParquetImageDataset, g: RowGroupInfo): Promise<LoadedGroup> {
  const t = ds.table;
  const f = t.files[g.file];
  const where = `${f.path} row group ${g.index}`;
  try {
    const [start, end] = rowGroupRange(f.metadata, g.index, ds.readColumns);
    const bytes = await f.source.read(start, end);
    const { parquetRead, compressors } = await parquetLib();
    let rows: Record<string, any>[] = [];
    await parquetRead({
      file: rangeBuffer(f.source, start, bytes),
      metadata: f.metadata,
      rowStart: g.fileRow,
      rowEnd: g.fileRow + g.rows,
      columns: ds.readColumns,
      utf8: false,
      compressors,
      rowFormat: 'object',
      onComplete: (r) => (rows = r),
    });
    if (rows.length !== g.rows) throw new Error(`decoded ${rows.length} rows, the footer says ${g.rows}`);
    const items = rows.map((row, k): DataItem => {
      const index = g.firstRow + k;
      const label = ds.targets[index];
      if (t.kind === 'image') {
        const im = row.image;
        const name = `${im?.origin ?? '(no origin)'} [${where}, row ${k}]`;
        if (!im) return { source: new Uint8Array(0), label, name, error: 'the image struct is null' };
        if (!(im.data instanceof Uint8Array))
          return { source: new Uint8Array(0), label, name, error: 'the image has no pixel data' };
        return { source: { bgr: im.data, width: im.width, height: im.height, mode: im.mode }, label, name };
      }
      const name = `${typeof row.path === 'string' ? row.path : '(no path)'} [${where}, row ${k}]`;
      if (!(row.content instanceof Uint8Array))
        return { source: new Uint8Array(0), label, name, error: 'content is null' };
      return { source: row.content, label, name };
    });
    return { where, items };
  } catch (err) {
    return { where, error: `cannot read ${where}: ${(err as Error).message}` };
  }
}

interface Resident {
  promise: Promise<LoadedGroup>;
  pins: number;
  lastUse: number;
}

/** Row groups in memory for one iteration (or for direct getItems calls, without an order). */
class RowGroupReader implements EpochReader {
  private readonly resident = new Map<number, Resident>();
  private readonly remaining?: Int32Array;
  private readonly sequence: number[] = [];
  private readonly rankInSequence?: Int32Array;
  private clock = 0;
  private closed = false;
  /** Most row groups held at once (tests check the bound). */
  peakResident = 0;
  fetches = 0;

  constructor(
    private readonly ds: ParquetImageDataset,
    order?: ArrayLike<number>,
  ) {
    if (order) {
      const n = ds.table.rowGroups.length;
      this.remaining = new Int32Array(n);
      this.rankInSequence = new Int32Array(n).fill(-1);
      for (let i = 0; i < order.length; i++) {
        const g = ds.groupOf(order[i]);
        if (this.remaining[g]++ === 0) {
          this.rankInSequence[g] = this.sequence.length;
          this.sequence.push(g);
        }
      }
    }
  }

  private ensure(g: number): Resident {
    let r = this.resident.get(g);
    if (!r) {
      this.evict();
      this.fetches++;
      r = { promise: readGroup(this.ds, this.ds.table.rowGroups[g]), pins: 0, lastUse: 0 };
      this.resident.set(g, r);
      this.peakResident = Math.max(this.peakResident, this.resident.size);
    }
    r.lastUse = ++this.clock;
    return r;
  }

  /** Makes room for one more: drops least recently used groups no pending batch holds. */
  private evict(): void {
    while (this.resident.size >= this.ds.maxResidentRowGroups) {
      let victim = -1,
        oldest = Infinity;
      for (const [g, r] of this.resident)
        if (r.pins === 0 && r.lastUse < oldest) {
          oldest = r.lastUse;
          victim = g;
        }
      if (victim < 0) return; // all pinned: the batches in flight need them
      this.resident.delete(victim);
    }
  }

  private readAhead(from: number): void {
    if (!this.rankInSequence) return;
    const stop = Math.min(this.sequence.length, from + 1 + this.ds.readAhead);
    for (let i = from + 1; i < stop; i++) {
      const g = this.sequence[i];
      if (this.resident.has(g)) continue;
      if (this.resident.size >= this.ds.maxResidentRowGroups) return; // never evict for a guess
      this.ensure(g).lastUse = 0; // read ahead, not yet used: first to go if space is short
    }
  }

  async getItems(indices: readonly number[]): Promise<DataItem[]> {
    if (this.closed) throw new Error('ParquetImageDataset: this iteration was closed');
    const groups = indices.map((i) => this.ds.groupOf(i));
    const needed = [...new Set(groups)];
    const held = needed.map((g) => {
      const r = this.ensure(g);
      r.pins++;
      return r;
    });
    if (this.rankInSequence) this.readAhead(Math.max(...needed.map((g) => this.rankInSequence![g])));
    try {
      const loaded = new Map<number, LoadedGroup>();
      await Promise.all(needed.map(async (g, k) => loaded.set(g, await held[k].promise)));
      return indices.map((index, k) => {
        const g = this.ds.table.rowGroups[groups[k]];
        const l = loaded.get(groups[k])!;
        if (l.error) return { source: new Uint8Array(0), label: this.ds.targets[index], name: l.where, error: l.error };
        return l.items![index - g.firstRow];
      });
    } finally {
      held.forEach((r) => r.pins--);
      if (this.remaining) {
        for (const g of groups) this.remaining[g]--;
        for (const g of needed) {
          const r = this.resident.get(g);
          if (this.remaining[g] <= 0 && r && r.pins === 0) this.resident.delete(g);
        }
      }
    }
  }

  get residentCount(): number {
    return this.resident.size;
  }

  close(): void {
    this.closed = true;
    this.resident.clear();
  }
}

/**
 * A Spark image or binaryFile table (local folder or gs:// prefix) as a
 * dataset: `await ParquetImageDataset.open(root, { labelColumn: 'label', transform })`.
 * Row index order is the table's: part files by path, row groups, rows.
 */
export class ParquetImageDataset implements Dataset {
  readonly table: ParquetTable;
  readonly classes: string[];
  readonly classToIdx: Record<string, number>;
  /** The label of every row (dataset index). */
  readonly targets: Int32Array;
  readonly labelColumn: string;
  readonly transform?: Transform | Transform[];
  readonly shuffleBuffer: number;
  readonly readAhead: number;
  readonly maxResidentRowGroups: number;
  readonly rank: number;
  readonly worldSize: number;
  /** The top-level columns each row-group read fetches. */
  readonly readColumns: string[];
  private readonly firstRows: Float64Array;
  private direct?: RowGroupReader;

  private constructor(
    table: ParquetTable,
    labels: (string | number)[],
    labelColumn: string,
    readColumns: string[],
    options: ParquetDatasetOptions,
  ) {
    this.table = table;
    this.labelColumn = labelColumn;
    this.readColumns = readColumns;
    this.transform = options.transform;
    this.shuffleBuffer = options.shuffleBuffer ?? 4;
    this.readAhead = options.readAhead ?? this.shuffleBuffer;
    this.maxResidentRowGroups = options.maxResidentRowGroups ?? 2 * this.shuffleBuffer + this.readAhead;
    if (!Number.isInteger(this.readAhead) || this.readAhead < 0)
      throw new RangeError(`readAhead must be a non-negative integer, got ${this.readAhead}`);
    if (!Number.isInteger(this.maxResidentRowGroups) || this.maxResidentRowGroups < 1)
      throw new RangeError(`maxResidentRowGroups must be a positive integer, got ${this.maxResidentRowGroups}`);
    this.rank = options.rank ?? 0;
    this.worldSize = options.worldSize ?? 1;
    const m = mapLabels(
      labels,
      labels.map((_, i) => `row ${i}`),
      options.classes,
    );
    const numeric = labels.every((l) => typeof l === 'number');
    if (numeric && !options.classes) {
      // Integer labels are class indices already: name the classes 0..max.
      const max = m.labels.reduce((a, b) => Math.max(a, b), -1);
      this.classes = Array.from({ length: max + 1 }, (_, i) => String(i));
      this.classToIdx = Object.fromEntries(this.classes.map((c, i) => [c, i]));
    } else {
      this.classes = m.classes;
      this.classToIdx = m.classToIdx;
    }
    this.targets = Int32Array.from(m.labels);
    this.firstRows = Float64Array.from(table.rowGroups, (g) => g.firstRow);
  }

  /** Lists the table, reads its footers (and a field label column, when the label is a field). */
  static async open(root: LocationLike, options: ParquetDatasetOptions = {}): Promise<ParquetImageDataset> {
    const table = await openParquetTable(root, {
      storage: options.storage,
      concurrency: options.concurrency,
      pathGlobFilter: options.pathGlobFilter,
    });
    const partNames = table.partitionColumns.map((c) => c.name);
    let col = options.labelColumn;
    if (col === undefined) {
      if (partNames.length === 1) col = partNames[0];
      else if (table.fields.includes('label')) col = 'label';
      else
        throw new Error(
          `${table.root}: say which column holds the label (labelColumn): partition columns [${partNames.join(', ')}], fields [${table.fields.join(', ')}]`,
        );
    }
    const where: RowLabel = partNames.includes(col)
      ? { kind: 'partition', name: col }
      : { kind: 'field', path: col.split('.') };
    if (where.kind === 'field' && !table.fields.includes(where.path[0]))
      throw new Error(
        `${table.root}: no column ${col} (partition columns [${partNames.join(', ')}], fields [${table.fields.join(', ')}])`,
      );
    const labels: (string | number)[] = new Array(table.rows);
    if (where.kind === 'partition') {
      for (const g of table.rowGroups) {
        const f = table.files[g.file];
        const v = labelValue(f.partitionValues[where.name] as PartitionValue, f.path);
        for (let k = 0; k < g.rows; k++) labels[g.firstRow + k] = v;
      }
    } else {
      const { parquetRead, compressors } = await parquetLib();
      await mapLimit(table.rowGroups, options.concurrency ?? 16, async (g) => {
        const f = table.files[g.file];
        const [start, end] = rowGroupRange(f.metadata, g.index, [where.path[0]]);
        const bytes = await f.source.read(start, end);
        let rows: Record<string, any>[] = [];
        try {
          await parquetRead({
            file: rangeBuffer(f.source, start, bytes),
            metadata: f.metadata,
            rowStart: g.fileRow,
            rowEnd: g.fileRow + g.rows,
            columns: [where.path[0]],
            utf8: true,
            compressors,
            rowFormat: 'object',
            onComplete: (r) => (rows = r),
          });
        } catch (err) {
          throw new Error(
            `cannot read the label column ${col} of ${f.path} row group ${g.index}: ${(err as Error).message}`,
          );
        }
        rows.forEach((row, k) => {
          let v: any = row;
          for (const p of where.path) v = v?.[p];
          labels[g.firstRow + k] = labelValue(v, `${f.path} row group ${g.index} row ${k}`);
        });
      });
    }
    const bytesCol = table.kind === 'image' ? 'image' : 'content';
    const readColumns =
      table.kind === 'binaryFile' ? [bytesCol, 'path'].filter((c) => table.fields.includes(c)) : [bytesCol];
    return new ParquetImageDataset(table, labels, col, readColumns, options);
  }

  get length(): number {
    return this.table.rows;
  }

  /** The row group (index into table.rowGroups) holding a dataset index. */
  groupOf(index: number): number {
    if (!(Number.isInteger(index) && index >= 0 && index < this.table.rows))
      throw new RangeError(`index ${index} out of range for ${this.table.rows} rows`);
    let lo = 0,
      hi = this.firstRows.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firstRows[mid] <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Rows are read asynchronously: use a DataLoader, getItems or get. */
  getItem(index: number): DataItem {
    throw new Error(
      `ParquetImageDataset rows are read asynchronously: use a DataLoader, or await dataset.get(${index})`,
    );
  }

  /** Items of any indices, reading their row groups (kept within maxResidentRowGroups, least recently used dropped). */
  getItems(indices: readonly number[]): Promise<DataItem[]> {
    this.direct ??= new RowGroupReader(this);
    return this.direct.getItems(indices);
  }

  async get(index: number): Promise<DataItem> {
    return (await this.getItems([index]))[0];
  }

  openEpoch(order: ArrayLike<number>): RowGroupReader {
    return new RowGroupReader(this, order);
  }

  /** The DataLoader's default sampler: this dataset's rank share, shuffled within shuffleBuffer row groups. */
  createSampler(options: { shuffle: boolean; seed: number }): RowGroupSampler {
    return this.sampler(options);
  }

  sampler(options: RowGroupSamplerOptions = {}): RowGroupSampler {
    return new RowGroupSampler(this.table.rowGroups, {
      shuffleBuffer: this.shuffleBuffer,
      rank: this.rank,
      worldSize: this.worldSize,
      ...options,
    });
  }

  describe(): ReturnType<typeof describeTable> & { labelColumn: string; classes: string[] } {
    return { ...describeTable(this.table), labelColumn: this.labelColumn, classes: this.classes };
  }
}

export type { RowGroupReader };
