// Spark-layout Parquet tables written by the Python peer (make_table.py), and
// the images they are made of.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { PYTHON } from '../support/peer';

// The real photos, shared with test/data.
export { PHOTOS, photos } from '../data/helpers';
const MAKE_TABLE = path.join(__dirname, 'make_table.py');
const MAKE_IMAGES = path.join(__dirname, 'make_images.py');

export interface TableSpec {
  out: string;
  kind: 'image' | 'binaryFile';
  compression?: 'snappy' | 'gzip' | 'zstd' | 'none';
  rowGroupRows?: number;
  filesPerPartition?: number;
  partitionBy?: boolean;
  rows: { file: string; label: number }[];
  undecodable?: number[];
  corruptRowGroup?: { partFile: number; rowGroup: number };
}

export interface WrittenTable {
  files: { path: string; rows: number[]; label: number | null; rowGroups: number[]; corrupt?: number }[];
  /** Spec row indices in the order a dataset over the table sees them (part files by path, then rows). */
  order: number[];
}

export function makeTable(spec: TableSpec): WrittenTable {
  const out = execFileSync(PYTHON, [MAKE_TABLE], { input: JSON.stringify(spec), encoding: 'utf8', maxBuffer: 1 << 26 });
  const w = JSON.parse(out) as Omit<WrittenTable, 'order'>;
  const sorted = [...w.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ...w, order: sorted.flatMap((f) => f.rows) };
}

/** Small lossless images of every mode Spark's image source stores (RGB, RGBA, grey), plus palette ones. */
export function makeImages(dir: string, n: number, seed = 1): { file: string; mode: string }[] {
  return JSON.parse(execFileSync(PYTHON, [MAKE_IMAGES, dir, String(n), String(seed)], { encoding: 'utf8' }));
}

// One temporary-folder helper for every test (test/support/peer.ts).
export { tempDir as tmpDir } from '../support/peer';
