// Pretrained weights as torchvision describes them (torchvision.models._api:
// Weights / WeightsEnum): where the file is, its hash, what it was trained
// to output and the preprocessing it expects. An entry can be built by hand
// or derived with `with()` (a mirror URL, a file of your own with its hash),
// and it fetches its file through the torch hub cache (hub.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Tensor } from '../tensor';
import { CenterCrop, Compose, Normalize, Resize, ToTensor, type Transform } from '../data/transforms';
import {
  cachedDownload,
  checkpointsDir,
  hashPrefixOf,
  readStateDict,
  verifyHashPrefix,
  WeightsError,
  type HubFetchOptions,
} from './hub';

/** torchvision's ImageClassification preset: resize the shorter side, center crop, scale to [0, 1], normalise. */
export interface ImageClassificationPreset {
  resizeSize: number;
  cropSize: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** Always Pillow's antialiased bilinear, as torchvision's default on PIL images. */
  interpolation: 'bilinear';
}

export interface WeightsMeta {
  /** Class names in logit order. */
  categories: readonly string[];
  numParams: number;
  /** Smallest input (h, w) the model accepts. */
  minSize: [number, number];
  /** How the weights were trained (a link). */
  recipe: string;
  /** The accuracy torchvision reports, in percent, on the validation set of `dataset`. */
  metrics: { dataset: string; acc1: number; acc5: number };
  /** Multiply-adds per image at cropSize, in billions (torchvision's _ops). */
  gflops: number;
  /** File size in MB (torchvision's _file_size). */
  fileSizeMB: number;
}

export interface WeightsEntryInit {
  /** The enum's name, e.g. 'ResNet50_Weights'. */
  enumName: string;
  /** The entry's name, e.g. 'IMAGENET1K_V2'. */
  name: string;
  /** The builder the weights fit, e.g. 'resnet50'. */
  model: string;
  url: string;
  /** Cache file name (default: the URL's last segment). */
  fileName?: string;
  /** Leading hex digits of the file's SHA-256 (default: taken from the file name, torchvision's convention). */
  hashPrefix?: string;
  meta: WeightsMeta;
  preset: ImageClassificationPreset;
}

export interface WeightsLoadOptions extends Omit<HubFetchOptions, 'fileName'> {
  /**
   * Where to take the file from instead of the official URL: a local path (or file:// URL), an https:// or
   * gs:// URL, or a folder / URL prefix ending in '/' that holds the official file name (a team mirror).
   * URLs are downloaded into the hub cache, and only when the cache does not have the file yet.
   */
  source?: string;
  /** Verify the file's SHA-256 prefix, on download and when found on disk (default true). */
  checkHash?: boolean;
}

function isUrl(s: string): boolean {
  return /^(https?|gs):\/\//i.test(s);
}

function baseNameOfUrl(url: string): string {
  if (/^gs:\/\//i.test(url)) return url.replace(/\/+$/, '').split('/').pop() ?? '';
  return decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
}

export class WeightsEntry {
  readonly enumName: string;
  readonly name: string;
  readonly model: string;
  readonly url: string;
  readonly fileName: string;
  readonly hashPrefix?: string;
  readonly meta: Readonly<WeightsMeta>;
  readonly preset: Readonly<ImageClassificationPreset>;

  constructor(init: WeightsEntryInit) {
    if (!isUrl(init.url))
      throw new TypeError(`weights url must be https://, http:// or gs://, got ${JSON.stringify(init.url)}`);
    this.enumName = init.enumName;
    this.name = init.name;
    this.model = init.model;
    this.url = init.url;
    this.fileName = init.fileName ?? baseNameOfUrl(init.url);
    if (!this.fileName || /[/\\]/.test(this.fileName))
      throw new TypeError(`cannot derive a file name from ${init.url}`);
    this.hashPrefix = init.hashPrefix ?? hashPrefixOf(this.fileName);
    if (this.hashPrefix !== undefined && !/^[0-9a-f]{1,64}$/.test(this.hashPrefix)) {
      throw new TypeError(
        `hashPrefix must be lowercase hex digits of a SHA-256, got ${JSON.stringify(this.hashPrefix)}`,
      );
    }
    this.meta = Object.freeze({ ...init.meta });
    this.preset = Object.freeze({ ...init.preset });
    Object.freeze(this);
  }

  /**
   * The same weights description with another URL, file name or hash (a mirror, a local test server).
   * Without `hashPrefix`, it comes from the new file name when that carries one, else stays this entry's
   * when the file name is unchanged.
   */
  with(overrides: { url?: string; fileName?: string; hashPrefix?: string }): WeightsEntry {
    const url = overrides.url ?? this.url;
    const fileName = overrides.fileName ?? baseNameOfUrl(url);
    const hashPrefix =
      overrides.hashPrefix ?? hashPrefixOf(fileName) ?? (fileName === this.fileName ? this.hashPrefix : undefined);
    return new WeightsEntry({ ...this, meta: { ...this.meta }, preset: { ...this.preset }, url, fileName, hashPrefix });
  }

  /** The eval preprocessing the weights were measured with (torchvision's weights.transforms()). */
  transforms(): Transform {
    const p = this.preset;
    return Compose([Resize(p.resizeSize), CenterCrop(p.cropSize), ToTensor(), Normalize(p.mean, p.std)]);
  }

  /** Where the file is cached (it may not be there yet). */
  cachePath(options: { modelDir?: string } = {}): string {
    return path.join(path.resolve(options.modelDir ?? checkpointsDir()), this.fileName);
  }

  /** Whether the hub cache already holds the file (not verified). */
  isCached(options: { modelDir?: string } = {}): boolean {
    return fs.existsSync(this.cachePath(options));
  }

  /** A local path to the verified file: the explicit source, else the hub cache, else downloaded from the official URL. */
  async fetch(options: WeightsLoadOptions = {}): Promise<string> {
    const checkHash = options.checkHash ?? true;
    const hashPrefix = checkHash ? this.hashPrefix : undefined;
    const what = this.toString();
    let src = options.source;
    if (src !== undefined) {
      if (typeof src !== 'string' || src === '')
        throw new TypeError(`${what}: source must be a path or a URL, got ${JSON.stringify(src)}`);
      if (isUrl(src)) {
        const url = src.endsWith('/') ? src + this.fileName : src;
        // Verified content is the official file: cache it under the official name, so every source shares it.
        const fileName = hashPrefix ? this.fileName : baseNameOfUrl(url);
        return cachedDownload(url, { ...options, fileName, hashPrefix, what });
      }
      if (/^file:/i.test(src)) src = fileURLToPath(src);
      let file = path.resolve(src);
      if (src.endsWith('/') || src.endsWith(path.sep) || fs.statSync(file, { throwIfNoEntry: false })?.isDirectory())
        file = path.join(file, this.fileName);
      if (!fs.existsSync(file))
        throw new WeightsError(`${what}: no file at ${file}`, { code: 'ENOENT', cachePath: file });
      if (hashPrefix) await verifyHashPrefix(file, hashPrefix, what);
      return file;
    }
    return cachedDownload(this.url, { ...options, fileName: this.fileName, hashPrefix, what });
  }

  /** The weights as a state dict (torchvision's get_state_dict): fetch() then read the file. */
  async getStateDict(options: WeightsLoadOptions = {}): Promise<Map<string, Tensor>> {
    return readStateDict(await this.fetch(options));
  }

  toString(): string {
    return `${this.enumName}.${this.name}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** What a builder's `weights` option takes: an entry, or its name ('IMAGENET1K_V2', 'DEFAULT', 'ResNet50_Weights.IMAGENET1K_V2'). */
export type WeightsLike = WeightsEntry | string;

/** What every weights enum has besides its entries. */
export interface WeightsEnumBase {
  readonly DEFAULT: WeightsEntry;
  readonly enumName: string;
  readonly model: string;
  /** The entry names, DEFAULT excluded. */
  names(): string[];
  entries(): WeightsEntry[];
  /** An entry from a name or an entry for this model (torchvision's verify); undefined for null/undefined. */
  verify(w: WeightsLike | null | undefined): WeightsEntry | undefined;
}

/** torchvision's WeightsEnum: the entries of one model, DEFAULT among them. */
export type WeightsEnum<K extends string> = { readonly [P in K]: WeightsEntry } & WeightsEnumBase;

const REGISTRY = new Map<string, WeightsEnumBase>();

export function defineWeights<K extends string>(
  enumName: string,
  model: string,
  table: Record<K, Omit<WeightsEntryInit, 'enumName' | 'name' | 'model'>>,
  defaultName: NoInfer<K>,
): WeightsEnum<K> {
  const entries = (Object.keys(table) as K[]).map(
    (name) => new WeightsEntry({ ...table[name], enumName, name, model }),
  );
  const byName = new Map(entries.map((e) => [e.name, e]));
  const e: Record<string, unknown> = Object.fromEntries(byName);
  e.DEFAULT = byName.get(defaultName);
  Object.defineProperties(e, {
    enumName: { value: enumName },
    model: { value: model },
    names: { value: () => entries.map((x) => x.name) },
    entries: { value: () => [...entries] },
    verify: {
      value: (w: WeightsLike | null | undefined): WeightsEntry | undefined => {
        if (w === null || w === undefined) return undefined;
        if (typeof w === 'string') {
          const key = w.startsWith(enumName + '.') ? w.slice(enumName.length + 1) : w;
          const hit = key === 'DEFAULT' ? (e.DEFAULT as WeightsEntry) : byName.get(key);
          if (!hit)
            throw new RangeError(
              `${model} has no weights ${JSON.stringify(w)}; known: ${[...byName.keys(), 'DEFAULT'].join(', ')}`,
            );
          return hit;
        }
        if (w instanceof WeightsEntry) {
          if (w.model !== model)
            throw new TypeError(
              `Invalid weights provided; expected ${enumName} but received ${w.enumName} (for ${w.model})`,
            );
          return w;
        }
        throw new TypeError(`weights must be a WeightsEntry or a name such as 'DEFAULT', got ${typeof w}`);
      },
    },
  });
  const frozen = Object.freeze(e) as unknown as WeightsEnum<K>;
  REGISTRY.set(model, frozen);
  return frozen;
}

/** torchvision.models.get_model_weights('resnet50'): the weights enum of a builder. */
export function getModelWeights(model: string): WeightsEnumBase {
  const e = REGISTRY.get(model);
  if (!e)
    throw new RangeError(
      `no pretrained weights known for ${JSON.stringify(model)}; known: ${[...REGISTRY.keys()].join(', ')}`,
    );
  return e;
}

/** torchvision.models.get_weight('ResNet50_Weights.IMAGENET1K_V2'). */
export function getWeight(fullName: string): WeightsEntry {
  const dot = fullName.indexOf('.');
  for (const e of REGISTRY.values()) if (dot > 0 && e.enumName === fullName.slice(0, dot)) return e.verify(fullName)!;
  throw new RangeError(`unknown weights ${JSON.stringify(fullName)}; expected e.g. 'ResNet50_Weights.IMAGENET1K_V2'`);
}

/** Every registered weights enum, in registration order. */
export function listModelWeights(): WeightsEnumBase[] {
  return [...REGISTRY.values()];
}
