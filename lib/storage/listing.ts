// Partitioned listing as Spark 3.5 does it for `spark.read.format("image" |
// "binaryFile").load(root)`: discover files below a root (GCS prefix or local
// folder), drop hidden and empty ones, turn `key=value` folders into typed
// partition columns, pack files into read partitions with FilePartition's
// Next Fit Decreasing, and hand each rank its share.
//
// Discovery on GCS lists the root with delimiter '/' and then every
// sub-prefix found, concurrently (a bounded work queue), instead of one flat
// paged listing: pages of different prefixes are fetched in parallel. Spark
// lists up to 32 paths serially and more in parallel; the threshold only
// changes speed, never the result (rows are ordered by path), and is exposed
// as `parallelDiscoveryThreshold`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Storage } from '@google-cloud/storage';
import { createStorage, isRetryableError, toStorageError } from './client';
import { apiJson, readRange, withRetries } from './http';
import { Location, type LocationLike } from './location';
import { mapLimit, runQueue, sleep } from './pool';
import {
  globToRegExp,
  isHiddenName,
  packFilePartitions,
  resolvePartitions,
  type PartitionColumn,
  type PartitionValue,
} from './spark';
import { imageRow, invalidImageRow, parseImageHeader, type ImageSchemaRow } from './image-header';

/** One object or local file as listed. */
export interface ListedObject {
  /** GCS object name, or absolute local path. */
  name: string;
  /** Path relative to the listing root, '/'-separated. */
  relPath: string;
  size: number;
  updated: Date;
  generation?: string;
  /** base64 big-endian CRC32C (GCS). */
  crc32c?: string;
  /** base64 MD5 (GCS, absent for composite objects). */
  md5Hash?: string;
}

/** A row of Spark's binaryFile source (path, modificationTime, length) plus partition columns. */
export interface FileRow {
  /** `gs://bucket/object` or `file:///abs/path`. */
  path: string;
  modificationTime: Date;
  length: number;
  /** Partition column values from `key=value` folders. */
  partitionValues: Record<string, PartitionValue>;
  object: ListedObject;
  /** Spark's image schema (origin, height, width, nChannels, mode), when `image` is requested. */
  image?: ImageSchemaRow;
}

export interface FilePartition {
  index: number;
  files: FileRow[];
  /** Sum of the files' lengths. */
  bytes: number;
}

export interface ListOptions {
  /** Client to use (default: createStorage()). */
  storage?: Storage;
  /** Spark's recursiveFileLookup: take files from every depth and infer no partition columns. */
  recursiveFileLookup?: boolean;
  /** Spark's pathGlobFilter, matched against file names only. */
  pathGlobFilter?: string;
  /** spark.sql.sources.partitionColumnTypeInference.enabled (default true). */
  typeInference?: boolean;
  /** spark.sql.files.maxPartitionBytes (default 128 MiB). */
  maxPartitionBytes?: number;
  /** spark.sql.files.openCostInBytes (default 4 MiB). */
  openCostInBytes?: number;
  /** spark.sql.files.minPartitionNum; default: the number of cores here (Spark's local[*] parallelism). */
  minPartitionNum?: number;
  /** spark.sql.files.maxPartitionNum (default: none). */
  maxPartitionNum?: number;
  /** Concurrent list requests (default 16). */
  concurrency?: number;
  /** Below this many pending folders, list them one at a time, as Spark does (default 0: always concurrent). */
  parallelDiscoveryThreshold?: number;
  /** Objects per list page (default 1000, the GCS maximum). */
  pageSize?: number;
  /** Read Spark's image schema from each file's header; `dropInvalid` drops files that are not readable images. */
  image?: boolean | { dropInvalid?: boolean; concurrency?: number };
}

export interface PartitionedListing {
  root: Location;
  partitionColumns: PartitionColumn[];
  /** Every selected file, ordered by path. */
  files: FileRow[];
  maxSplitBytes: number;
  partitions: FilePartition[];
  /** The partitions of one rank: partition i goes to rank i % worldSize. */
  forRank(rank: number, worldSize: number): FilePartition[];
  stats: { listRequests: number; objectsListed: number; ms: number };
}

interface RawListing {
  files: ListedObject[];
  requests: number;
  seen: number;
}

const LIST_FIELDS = 'items(name,size,updated,generation,crc32c,md5Hash),prefixes,nextPageToken';

/** One page of objects.list (JSON API), retried on transient errors. */
export function listPage(
  storage: Storage,
  bucket: string,
  qs: { prefix: string; delimiter?: string; pageToken?: string; maxResults?: number },
): Promise<{ items: any[]; prefixes: string[]; nextPageToken?: string }> {
  return withRetries(() =>
    apiJson(storage, { method: 'GET', path: `/storage/v1/b/${encodeURIComponent(bucket)}/o`, query: { ...qs, fields: LIST_FIELDS } }),
  ).then(
    (body: any) => ({ items: body?.items ?? [], prefixes: body?.prefixes ?? [], nextPageToken: body?.nextPageToken || undefined }),
    (err) => {
      throw toStorageError(err, `listing gs://${bucket}/${qs.prefix}`);
    },
  );
}

function toListed(item: any, root: string): ListedObject {
  return {
    name: item.name,
    relPath: item.name.slice(root.length),
    size: Number(item.size),
    updated: new Date(item.updated),
    generation: item.generation,
    crc32c: item.crc32c,
    md5Hash: item.md5Hash,
  };
}

/** Every object under a prefix with one flat paged listing (no delimiter): the baseline. */
export async function listFlat(root: LocationLike, opts: { storage?: Storage; pageSize?: number } = {}): Promise<ListedObject[]> {
  const loc = Location.parse(root);
  if (!loc.isGcs) throw new TypeError(`listFlat needs a gs:// location, got ${loc}`);
  const storage = opts.storage ?? createStorage();
  const prefix = loc.dirPrefix;
  const out: ListedObject[] = [];
  let pageToken: string | undefined;
  do {
    const page = await listPage(storage, loc.bucket, { prefix, pageToken, maxResults: opts.pageSize ?? 1000 });
    for (const it of page.items) out.push(toListed(it, prefix));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

function visible(relPath: string): boolean {
  return !relPath.split('/').some(isHiddenName);
}

async function discoverGcs(loc: Location, opts: ListOptions, keepHidden = false): Promise<RawListing> {
  const storage = opts.storage ?? createStorage();
  const root = loc.dirPrefix;
  const files: ListedObject[] = [];
  let requests = 0;
  let seen = 0;
  const limit = Math.max(1, opts.concurrency ?? 16);
  const threshold = opts.parallelDiscoveryThreshold ?? 0;
  const seenPrefixes = new Set<string>([root]);
  let pending = 1;
  const gate = oneSlotGate();
  await runQueue([root], limit, async (prefix, push) => {
    // Spark's serial mode for small trees: one folder in flight at a time.
    const gated = pending <= threshold;
    if (gated) await gate.acquire();
    try {
      let pageToken: string | undefined;
      do {
        const page = await listPage(storage, loc.bucket, { prefix, delimiter: '/', pageToken, maxResults: opts.pageSize ?? 1000 });
        requests++;
        seen += page.items.length;
        for (const it of page.items) {
          const o = toListed(it, root);
          // Names ending in '/' are folder placeholders, not files.
          if (!keepHidden && (o.relPath === '' || o.relPath.endsWith('/'))) continue;
          files.push(o);
        }
        for (const p of page.prefixes) {
          if (seenPrefixes.has(p)) continue;
          seenPrefixes.add(p);
          const name = p.slice(prefix.length, -1);
          if (!keepHidden && (name === '' || isHiddenName(name))) continue;
          pending++;
          push(p);
        }
        pageToken = page.nextPageToken;
      } while (pageToken);
    } finally {
      pending--;
      if (gated) gate.release();
    }
  });
  return { files, requests, seen };
}

// A one-slot gate used only below parallelDiscoveryThreshold.
function oneSlotGate() {
  let held = false;
  const waiters: (() => void)[] = [];
  return {
    acquire: () =>
      new Promise<void>((r) => {
        if (!held) {
          held = true;
          r();
        } else waiters.push(r);
      }),
    release: () => {
      const w = waiters.shift();
      if (w) w();
      else held = false;
    },
  };
}

async function discoverLocal(loc: Location, opts: ListOptions): Promise<RawListing> {
  const root = loc.path;
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(root);
  } catch (e) {
    throw new Error(`Path does not exist: ${root} (${(e as NodeJS.ErrnoException).code})`);
  }
  if (!st.isDirectory()) {
    return { files: [{ name: root, relPath: path.basename(root), size: st.size, updated: st.mtime }], requests: 1, seen: 1 };
  }
  const files: ListedObject[] = [];
  let requests = 0;
  await runQueue([''], Math.max(1, opts.concurrency ?? 16), async (rel, push) => {
    const dir = rel === '' ? root : path.join(root, ...rel.split('/'));
    const entries = await fs.promises.readdir(dir, { withFileTypes: true });
    requests++;
    const fileEntries: string[] = [];
    for (const e of entries) {
      if (isHiddenName(e.name)) continue;
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const t = await fs.promises.stat(path.join(dir, e.name)).catch(() => undefined);
        isDir = !!t?.isDirectory();
        isFile = !!t?.isFile();
      }
      if (isDir) push(r);
      else if (isFile) fileEntries.push(r);
    }
    await mapLimit(fileEntries, 32, async (r) => {
      const abs = path.join(root, ...r.split('/'));
      const s = await fs.promises.stat(abs);
      files.push({ name: abs, relPath: r, size: s.size, updated: s.mtime });
    });
  });
  return { files, requests, seen: files.length };
}

/**
 * Every object under a gs:// prefix (hidden ones and folder placeholders
 * included), discovered folder by folder with concurrent list calls: the
 * listing `download` uses.
 */
export async function listAll(root: LocationLike, opts: { storage?: Storage; concurrency?: number; pageSize?: number } = {}): Promise<ListedObject[]> {
  const loc = Location.parse(root);
  if (!loc.isGcs) throw new TypeError(`listAll needs a gs:// location, got ${loc}`);
  const raw = await discoverGcs(loc, opts, true);
  return raw.files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Lists files below a root with Spark's hidden-name, glob and empty-file rules (no packing). */
export async function listFiles(root: LocationLike, opts: ListOptions = {}): Promise<ListedObject[]> {
  return (await list(Location.parse(root), opts)).files;
}

async function list(loc: Location, opts: ListOptions): Promise<RawListing & { files: ListedObject[] }> {
  const raw = loc.isGcs ? await discoverGcs(loc, opts) : await discoverLocal(loc, opts);
  if (loc.isGcs && raw.files.length === 0 && loc.path !== '' && !loc.path.endsWith('/')) {
    // Nothing below gs://b/x/: x may be one object, which Spark reads as a single file.
    const page = await listPage(opts.storage ?? createStorage(), loc.bucket, { prefix: loc.path, maxResults: 1 });
    raw.requests++;
    const it = page.items.find((i) => i.name === loc.path);
    if (it) raw.files.push({ ...toListed(it, ''), relPath: loc.basename });
  }
  const glob = opts.pathGlobFilter ? globToRegExp(opts.pathGlobFilter) : undefined;
  const files = raw.files.filter((f) => visible(f.relPath) && (!glob || glob.test(f.relPath.slice(f.relPath.lastIndexOf('/') + 1))));
  files.sort((a, b) => (a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0));
  return { ...raw, files };
}

function rowPath(loc: Location, o: ListedObject): string {
  return loc.isGcs ? `gs://${loc.bucket}/${o.name}` : Location.parse(o.name).uri;
}

/**
 * Lists a root the way Spark 3.5 reads it, packs the files into partitions
 * and reports each rank's share. Throws Spark's errors for conflicting
 * partition folder layouts.
 */
export async function listPartitioned(root: LocationLike, opts: ListOptions = {}): Promise<PartitionedListing> {
  const t0 = performance.now();
  const loc = Location.parse(root);
  const storage = loc.isGcs ? (opts.storage ?? createStorage()) : undefined;
  const raw = await list(loc, { ...opts, storage });
  // Partition inference looks at every leaf folder, including folders whose
  // files are all empty (those files are dropped afterwards, as in Spark).
  let columns: PartitionColumn[] = [];
  let values = new Map<string, Record<string, PartitionValue>>();
  if (!opts.recursiveFileLookup) {
    const leafDirs = [...new Set(raw.files.map((f) => dirOf(f.relPath)))];
    ({ columns, values } = resolvePartitions(leafDirs, opts.typeInference ?? true));
  }
  let rows: FileRow[] = [];
  for (const o of raw.files) {
    if (o.size <= 0) continue;
    let pv: Record<string, PartitionValue> = {};
    if (columns.length) {
      const v = values.get(dirOf(o.relPath));
      // A partitioned table reads only files inside partition folders.
      if (!v) continue;
      pv = v;
    }
    rows.push({ path: rowPath(loc, o), modificationTime: o.updated, length: o.size, partitionValues: pv, object: o });
  }
  if (opts.image) {
    const io = typeof opts.image === 'object' ? opts.image : {};
    await readImageRows(loc, rows, storage, io.concurrency ?? 16);
    if (io.dropInvalid) rows = rows.filter((r) => r.image && r.image.height >= 0);
  }
  const packed = packFilePartitions(
    rows.map((r) => r.length),
    {
      maxPartitionBytes: opts.maxPartitionBytes,
      openCostInBytes: opts.openCostInBytes,
      minPartitionNum: opts.minPartitionNum ?? os.availableParallelism(),
      maxPartitionNum: opts.maxPartitionNum,
    },
  );
  const partitions: FilePartition[] = packed.partitions.map((idx, index) => {
    const files = idx.map((i) => rows[i]);
    return { index, files, bytes: files.reduce((s, f) => s + f.length, 0) };
  });
  return {
    root: loc,
    partitionColumns: columns,
    files: rows,
    maxSplitBytes: packed.maxSplitBytes,
    partitions,
    forRank: (rank, worldSize) => assignPartitions(partitions, rank, worldSize),
    stats: { listRequests: raw.requests, objectsListed: raw.seen, ms: performance.now() - t0 },
  };
}

/** Deterministic rank share: partition i belongs to rank i % worldSize. */
export function assignPartitions<P>(partitions: readonly P[], rank: number, worldSize: number): P[] {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
  return partitions.filter((_, i) => i % worldSize === rank);
}

function dirOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

const HEADER_FIRST_READ = 64 * 1024;

async function readImageRows(loc: Location, rows: FileRow[], storage: Storage | undefined, concurrency: number): Promise<void> {
  await mapLimit(rows, concurrency, async (row) => {
    const size = row.length;
    let want = Math.min(size, HEADER_FIRST_READ);
    for (;;) {
      const buf =
        storage && loc.isGcs ? await readGcsRange(storage, loc.bucket, row.object.name, want) : await readLocalRange(row.object.name, want);
      const h = parseImageHeader(buf, buf.length >= size);
      if (h.kind !== 'need') {
        row.image = imageRow(row.path, h);
        return;
      }
      if (buf.length < want) {
        row.image = invalidImageRow(row.path);
        return;
      }
      want = Math.min(size, Math.max(h.bytes, want * 4));
    }
  });
}

async function readLocalRange(file: string, n: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

async function readGcsRange(storage: Storage, bucket: string, name: string, n: number): Promise<Buffer> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await readRange(storage, bucket, name, 0, n - 1);
    } catch (e) {
      if (attempt >= 5 || !isRetryableError(e)) throw toStorageError(e, `reading the header of gs://${bucket}/${name}`);
      await sleep(Math.min(10_000, 200 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}
