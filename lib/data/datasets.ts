// Datasets map an index to where the image is (a local path or bytes in
// memory) and its integer label. Decoding happens later, in the loader's
// native pipeline, so a dataset is cheap to build and to index.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sampler } from './sampler';
import type { Transform } from './transforms';

/** Decoded pixels as Spark's image source stores them: row-major, OpenCV channel order (BGR, BGRA, grey). */
export interface RawImage {
  bgr: Uint8Array;
  width: number;
  height: number;
  /** OpenCV type: CV_8UC1 = 0, CV_8UC3 = 16, CV_8UC4 = 24. */
  mode: number;
}

export interface DataItem {
  /** A local file path, the encoded file in memory, or decoded BGR(A) pixels. */
  source: string | Uint8Array | RawImage;
  label: number;
  /** What logs and errors call this sample (default: the path, or its size). */
  name?: string;
  /** Set when the sample could not be read at all: the loader skips or raises it (onError). */
  error?: string;
}

/** Items of one DataLoader iteration, read ahead in the order the loader announced (streaming datasets). */
export interface EpochReader {
  getItems(indices: readonly number[]): Promise<DataItem[]>;
  /** The iteration ended (or stopped early): drop what was read ahead. */
  close(): void;
}

/** What DataLoader needs: a length and an item per index. */
export interface Dataset {
  readonly length: number;
  getItem(index: number): DataItem;
  /** Datasets whose rows are read asynchronously (e.g. Parquet): the items of a batch. */
  getItems?(indices: readonly number[]): Promise<DataItem[]>;
  /** Called when an iteration starts with the indices it will ask for, in order, so they can be read ahead. */
  openEpoch?(order: ArrayLike<number>): EpochReader;
  /** The sampler a DataLoader uses when given none (e.g. one that keeps reads within a few row groups). */
  createSampler?(options: { shuffle: boolean; seed: number }): Sampler;
}

/** torchvision.datasets.folder.IMG_EXTENSIONS */
export const IMG_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'] as const;

/** Python's str ordering (by code point), which differs from JS's UTF-16 order above U+FFFF. */
export function comparePython(a: string, b: string): number {
  const ia = a[Symbol.iterator](),
    ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next(),
      y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const cx = x.value.codePointAt(0)!,
      cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx - cy;
  }
}

function hasExtension(file: string, extensions: readonly string[]): boolean {
  const lower = file.toLowerCase();
  return extensions.some((e) => lower.endsWith(e));
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory(); // follows symlinks, like os.scandir().is_dir()
  } catch {
    return false;
  }
}

/** os.walk(top, followlinks=True), sorted by directory path like torchvision's make_dataset. */
function walkSorted(top: string): { dir: string; files: string[] }[] {
  const out: { dir: string; files: string[] }[] = [];
  const visit = (dir: string, seen: Set<string>) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    const files: string[] = [];
    const dirs: string[] = [];
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory() || (e.isSymbolicLink() && isDir(full))) dirs.push(full);
      else files.push(e.name);
    }
    out.push({ dir, files });
    for (const d of dirs) {
      let real: string;
      try {
        real = fs.realpathSync(d);
      } catch {
        continue;
      }
      if (seen.has(real)) continue; // a symlink loop would never end
      visit(d, new Set(seen).add(real));
    }
  };
  visit(top, new Set([fs.realpathSync(top)]));
  out.sort((a, b) => comparePython(a.dir, b.dir));
  for (const d of out) d.files.sort(comparePython);
  return out;
}

export interface ImageFolderOptions {
  /** File extensions that count as images (case-insensitive); default torchvision's IMG_EXTENSIONS. */
  extensions?: readonly string[];
  /** Instead of extensions: a predicate on the full path. */
  isValidFile?: (file: string) => boolean;
  /** The transforms a DataLoader applies (torchvision's dataset `transform`). */
  transform?: Transform | Transform[];
}

/**
 * torchvision.datasets.ImageFolder: root/<class>/**\/<image>. Classes are the
 * sub-folders sorted by name (Python order), labels their index; samples are
 * listed in torchvision's order (folders by path, then files by name).
 */
export class ImageFolder implements Dataset {
  readonly root: string;
  readonly classes: string[];
  readonly classToIdx: Record<string, number>;
  readonly samples: [string, number][];
  readonly targets: number[];
  readonly transform?: Transform | Transform[];

  constructor(root: string, options: ImageFolderOptions = {}) {
    this.root = root;
    this.transform = options.transform;
    if (!isDir(root)) throw new Error(`ImageFolder: ${root} is not a directory`);
    this.classes = fs
      .readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory() || (e.isSymbolicLink() && isDir(path.join(root, e.name))))
      .map((e) => e.name)
      .sort(comparePython);
    if (this.classes.length === 0) throw new Error(`Couldn't find any class folder in ${root}.`);
    this.classToIdx = Object.fromEntries(this.classes.map((c, i) => [c, i]));
    const extensions = (options.extensions ?? IMG_EXTENSIONS).map((e) => e.toLowerCase());
    const valid = options.isValidFile ?? ((f: string) => hasExtension(f, extensions));
    this.samples = [];
    const empty: string[] = [];
    for (const cls of this.classes) {
      const before = this.samples.length;
      for (const { dir, files } of walkSorted(path.join(root, cls))) {
        for (const f of files) {
          const p = path.join(dir, f);
          if (valid(p)) this.samples.push([p, this.classToIdx[cls]]);
        }
      }
      if (this.samples.length === before) empty.push(cls);
    }
    if (empty.length > 0)
      throw new Error(
        `Found no valid file for the classes ${empty.sort(comparePython).join(', ')}. ` +
          `Supported extensions are: ${options.isValidFile ? '(custom isValidFile)' : extensions.join(', ')}`,
      );
    this.targets = this.samples.map((s) => s[1]);
  }

  get length(): number {
    return this.samples.length;
  }

  getItem(index: number): DataItem {
    const s = this.samples[index];
    if (!s) throw new RangeError(`index ${index} out of range for ${this.samples.length} samples`);
    return { source: s[0], label: s[1] };
  }
}

/** A class list read from a label-map file. */
export interface LabelMap {
  classes: string[];
  classToIdx: Record<string, number>;
  /** The rest of each line (e.g. ImageNet's "tench, Tinca tinca"). */
  descriptions: string[];
}

/**
 * Reads a synset / label-map file: one class per line, its first token
 * (up to whitespace or a comma) is the class name and the line order is its
 * index, e.g. ImageNet's LOC_synset_mapping.txt ("n01440764 tench, Tinca tinca").
 * Empty lines and lines starting with # are skipped.
 */
export function readLabelMap(file: string): LabelMap {
  const classes: string[] = [];
  const descriptions: string[] = [];
  const classToIdx: Record<string, number> = {};
  fs.readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((line, n) => {
      const t = line.trim();
      if (!t || t.startsWith('#')) return;
      const m = /^([^\s,]+)[\s,]*(.*)$/.exec(t)!;
      if (m[1] in classToIdx) throw new Error(`${file}:${n + 1}: class ${m[1]} listed twice`);
      classToIdx[m[1]] = classes.length;
      classes.push(m[1]);
      descriptions.push(m[2]);
    });
  if (classes.length === 0) throw new Error(`${file}: no classes`);
  return { classes, classToIdx, descriptions };
}

export type LabelRule = RegExp | ((file: string) => string | number);

export interface LabeledOptions {
  /** Class order: a list, a label-map file (readLabelMap) or a map; default: the labels found, sorted. */
  classes?: readonly string[] | string | Record<string, number>;
  /** The transforms a DataLoader applies. */
  transform?: Transform | Transform[];
}

function resolveClasses(
  found: Iterable<string>,
  opt: LabeledOptions['classes'],
): { classes: string[]; classToIdx: Record<string, number> } {
  if (typeof opt === 'string') return readLabelMap(opt);
  if (Array.isArray(opt)) return { classes: [...opt], classToIdx: Object.fromEntries(opt.map((c, i) => [c, i])) };
  if (opt && typeof opt === 'object') {
    const map = opt as Record<string, number>;
    const classes: string[] = [];
    for (const [c, i] of Object.entries(map)) classes[i] = c;
    return { classes, classToIdx: { ...map } };
  }
  const classes = [...new Set(found)].sort(comparePython);
  return { classes, classToIdx: Object.fromEntries(classes.map((c, i) => [c, i])) };
}

function labelOf(rule: LabelRule, file: string): string | number {
  if (typeof rule === 'function') return rule(file);
  const m = rule.exec(path.basename(file));
  if (!m) throw new Error(`the label pattern ${rule} does not match ${file}`);
  return m[1] ?? m[0];
}

export function mapLabels(
  raw: (string | number)[],
  names: string[],
  opt: LabeledOptions['classes'],
): { labels: number[]; classes: string[]; classToIdx: Record<string, number> } {
  const strings = raw.filter((r): r is string => typeof r === 'string');
  const { classes, classToIdx } = resolveClasses(strings, opt);
  const labels = raw.map((r, i) => {
    if (typeof r === 'number') {
      if (!Number.isInteger(r) || r < 0)
        throw new Error(`label of ${names[i]} must be a non-negative integer, got ${r}`);
      return r;
    }
    const idx = classToIdx[r];
    if (idx === undefined) throw new Error(`label ${JSON.stringify(r)} of ${names[i]} is not a known class`);
    return idx;
  });
  return { labels, classes, classToIdx };
}

/**
 * Images whose label comes from their file name, e.g. ImageNet's
 * `n01440764_10026.JPEG` with `label: /^(n\d{8})_/`. `files` is a directory
 * (searched recursively, torchvision's order and extensions) or a list of paths.
 */
export class ImageFiles implements Dataset {
  readonly files: string[];
  readonly labels: number[];
  readonly classes: string[];
  readonly classToIdx: Record<string, number>;
  readonly transform?: Transform | Transform[];

  constructor(
    files: string | readonly string[],
    options: LabeledOptions & { label: LabelRule; extensions?: readonly string[] },
  ) {
    this.transform = options.transform;
    if (typeof files === 'string') {
      const ext = (options.extensions ?? IMG_EXTENSIONS).map((e) => e.toLowerCase());
      this.files = walkSorted(files).flatMap(({ dir, files: fs_ }) =>
        fs_.filter((f) => hasExtension(f, ext)).map((f) => path.join(dir, f)),
      );
    } else {
      this.files = [...files];
    }
    const m = mapLabels(
      this.files.map((f) => labelOf(options.label, f)),
      this.files,
      options.classes,
    );
    this.labels = m.labels;
    this.classes = m.classes;
    this.classToIdx = m.classToIdx;
  }

  get length(): number {
    return this.files.length;
  }

  getItem(index: number): DataItem {
    if (!(index >= 0 && index < this.files.length)) throw new RangeError(`index ${index} out of range`);
    return { source: this.files[index], label: this.labels[index] };
  }
}

/** One manifest row: a local path / file: URL, or the bytes themselves. */
export interface ManifestRow {
  uri?: string;
  bytes?: Uint8Array;
  label: number | string;
}

/**
 * Rows of { uri, label } (e.g. a storage listing after download) or
 * { bytes, label } (images already in memory).
 */
export class ManifestDataset implements Dataset {
  readonly classes: string[];
  readonly classToIdx: Record<string, number>;
  private readonly sources: (string | Uint8Array)[];
  private readonly labels: number[];
  readonly transform?: Transform | Transform[];

  constructor(rows: readonly ManifestRow[], options: LabeledOptions = {}) {
    this.transform = options.transform;
    this.sources = rows.map((r, i) => {
      if (r.bytes instanceof Uint8Array) return r.bytes;
      if (typeof r.uri !== 'string') throw new TypeError(`manifest row ${i} needs a uri or bytes`);
      if (r.uri.startsWith('file:')) return fileURLToPath(r.uri);
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(r.uri))
        throw new Error(
          `manifest row ${i}: ${r.uri} is not local; download it first (torchline storage) or pass bytes`,
        );
      return r.uri;
    });
    const m = mapLabels(
      rows.map((r) => r.label),
      rows.map((r, i) => r.uri ?? `row ${i}`),
      options.classes,
    );
    this.labels = m.labels;
    this.classes = m.classes;
    this.classToIdx = m.classToIdx;
  }

  get length(): number {
    return this.sources.length;
  }

  getItem(index: number): DataItem {
    if (!(index >= 0 && index < this.sources.length)) throw new RangeError(`index ${index} out of range`);
    return { source: this.sources[index], label: this.labels[index] };
  }
}
