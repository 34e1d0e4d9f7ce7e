// Apache Spark 3.5's rules for file-based sources, restated: which names are
// hidden, how `key=value` folders become typed partition columns
// (PartitioningUtils), the `pathGlobFilter` glob, and how files are packed into
// read partitions (FilePartition). Pure functions: the listing I/O lives in
// listing.ts.

/** Spark's `__HIVE_DEFAULT_PARTITION__`: a partition value that reads as null. */
export const DEFAULT_PARTITION_NAME = '__HIVE_DEFAULT_PARTITION__';

/**
 * HadoopFSUtils.shouldFilterOutPathName: names starting with `_` (unless they
 * contain `=`) or `.`, and names ending `._COPYING_`, are hidden; `_metadata`
 * and `_common_metadata` are not. Applies to folder and file names alike.
 */
export function isHiddenName(name: string): boolean {
  const exclude = (name.startsWith('_') && !name.includes('=')) || name.startsWith('.') || name.endsWith('._COPYING_');
  const include = name.startsWith('_common_metadata') || name.startsWith('_metadata');
  return exclude && !include;
}

/**
 * PartitioningAwareFileIndex.isDataPath (SPARK-15895): `_metadata`,
 * `_common_metadata` and other `_`/`.` names (without `=`) are listed but are
 * not data files: they are never rows, and a leaf folder holding only such
 * files takes no part in partition inference.
 */
export function isDataFileName(name: string): boolean {
  return !((name.startsWith('_') && !name.includes('=')) || name.startsWith('.'));
}

/**
 * Hadoop's GlobFilter as used by `pathGlobFilter` (matched against the file
 * name only): `*`, `?`, `[abc]`, `[a-z]`, `[^a]`/`[!a]`, `{a,b}`, `\` escapes.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') {
      if (i + 1 >= glob.length) throw new TypeError(`invalid glob ${JSON.stringify(glob)}: trailing backslash`);
      re += escapeRe(glob[++i]);
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new TypeError(`invalid glob ${JSON.stringify(glob)}: unclosed [`);
      let body = glob.slice(i + 1, end);
      if (body.startsWith('!') || body.startsWith('^')) body = '^' + body.slice(1);
      re += '[' + body.replace(/\\/g, '\\\\') + ']';
      i = end;
    } else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) re += '|';
    else re += escapeRe(c);
  }
  if (depth !== 0) throw new TypeError(`invalid glob ${JSON.stringify(glob)}: unclosed {`);
  return new RegExp('^' + re + '$', 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Hive's unescapePathName: `%XX` becomes the character; bad escapes stay. */
export function unescapePathName(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

export type PartitionType = 'null' | 'int' | 'long' | 'decimal' | 'double' | 'date' | 'timestamp' | 'string';
/** int/double: number; long: bigint; decimal: canonical string; date: 'yyyy-MM-dd'; timestamp: Date (UTC). */
export type PartitionValue = null | number | bigint | string | Date;

const INT_RE = /^[+-]?\d+$/;
// java.lang.Double.parseDouble without hex floats: surrounding whitespace
// (chars <= U+0020), NaN, Infinity, and an optional f/F/d/D suffix.
const DOUBLE_RE = /^[\x00-\x20]*[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFdD]?)[\x00-\x20]*$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TS_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$/;

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const dim = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return d <= dim;
}

function parseTimestamp(raw: string): Date | undefined {
  const m = TS_RE.exec(raw);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (!validDate(y, mo, d) || h > 23 || mi > 59 || s > 59) return undefined;
  const ms = m[7] ? Number((m[7] + '00').slice(0, 3)) : 0;
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  if (y < 100) t.setUTCFullYear(y);
  return t;
}

function parseDate(raw: string): string | undefined {
  const m = DATE_RE.exec(raw);
  if (!m) return undefined;
  return validDate(Number(m[1]), Number(m[2]), Number(m[3])) ? raw : undefined;
}

/**
 * PartitioningUtils.inferPartitionColumnValue: int, then long, then decimal
 * (integral, beyond long, at most 38 digits), double, timestamp
 * (`yyyy-MM-dd HH:mm:ss[.S]`, escaped colons allowed), date (`yyyy-MM-dd`),
 * else string; `__HIVE_DEFAULT_PARTITION__` is null.
 */
export function inferPartitionType(raw: string, typeInference = true): PartitionType {
  if (!typeInference) return raw === DEFAULT_PARTITION_NAME ? 'null' : 'string';
  if (INT_RE.test(raw)) {
    const v = BigInt(raw);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) return 'int';
    if (v >= -(2n ** 63n) && v < 2n ** 63n) return 'long';
    if (raw.replace(/^[+-]/, '').replace(/^0+(?=\d)/, '').length <= 38) return 'decimal';
  }
  if (DOUBLE_RE.test(raw)) return 'double';
  if (parseTimestamp(unescapePathName(raw))) return 'timestamp';
  if (parseDate(raw)) return 'date';
  return raw === DEFAULT_PARTITION_NAME ? 'null' : 'string';
}

const NUMERIC: PartitionType[] = ['int', 'long', 'decimal'];

/** PartitioningUtils.findWiderTypeForPartitionColumn (the table in Spark 3.5's source). */
export function widerPartitionType(a: PartitionType, b: PartitionType): PartitionType {
  if (a === b) return a;
  if (a === 'null') return b;
  if (b === 'null') return a;
  if (a === 'string' || b === 'string') return 'string';
  if (NUMERIC.includes(a) && NUMERIC.includes(b)) return NUMERIC[Math.max(NUMERIC.indexOf(a), NUMERIC.indexOf(b))];
  if ((a === 'int' && b === 'double') || (a === 'double' && b === 'int')) return 'double';
  if ((a === 'date' && b === 'timestamp') || (a === 'timestamp' && b === 'date')) return 'timestamp';
  return 'string';
}

/** PartitioningUtils.castPartValueToDesiredType for the inferred types. */
export function castPartitionValue(raw: string, type: PartitionType): PartitionValue {
  if (raw === DEFAULT_PARTITION_NAME || type === 'null') return null;
  switch (type) {
    case 'string':
      return unescapePathName(raw);
    case 'int':
      return Number(raw);
    case 'long':
      return BigInt(raw);
    case 'decimal':
      return BigInt(raw).toString();
    case 'double': {
      const t = raw.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '').replace(/[fFdD]$/, '');
      return t.endsWith('Infinity') ? (t.startsWith('-') ? -Infinity : Infinity) : Number(t);
    }
    case 'date':
      return parseDate(raw) ?? null;
    case 'timestamp': {
      const ts = parseTimestamp(unescapePathName(raw));
      if (ts) return ts;
      const d = parseDate(raw);
      return d ? new Date(`${d}T00:00:00Z`) : null;
    }
  }
}

export interface ParsedPartition {
  /** Column names in folder order, or none. */
  columns: { name: string; raw: string; type: PartitionType }[];
  /** The folder (relative, '' = root) where discovery stopped: Spark's discovered base path. */
  basePath: string;
}

/**
 * PartitioningUtils.parsePartition for one leaf folder, given relative to the
 * listed root ('' is the root itself): walks up from the leaf, collecting
 * `key=value` names, stopping at the root or at the first plain name above a
 * `key=value` one. Returns undefined for paths under a `_temporary` folder.
 */
export function parsePartitionPath(relDir: string, typeInference = true): ParsedPartition | undefined {
  const parts = relDir === '' ? [] : relDir.split('/');
  const columns: ParsedPartition['columns'] = [];
  let i = parts.length - 1;
  let stop = parts.length; // index of the first part NOT below the base
  while (i >= 0) {
    const name = parts[i];
    if (name.toLowerCase() === '_temporary') return undefined;
    const eq = name.indexOf('=');
    if (eq < 0) {
      if (columns.length > 0) break;
      i--;
      continue;
    }
    const colName = unescapePathName(name.slice(0, eq));
    const raw = name.slice(eq + 1);
    if (colName === '') throw new Error(`Empty partition column name in '${name}' (folder ${relDir})`);
    if (raw === '') throw new Error(`Empty partition column value in '${name}' (folder ${relDir})`);
    columns.push({ name: colName, raw, type: inferPartitionType(raw, typeInference) });
    stop = i;
    i--;
  }
  columns.reverse();
  if (columns.length === 0) return { columns, basePath: relDir };
  return { columns, basePath: parts.slice(0, stop).join('/') };
}

export interface PartitionColumn {
  name: string;
  type: PartitionType;
}

export interface ResolvedPartitions {
  columns: PartitionColumn[];
  /** Leaf folder -> typed values, for the folders that carry partition values. */
  values: Map<string, Record<string, PartitionValue>>;
}

/**
 * PartitioningUtils.parsePartitions over all leaf folders: every partitioned
 * folder must share one base and one column list; column types are widened
 * across folders. Throws Spark's "Conflicting directory structures" /
 * "Conflicting partition column names" errors.
 */
export function resolvePartitions(leafDirs: string[], typeInference = true, caseSensitive = false): ResolvedPartitions {
  const parsed: { dir: string; p: ParsedPartition }[] = [];
  const bases = new Set<string>();
  for (const dir of leafDirs) {
    const p = parsePartitionPath(dir, typeInference);
    if (!p) continue;
    bases.add(caseSensitive ? p.basePath : p.basePath.toLowerCase());
    if (p.columns.length) parsed.push({ dir, p });
  }
  if (parsed.length === 0) return { columns: [], values: new Map() };
  if (bases.size !== 1) {
    throw new Error(
      'Conflicting directory structures detected. Suspicious paths:\n\t' +
        [...bases].map((b) => b || '(root)').join('\n\t') +
        '\nIf provided paths are partition directories, please set "basePath" in the options of the data source ' +
        'to specify the root directory of the table. If there are multiple root directories, please load them separately and then union them.',
    );
  }
  const key = (names: string[]) => (caseSensitive ? names : names.map((n) => n.toLowerCase())).join('\u0000');
  const first = parsed[0].p.columns.map((c) => c.name);
  const bad = parsed.filter(({ p }) => key(p.columns.map((c) => c.name)) !== key(first));
  if (bad.length) {
    throw new Error(
      `Conflicting partition column names detected: [${first.join(', ')}] in ${parsed[0].dir} but ` +
        `[${bad[0].p.columns.map((c) => c.name).join(', ')}] in ${bad[0].dir}. For partitioned table directories, ` +
        'data files should only live in leaf directories, and directories at the same level should have the same partition column name.',
    );
  }
  const columns: PartitionColumn[] = first.map((name, i) => ({
    name,
    type: parsed.map(({ p }) => p.columns[i].type).reduce(widerPartitionType),
  }));
  const values = new Map<string, Record<string, PartitionValue>>();
  for (const { dir, p } of parsed) {
    const row: Record<string, PartitionValue> = {};
    columns.forEach((c, i) => (row[c.name] = castPartitionValue(p.columns[i].raw, c.type)));
    values.set(dir, row);
  }
  return { columns, values };
}

export interface PackingOptions {
  /** spark.sql.files.maxPartitionBytes (default 128 MiB). */
  maxPartitionBytes?: number;
  /** spark.sql.files.openCostInBytes (default 4 MiB). */
  openCostInBytes?: number;
  /** spark.sql.files.minPartitionNum (default: Spark's default parallelism; here the caller's). */
  minPartitionNum: number;
  /** spark.sql.files.maxPartitionNum (default: none). */
  maxPartitionNum?: number;
}

export const MAX_PARTITION_BYTES_DEFAULT = 128 * 1024 * 1024;
export const OPEN_COST_IN_BYTES_DEFAULT = 4 * 1024 * 1024;

/** FilePartition.maxSplitBytes: min(maxPartitionBytes, max(openCost, sum(len + openCost) / minPartitionNum)). */
export function maxSplitBytes(lengths: number[], opts: PackingOptions): number {
  const maxBytes = opts.maxPartitionBytes ?? MAX_PARTITION_BYTES_DEFAULT;
  const open = opts.openCostInBytes ?? OPEN_COST_IN_BYTES_DEFAULT;
  if (!(opts.minPartitionNum >= 1)) throw new RangeError(`minPartitionNum must be >= 1, got ${opts.minPartitionNum}`);
  let total = 0;
  for (const l of lengths) total += l + open;
  const bytesPerCore = Math.floor(total / opts.minPartitionNum); // Scala Long division
  return Math.min(maxBytes, Math.max(open, bytesPerCore));
}

/**
 * FilePartition.getFilePartitions: files (not split: images are not
 * splittable) sorted by length descending (stable), packed Next Fit
 * Decreasing where each file costs its length plus the open cost. With
 * maxPartitionNum, repacks at ceil(total / maxPartitionNum) when exceeded.
 * Returns partitions as lists of indices into `lengths`.
 */
export function packFilePartitions(
  lengths: number[],
  opts: PackingOptions,
): { maxSplitBytes: number; partitions: number[][] } {
  const open = opts.openCostInBytes ?? OPEN_COST_IN_BYTES_DEFAULT;
  const split = maxSplitBytes(lengths, opts);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const pack = (limit: number): number[][] => {
    const parts: number[][] = [];
    let cur: number[] = [];
    let size = 0;
    for (const i of order) {
      if (size + lengths[i] > limit && cur.length) {
        parts.push(cur);
        cur = [];
        size = 0;
      } else if (size + lengths[i] > limit) {
        size = 0;
      }
      size += lengths[i] + open;
      cur.push(i);
    }
    if (cur.length) parts.push(cur);
    return parts;
  };
  let partitions = pack(split);
  if (opts.maxPartitionNum !== undefined && partitions.length > opts.maxPartitionNum) {
    let total = 0;
    for (const l of lengths) total += l + open;
    partitions = pack(Math.ceil(total / opts.maxPartitionNum));
  }
  return { maxSplitBytes: split, partitions };
}
