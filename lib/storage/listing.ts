// Partitioned listing as Spark 3.5 does it for `spark.read.format("image" |
// "binaryFile").load(root)`: discover files below a root (GCS prefix or local
// folder), drop hidden and empty ones, turn `key=value` folders into typed
// partition columns, pack files into read partitions with FilePartition's
// Next Fit Decreasing, and hand each rank its share.
//
// Discovery on GCS lists the root with delimiter '/' (its files and folders),
// then everything below in parallel instead of one flat paged listing that
// needs one sequential round trip per 1,000 objects. Where the server honours
// objects.list's startOffset/endOffset (GCS does; probed once per client),
// the sorted folders are cut into `concurrency` contiguous ranges, each listed
// flat: an ImageNet-shaped tree (1,000 folders x 1,300 objects) takes a few
// rounds of requests. Elsewhere (the Firebase emulator ignores the offsets)
// every folder is listed with delimiter '/', concurrently (a bounded work
// queue). Spark lists up to 32 paths serially and more in parallel; the
// threshold only changes speed, never the result (rows are ordered by path),
// and is exposed as `parallelDiscoveryThreshold`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Storage } from '@google-cloud/storage';
import * as zlib from 'node:zlib';
import { createStorage, toStorageError } from './client';
import { apiJson, readRange } from './http';
import { Location, type LocationLike } from './location';
import { mapLimit, runQueue } from './pool';
import { withRetries } from './retry';
import {
  globToRegExp,
  isDataFileName,
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
  /** The object's Content-Encoding (GCS), e.g. 'gzip': its size and hashes describe the stored bytes. */
  contentEncoding?: string;
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
  /**
   * Spark's recursiveFileLookup: take files from every depth and infer no partition columns. Without it
   * and without `key=value` folders, Spark reads only the root's direct children: an ImageFolder tree
   * (`train/<class>/x.jpg`) needs `recursiveFileLookup: true`.
   */
  recursiveFileLookup?: boolean;
  /** Spark's pathGlobFilter, matched against file names only, applied after partition inference (as Spark does). */
  pathGlobFilter?: string;
  /**
   * Spark's basePath: where partition discovery stops, an ancestor of (or equal to) the root, so that
   * `listPartitioned('gs://b/t/year=2024', { basePath: 'gs://b/t' })` keeps the `year` column.
   */
  basePath?: LocationLike;
  /** spark.sql.sources.partitionColumnTypeInference.enabled (default true). */
  typeInference?: boolean;
  /** spark.sql.files.maxPartitionBytes (default 128 MiB). */
  maxPartitionBytes?: number;
  /** spark.sql.files.openCostInBytes (default 4 MiB). */
  openCostInBytes?: number;
  /**
   * spark.sql.files.minPartitionNum. Default: `worldSize` when given, else the number of cores here
   * (Spark's local[*] parallelism), which differs between hosts: `forRank` with a world size above 1
   * refuses a plan built on that default, since ranks could disagree on it.
   */
  minPartitionNum?: number;
  /** The number of ranks that will share this plan: checked by forRank, and the default minPartitionNum. */
  worldSize?: number;
  /** spark.sql.files.maxPartitionNum (default: none). */
  maxPartitionNum?: number;
  /**
   * Concurrent list requests (default 64 on GCS, 16 for a local folder). On GCS a listing of N objects
   * costs about N / 1000 / concurrency round trips: an ImageNet-shaped tree at 64 takes two or three.
   */
  concurrency?: number;
  /** Below this many pending folders, list them one at a time, as Spark does (default 0: always concurrent). */
  parallelDiscoveryThreshold?: number;
  /** Objects per list page (default 1000, the GCS maximum). */
  pageSize?: number;
  /** List contiguous ranges of folders flat (startOffset/endOffset) where the server supports it (default true). */
  rangeListing?: boolean;
  /**
   * Read Spark's image schema from each file's header; `dropInvalid` drops files that are not readable
   * images at read time, after planning, as Spark does: partitions are packed over every file, then lose
   * their invalid ones (a partition may end up empty).
   */
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
  /** The root named one file (relPath is then its base name). */
  rootIsFile?: boolean;
}

const LIST_FIELDS = 'items(name,size,updated,generation,crc32c,md5Hash,contentEncoding),prefixes,nextPageToken';

/** One page of objects.list (JSON API), retried on transient errors. */
export function listPage(
  storage: Storage,
  bucket: string,
  qs: {
    prefix: string;
    delimiter?: string;
    pageToken?: string;
    maxResults?: number;
    startOffset?: string;
    endOffset?: string;
  },
): Promise<{ items: any[]; prefixes: string[]; nextPageToken?: string }> {
  return withRetries(() =>
    apiJson(storage, {
      method: 'GET',
      path: `/storage/v1/b/${encodeURIComponent(bucket)}/o`,
      query: { ...qs, fields: LIST_FIELDS },
    }),
  ).then(
    (body: any) => ({
      items: body?.items ?? [],
      prefixes: body?.prefixes ?? [],
      nextPageToken: body?.nextPageToken || undefined,
    }),
    (err) => {
      throw toStorageError(err, `listing gs://${bucket}/${qs.prefix}`);
    },
  );
}

// Objects written together share their `updated` string; a Date made from
// a number costs far less than parsing the string again (50,000-object
// listings spend measurable time here).
let lastUpdated = '';
let lastUpdatedMs = 0;
function updatedDate(s: string): Date {
  if (s !== lastUpdated) {
    lastUpdated = s;
    lastUpdatedMs = Date.parse(s);
  }
  return new Date(lastUpdatedMs);
}

function toListed(item: any, root: string): ListedObject {
  const o: ListedObject = {
    name: item.name,
    relPath: item.name.slice(root.length),
    size: Number(item.size),
    updated: updatedDate(item.updated),
    generation: item.generation,
    crc32c: item.crc32c,
    md5Hash: item.md5Hash,
  };
  if (item.contentEncoding) o.contentEncoding = item.contentEncoding;
  return o;
}

/** Every object under a prefix with one flat paged listing (no delimiter): the baseline. */
export async function listFlat(
  root: LocationLike,
  opts: { storage?: Storage; pageSize?: number } = {},
): Promise<ListedObject[]> {
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
  // Only a name starting with '_' or '.', or ending in '._COPYING_', can be
  // hidden: most paths are decided without splitting them.
  const c = relPath.charCodeAt(0);
  if (c !== 95 && c !== 46 && !relPath.includes('/_') && !relPath.includes('/.') && !relPath.includes('._COPYING_'))
    return true;
  return !relPath.split('/').some(isHiddenName);
}

// Whether a client's server honours startOffset/endOffset, learnt once.
const offsetSupport = new WeakMap<Storage, Promise<boolean>>();

/**
 * Probes with a startOffset above every name under the root: a server that
 * honours it answers with nothing; one that ignores it (the Firebase
 * emulator) with the root's first object. Runs alongside the root's own
 * listing, so it costs no round trip. Only speed depends on the answer: a
 * range keeps only objects of its own folders, whatever the server sends.
 */
function supportsOffsets(storage: Storage, bucket: string, root: string): Promise<boolean> {
  let p = offsetSupport.get(storage);
  if (!p) {
    const above = root + '\u{10FFFF}';
    p = listPage(storage, bucket, { prefix: root, startOffset: above, maxResults: 1 }).then(
      (page) => page.items.length === 0 || page.items[0].name >= above,
      () => false,
    );
    offsetSupport.set(storage, p);
  }
  return p;
}

async function discoverGcs(loc: Location, opts: ListOptions, keepHidden = false): Promise<RawListing> {
  const storage = opts.storage ?? createStorage();
  const root = loc.dirPrefix;
  const files: ListedObject[] = [];
  let requests = 0;
  let seen = 0;
  const limit = Math.max(1, opts.concurrency ?? 64);
  const pageSize = opts.pageSize ?? 1000;
  const threshold = opts.parallelDiscoveryThreshold ?? 0;
  const seenPrefixes = new Set<string>([root]);
  const take = (it: any) => {
    const o = toListed(it, root);
    // Names ending in '/' are folder placeholders, not files.
    if (!keepHidden && (o.relPath === '' || o.relPath.endsWith('/'))) return;
    files.push(o);
  };
  // Lists one folder level (delimiter '/'), handing on the sub-folders to visit.
  const listFolder = async (prefix: string, onFolder: (p: string) => void) => {
    let pageToken: string | undefined;
    do {
      const page = await listPage(storage, loc.bucket, { prefix, delimiter: '/', pageToken, maxResults: pageSize });
      requests++;
      seen += page.items.length;
      for (const it of page.items) take(it);
      for (const p of page.prefixes) {
        if (seenPrefixes.has(p)) continue;
        seenPrefixes.add(p);
        const name = p.slice(prefix.length, -1);
        if (!keepHidden && (name === '' || isHiddenName(name))) continue;
        onFolder(p);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
  };
  const folders: string[] = [];
  const ranged = (opts.rangeListing ?? true) ? supportsOffsets(storage, loc.bucket, root) : Promise.resolve(false);
  await listFolder(root, (p) => folders.push(p));
  folders.sort();
  if (folders.length > 1 && (await ranged)) {
    // Contiguous ranges of folders, each listed flat between two folder
    // names. A range also holds what sorts between its folders (root files,
    // hidden folders): only objects of the range's own folders are kept.
    const per = Math.ceil(folders.length / Math.min(limit, folders.length));
    const ranges: string[][] = [];
    for (let i = 0; i < folders.length; i += per) ranges.push(folders.slice(i, i + per));
    // Kept per range and joined in range order: the result is then (nearly)
    // in name order, which the sort that follows runs through in linear time.
    const byRange: ListedObject[][] = ranges.map(() => []);
    await mapLimit(ranges, limit, async (group, gi) => {
      const mine = new Set(group);
      const endOffset = ranges[gi + 1]?.[0];
      const out = byRange[gi];
      let pageToken: string | undefined;
      do {
        const page = await listPage(storage, loc.bucket, {
          prefix: root,
          startOffset: group[0],
          endOffset,
          pageToken,
          maxResults: pageSize,
        });
        requests++;
        seen += page.items.length;
        // Names arrive sorted, so a folder's objects come in a run: its
        // membership is looked up once per run, not once per object.
        let folder = '';
        let inRange = false;
        for (const it of page.items) {
          const name = String(it.name);
          if (folder === '' || !name.startsWith(folder)) {
            const slash = name.indexOf('/', root.length);
            if (slash < 0) {
              folder = '';
              continue;
            }
            folder = name.slice(0, slash + 1);
            inRange = mine.has(folder);
          }
          if (!inRange) continue;
          const o = toListed(it, root);
          if (keepHidden || !o.relPath.endsWith('/')) out.push(o);
        }
        pageToken = page.nextPageToken;
      } while (pageToken);
    });
    for (const r of byRange) for (const o of r) files.push(o);
    return { files, requests, seen };
  }
  let pending = folders.length;
  const gate = oneSlotGate();
  await runQueue(folders, limit, async (prefix, push) => {
    // Spark's serial mode for small trees: one folder in flight at a time.
    const gated = pending <= threshold;
    if (gated) await gate.acquire();
    try {
      await listFolder(prefix, (p) => {
        pending++;
        push(p);
      });
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
    return {
      files: [{ name: root, relPath: path.basename(root), size: st.size, updated: st.mtime }],
      requests: 1,
      seen: 1,
      rootIsFile: true,
    };
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
export async function listAll(
  root: LocationLike,
  opts: { storage?: Storage; concurrency?: number; pageSize?: number; rangeListing?: boolean } = {},
): Promise<ListedObject[]> {
  const loc = Location.parse(root);
  if (!loc.isGcs) throw new TypeError(`listAll needs a gs:// location, got ${loc}`);
  const raw = await discoverGcs(loc, opts, true);
  return raw.files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The files Spark reads below a root (listPartitioned's rows, without the packing), ordered by path. */
export async function listFiles(root: LocationLike, opts: ListOptions = {}): Promise<ListedObject[]> {
  return (
    await listPartitioned(root, { ...opts, minPartitionNum: opts.minPartitionNum ?? 1, worldSize: undefined })
  ).files.map((f) => f.object);
}

/** Every visible file below the root (hidden names dropped at every level, as Spark's listing does), ordered by relPath. */
async function list(loc: Location, opts: ListOptions): Promise<RawListing> {
  const raw = loc.isGcs ? await discoverGcs(loc, opts) : await discoverLocal(loc, opts);
  if (loc.isGcs && raw.files.length === 0 && loc.path !== '' && !loc.path.endsWith('/')) {
    // Nothing below gs://b/x/: x may be one object, which Spark reads as a single file.
    const page = await listPage(opts.storage ?? createStorage(), loc.bucket, { prefix: loc.path, maxResults: 1 });
    raw.requests++;
    const it = page.items.find((i) => i.name === loc.path);
    if (it) {
      raw.files.push({ ...toListed(it, ''), relPath: loc.basename });
      raw.rootIsFile = true;
    }
  }
  const files = raw.files.filter((f) => visible(f.relPath));
  files.sort((a, b) => (a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0));
  return { ...raw, files };
}

/**
 * The root's folder relative to the basePath option ('' without one), checked
 * as Spark's PartitioningAwareFileIndex.basePaths does: the base must contain
 * the root ("Wrong basePath ... for the root path").
 */
function baseToRoot(loc: Location, rootIsFile: boolean, basePath: LocationLike | undefined): string {
  if (basePath === undefined) return '';
  const base = Location.parse(basePath);
  if (base.scheme !== loc.scheme || base.bucket !== loc.bucket)
    throw new Error(`Wrong basePath ${base} for the root path: ${loc}`);
  if (loc.isGcs) {
    let rootDir = loc.dirPrefix;
    if (rootIsFile) rootDir = rootDir.slice(0, rootDir.lastIndexOf('/', rootDir.length - 2) + 1);
    if (!rootDir.startsWith(base.dirPrefix)) throw new Error(`Wrong basePath ${base} for the root path: ${loc}`);
    return rootDir.slice(base.dirPrefix.length).replace(/\/+$/, '');
  }
  if (!fs.statSync(base.path, { throwIfNoEntry: false })?.isDirectory())
    throw new Error(`Option 'basePath' must be a directory: ${base}`);
  const rootDir = rootIsFile ? path.dirname(loc.path) : loc.path;
  const rel = path.relative(base.path, rootDir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`Wrong basePath ${base} for the root path: ${loc}`);
  return rel
    .split(path.sep)
    .filter((x) => x !== '')
    .join('/');
}

// Rows without partition columns share one frozen (empty) partitionValues.
const NO_PARTITION_VALUES: Record<string, PartitionValue> = Object.freeze({});

const joinRel = (a: string, b: string) => (a === '' ? b : b === '' ? a : `${a}/${b}`);
const baseName = (rel: string) => rel.slice(rel.lastIndexOf('/') + 1);

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
  if (opts.worldSize !== undefined && (!Number.isInteger(opts.worldSize) || opts.worldSize < 1)) {
    throw new RangeError(`worldSize must be a positive integer, got ${opts.worldSize}`);
  }
  const glob = opts.pathGlobFilter ? globToRegExp(opts.pathGlobFilter) : undefined;
  const storage = loc.isGcs ? (opts.storage ?? createStorage()) : undefined;
  const raw = await list(loc, { ...opts, storage });
  const base = baseToRoot(loc, !!raw.rootIsFile, opts.basePath);
  // InMemoryFileIndex's leafDirToChildrenFiles: every folder holding a (visible) file.
  const byDir = new Map<string, ListedObject[]>();
  // recursiveFileLookup reads every file and infers no partitions: no folder index needed.
  if (!opts.recursiveFileLookup)
    for (const o of raw.files) {
      const d = dirOf(o.relPath);
      let l = byDir.get(d);
      if (!l) byDir.set(d, (l = []));
      l.push(o);
    }
  // PartitioningAwareFileIndex.inferPartitioning: the leaf folders holding a
  // data file (not _metadata-like), before any glob, empty files included.
  let columns: PartitionColumn[] = [];
  let values = new Map<string, Record<string, PartitionValue>>();
  if (!opts.recursiveFileLookup) {
    const leafDirs = [...byDir]
      .filter(([, fs]) => fs.some((f) => isDataFileName(baseName(f.relPath))))
      .map(([d]) => joinRel(base, d));
    ({ columns, values } = resolvePartitions(leafDirs, opts.typeInference ?? true));
  }
  // listFiles: isDataPath, non-empty, and the path filters (pathGlobFilter) last.
  const selected = (o: ListedObject) => {
    if (!(o.size > 0)) return false;
    const name = baseName(o.relPath);
    return isDataFileName(name) && (!glob || glob.test(name));
  };
  let rows: FileRow[] = [];
  const row = (o: ListedObject, pv: Record<string, PartitionValue>): FileRow => ({
    path: rowPath(loc, o),
    modificationTime: o.updated,
    length: o.size,
    partitionValues: pv,
    object: o,
  });
  if (columns.length) {
    // Each partition folder's direct children; files outside partition folders are not read.
    for (const o of raw.files) {
      const v = values.get(joinRel(base, dirOf(o.relPath)));
      if (v && selected(o)) rows.push(row(o, v));
    }
  } else {
    // allFiles(): without partition columns, the root's direct children only
    // (or the root itself when it names a file), unless recursiveFileLookup.
    const from = opts.recursiveFileLookup ? raw.files : (byDir.get('') ?? []);
    rows = from.filter(selected).map((o) => row(o, NO_PARTITION_VALUES));
  }
  const io = typeof opts.image === 'object' ? opts.image : {};
  if (opts.image) await readImageRows(loc, rows, storage, io.concurrency ?? 16);
  const defaultedParallelism = opts.minPartitionNum === undefined && opts.worldSize === undefined;
  const minPartitionNum = opts.minPartitionNum ?? opts.worldSize ?? os.availableParallelism();
  const packed = packFilePartitions(
    rows.map((r) => r.length),
    {
      maxPartitionBytes: opts.maxPartitionBytes,
      openCostInBytes: opts.openCostInBytes,
      minPartitionNum,
      maxPartitionNum: opts.maxPartitionNum,
    },
  );
  // The image source drops invalid images while reading a partition, after
  // the plan was made: the packing above counted them.
  const dropping = !!(opts.image && io.dropInvalid);
  const keep = (r: FileRow) => !!(r.image && r.image.height >= 0);
  const partitions: FilePartition[] = packed.partitions.map((idx, index) => {
    let files = idx.map((i) => rows[i]);
    if (dropping) files = files.filter(keep);
    return { index, files, bytes: files.reduce((s, f) => s + f.length, 0) };
  });
  if (dropping) rows = rows.filter(keep);
  return {
    root: loc,
    partitionColumns: columns,
    files: rows,
    maxSplitBytes: packed.maxSplitBytes,
    partitions,
    forRank: (rank, worldSize) => {
      if (opts.worldSize !== undefined && worldSize !== opts.worldSize) {
        throw new RangeError(`this plan was made for worldSize ${opts.worldSize}, not ${worldSize}`);
      }
      if (worldSize > 1 && defaultedParallelism) {
        throw new RangeError(
          `forRank(${rank}, ${worldSize}): this plan's minPartitionNum defaulted to this host's ${minPartitionNum} cores, ` +
            'which other ranks need not share, so their plans could differ and shares overlap or miss files: ' +
            'pass the same minPartitionNum (or worldSize) to listPartitioned on every rank',
        );
      }
      return assignPartitions(partitions, rank, worldSize);
    },
    stats: { listRequests: raw.requests, objectsListed: raw.seen, ms: performance.now() - t0 },
  };
}

/** Deterministic rank share: partition i belongs to rank i % worldSize. */
export function assignPartitions<P>(partitions: readonly P[], rank: number, worldSize: number): P[] {
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
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

async function readImageRows(
  loc: Location,
  rows: FileRow[],
  storage: Storage | undefined,
  concurrency: number,
): Promise<void> {
  await mapLimit(rows, concurrency, async (row) => {
    const size = row.length;
    let want = Math.min(size, HEADER_FIRST_READ);
    for (;;) {
      const buf =
        storage && loc.isGcs
          ? await readGcsRange(storage, loc.bucket, row.object, want)
          : await readLocalRange(row.object.name, want);
      const h = parseImageHeader(buf.bytes, buf.whole);
      if (h.kind !== 'need') {
        row.image = imageRow(row.path, h);
        return;
      }
      if (buf.whole) {
        row.image = invalidImageRow(row.path);
        return;
      }
      want = Math.min(size, Math.max(h.bytes, want * 4));
    }
  });
}

async function readLocalRange(file: string, n: number): Promise<{ bytes: Buffer; whole: boolean }> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return { bytes: buf.subarray(0, got), whole: got < n || got >= (await fh.stat()).size };
  } finally {
    await fh.close();
  }
}

/**
 * The first n stored bytes of an object, retried. A gzip-stored object's
 * bytes are inflated as far as they go (a gzip prefix decodes to a prefix of
 * the content), so its header is read like any other file's.
 */
async function readGcsRange(
  storage: Storage,
  bucket: string,
  o: ListedObject,
  n: number,
): Promise<{ bytes: Buffer; whole: boolean }> {
  const r = await withRetries(() => readRange(storage, bucket, o.name, 0, n - 1, o.generation), {
    maxRetries: 5,
    retryDelayMs: 200,
    maxRetryDelayMs: 10_000,
  }).catch((e) => {
    throw toStorageError(e, `reading the header of gs://${bucket}/${o.name}`);
  });
  const whole = r.bytes.length < n || r.bytes.length >= o.size;
  if (!r.gzip) return { bytes: r.bytes, whole };
  try {
    return { bytes: zlib.gunzipSync(r.bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH }), whole };
  } catch {
    return { bytes: Buffer.alloc(0), whole: true };
  }
}
