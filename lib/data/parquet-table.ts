// A Parquet table as Spark writes it (`df.write.partitionBy(...).parquet(root)`)
// for its two image sources: `image` (one struct column of decoded BGR(A)
// pixels) and `binaryFile` (path, modificationTime, length, content = the
// encoded file). Part files are found with Spark's listing rules
// (lib/storage listPartitioned: hidden names such as _SUCCESS and .crc files
// are skipped, key=value folders become typed partition columns); each
// footer is read once; the row groups, in path order, are the unit of work.
import type { Storage } from '@google-cloud/storage';
import type { ColumnChunk, SchemaElement } from 'hyparquet';
import { createStorage } from '../storage/client';
import { listPartitioned } from '../storage/listing';
import { Location, type LocationLike } from '../storage/location';
import { mapLimit } from '../storage/pool';
import type { PartitionColumn, PartitionValue } from '../storage/spark';
import { gcsSource, localSource, readFooter, type ByteSource, type FileMetaData } from './parquet-source';

export type TableKind = 'image' | 'binaryFile';

export interface ParquetPartFile {
  /** `gs://bucket/object` or `file:///abs/path`. */
  path: string;
  source: ByteSource;
  size: number;
  partitionValues: Record<string, PartitionValue>;
  metadata: FileMetaData;
}

export interface RowGroupInfo {
  /** Position in the table's row-group list (the unit of the read plan). */
  id: number;
  file: number;
  /** Row group index inside its file. */
  index: number;
  rows: number;
  /** First row of this group in the table (global dataset index). */
  firstRow: number;
  /** First row of this group inside its file. */
  fileRow: number;
  /** Compressed bytes of the whole row group (all columns). */
  bytes: number;
}

export interface ParquetTable {
  root: Location;
  kind: TableKind;
  /** Top-level field names of the files (partition columns excluded). */
  fields: string[];
  partitionColumns: PartitionColumn[];
  files: ParquetPartFile[];
  rowGroups: RowGroupInfo[];
  rows: number;
  bytes: number;
  /** Spark version recorded in the footers, when present. */
  sparkVersion?: string;
}

export interface OpenTableOptions {
  storage?: Storage;
  /** Footers read at once (default 16). */
  concurrency?: number;
  /** Spark's pathGlobFilter on file names (default: every visible file, as Spark reads a Parquet folder). */
  pathGlobFilter?: string;
  /** Retries per range read after the first attempt (default 6). */
  maxRetries?: number;
}

/** Top-level fields of a footer's schema (name -> element index). */
function topFields(schema: SchemaElement[]): { name: string; at: number; children: string[] }[] {
  const out: { name: string; at: number; children: string[] }[] = [];
  // schema is a depth-first flattening: element 0 is the root with num_children.
  let i = 1;
  const skip = (at: number): number => {
    const n = schema[at].num_children ?? 0;
    let j = at + 1;
    for (let k = 0; k < n; k++) j = skip(j);
    return j;
  };
  for (let k = 0; k < (schema[0].num_children ?? 0); k++) {
    const el = schema[i];
    const children: string[] = [];
    let j = i + 1;
    for (let c = 0; c < (el.num_children ?? 0); c++) {
      children.push(schema[j].name);
      j = skip(j);
    }
    out.push({ name: el.name, at: i, children });
    i = skip(i);
  }
  return out;
}

const IMAGE_FIELDS = ['origin', 'height', 'width', 'nChannels', 'mode', 'data'];

/** Which of Spark's image sources wrote this schema, or why neither. */
export function detectKind(schema: SchemaElement[], where: string): { kind: TableKind; fields: string[] } {
  const fields = topFields(schema);
  const names = fields.map((f) => f.name);
  const image = fields.find((f) => f.name === 'image');
  if (image && IMAGE_FIELDS.every((c) => image.children.includes(c))) return { kind: 'image', fields: names };
  const content = fields.find((f) => f.name === 'content');
  if (content && schema[content.at].type === 'BYTE_ARRAY') return { kind: 'binaryFile', fields: names };
  throw new Error(
    `${where}: neither Spark's image schema (image: struct<${IMAGE_FIELDS.join(', ')}>) nor binaryFile's (path, modificationTime, length, content); ` +
      `its columns are ${names.join(', ')}`,
  );
}

/** Bytes [start, end) of one column chunk in its file. */
export function chunkRange(c: ColumnChunk): [number, number] {
  const md = c.meta_data!;
  const data = Number(md.data_page_offset);
  const dict = md.dictionary_page_offset !== undefined ? Number(md.dictionary_page_offset) : undefined;
  // Some writers record 0 for "no dictionary page": only a dictionary page before the data counts.
  const start = dict !== undefined && dict > 0 && dict < data ? dict : data;
  return [start, start + Number(md.total_compressed_size)];
}

/** The one byte range that covers the chunks of the given top-level columns of a row group. */
export function rowGroupRange(meta: FileMetaData, index: number, columns: readonly string[]): [number, number] {
  let lo = Infinity,
    hi = 0;
  for (const c of meta.row_groups[index].columns) {
    if (!c.meta_data || !columns.includes(c.meta_data.path_in_schema[0])) continue;
    const [s, e] = chunkRange(c);
    lo = Math.min(lo, s);
    hi = Math.max(hi, e);
  }
  if (!(hi > lo)) throw new Error(`row group ${index} has none of the columns ${columns.join(', ')}`);
  return [lo, hi];
}

/**
 * Lists a table (local folder or gs:// prefix) with Spark's rules, reads every
 * footer and returns its row groups in path order. Throws for files that are
 * not Parquet, for schemas that are neither image source's, and for tables
 * mixing the two.
 */
export async function openParquetTable(root: LocationLike, opts: OpenTableOptions = {}): Promise<ParquetTable> {
  const loc = Location.parse(root);
  const storage = loc.isGcs ? (opts.storage ?? createStorage()) : undefined;
  const listing = await listPartitioned(loc, { storage, pathGlobFilter: opts.pathGlobFilter, minPartitionNum: 1 });
  if (listing.files.length === 0)
    throw new Error(`no part files under ${loc} (an empty table, or not a Spark output folder)`);
  const files = await mapLimit(listing.files, opts.concurrency ?? 16, async (row): Promise<ParquetPartFile> => {
    const source = loc.isGcs
      ? gcsSource(loc.bucket, row.object.name, row.length, {
          storage: storage!,
          maxRetries: opts.maxRetries,
          generation: row.object.generation,
        })
      : localSource(row.object.name, row.length, row.path);
    return {
      path: row.path,
      source,
      size: row.length,
      partitionValues: row.partitionValues,
      metadata: await readFooter(source),
    };
  });
  let kind: TableKind | undefined;
  let fields: string[] = [];
  for (const f of files) {
    const d = detectKind(f.metadata.schema, f.path);
    if (kind && d.kind !== kind)
      throw new Error(`${f.path} is a ${d.kind} table file but ${files[0].path} is ${kind}: one table, one schema`);
    kind = d.kind;
    fields = d.fields;
  }
  const rowGroups: RowGroupInfo[] = [];
  let rows = 0,
    bytes = 0;
  files.forEach((f, fi) => {
    let fileRow = 0;
    f.metadata.row_groups.forEach((rg, index) => {
      const n = Number(rg.num_rows);
      if (n === 0) return;
      const b = rg.columns.reduce((s, c) => s + Number(c.meta_data?.total_compressed_size ?? 0), 0);
      rowGroups.push({ id: rowGroups.length, file: fi, index, rows: n, firstRow: rows, fileRow, bytes: b });
      fileRow += n;
      rows += n;
      bytes += b;
    });
  });
  const kv = files[0].metadata.key_value_metadata ?? [];
  return {
    root: loc,
    kind: kind!,
    fields,
    partitionColumns: listing.partitionColumns,
    files,
    rowGroups,
    rows,
    bytes,
    sparkVersion: kv.find((k) => k.key === 'org.apache.spark.version')?.value ?? undefined,
  };
}

/** A summary for `torchline list` and logs. */
export function describeTable(t: ParquetTable): {
  root: string;
  kind: TableKind;
  files: number;
  rowGroups: number;
  rows: number;
  bytes: number;
  partitionColumns: PartitionColumn[];
  partitions: { values: Record<string, PartitionValue>; files: number; rowGroups: number; rows: number }[];
  sparkVersion?: string;
} {
  type Part = { values: Record<string, PartitionValue>; files: number; rowGroups: number; rows: number };
  const parts = new Map<string, Part>();
  const ofFile: Part[] = t.files.map((f) => {
    const key = JSON.stringify(f.partitionValues, (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    const p = parts.get(key) ?? { values: f.partitionValues, files: 0, rowGroups: 0, rows: 0 };
    p.files++;
    parts.set(key, p);
    return p;
  });
  for (const g of t.rowGroups) {
    ofFile[g.file].rowGroups++;
    ofFile[g.file].rows += g.rows;
  }
  return {
    root: String(t.root),
    kind: t.kind,
    files: t.files.length,
    rowGroups: t.rowGroups.length,
    rows: t.rows,
    bytes: t.bytes,
    partitionColumns: t.partitionColumns,
    partitions: [...parts.values()],
    sparkVersion: t.sparkVersion,
  };
}
