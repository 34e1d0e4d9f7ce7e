// Pretrained weights into a model whose head differs (the seed's fine-tuning:
// torchvision resnet50 weights, new `fc` for numClasses). Pure functions over
// state dicts, so they work with any module that has stateDict/loadStateDict.
import { Tensor } from '../tensor';
import { CheckpointError } from './errors';
import { load, StateDict } from './torch-save';
import { load as loadSafetensors } from './safetensors';

export interface ShapeLike {
  readonly shape: readonly number[];
}

export interface FilterResult {
  /** Source tensors whose key and shape match the target: load these. */
  loaded: StateDict;
  /** Keys in both whose shapes differ (e.g. `fc.weight` when numClasses differs). */
  skipped: { key: string; sourceShape: number[]; targetShape: number[] }[];
  /** Target keys the source lacks (they keep their initial values). */
  missing: string[];
  /** Source keys the target lacks. */
  unexpected: string[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Splits `source` against the keys and shapes of `target`. */
export function filterStateDict(
  source: ReadonlyMap<string, Tensor>,
  target: ReadonlyMap<string, ShapeLike>,
): FilterResult {
  const r: FilterResult = { loaded: new Map(), skipped: [], missing: [], unexpected: [] };
  for (const [key, t] of source) {
    const want = target.get(key);
    if (!want) r.unexpected.push(key);
    else if (!sameShape(t.shape, want.shape))
      r.skipped.push({ key, sourceShape: t.shape, targetShape: [...want.shape] });
    else r.loaded.set(key, t);
  }
  for (const key of target.keys()) if (!source.has(key)) r.missing.push(key);
  return r;
}

/**
 * The state dict inside a loaded checkpoint: the value itself when it maps
 * names to tensors, else its `state_dict` / `model` / `model_state_dict`
 * entry. A DataParallel `module.` prefix on every key is removed.
 */
export function extractStateDict(value: unknown): StateDict {
  const asMap = (v: unknown): Map<string, unknown> | undefined =>
    v instanceof Map
      ? (v as Map<string, unknown>)
      : v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Tensor)
        ? new Map(Object.entries(v))
        : undefined;
  let m = asMap(value);
  const isSd = (x: Map<string, unknown> | undefined) =>
    !!x && x.size > 0 && [...x.values()].every((t) => t instanceof Tensor);
  if (m && !isSd(m)) {
    for (const k of ['state_dict', 'model', 'model_state_dict', 'weights']) {
      const inner = asMap(m.get(k));
      if (isSd(inner)) {
        m = inner;
        break;
      }
    }
  }
  if (!m || !isSd(m))
    throw new CheckpointError(
      'no state dict found (expected a map of tensors, or one under state_dict/model/model_state_dict)',
    );
  const keys = [...m.keys()];
  const strip = keys.every((k) => k.startsWith('module.'));
  return new Map([...m].map(([k, t]) => [strip ? k.slice('module.'.length) : k, t as Tensor]));
}

/** What loadPretrained needs from a model (the models module provides it). */
export interface StateDictModule {
  stateDict(): ReadonlyMap<string, ShapeLike>;
  loadStateDict(sd: StateDict, options: { strict: boolean }): unknown;
}

export interface PretrainedReport {
  loaded: string[];
  /** Keys dropped by `exclude` before matching. */
  excluded: string[];
  skipped: FilterResult['skipped'];
  missing: string[];
  unexpected: string[];
}

/**
 * Loads a .pth / .safetensors file into `module`, keeping every tensor whose
 * name and shape match; the rest (a differently sized `fc` when numClasses
 * differs from the file's) keep the module's own initial values.
 */
export function loadPretrained(
  module: StateDictModule,
  file: string | StateDict,
  options: { /** Keys never to load (e.g. /^fc\./ for a fresh head even at 1000 classes). */ exclude?: RegExp } = {},
): PretrainedReport {
  const all =
    typeof file === 'string'
      ? file.endsWith('.safetensors')
        ? loadSafetensors(file)
        : extractStateDict(load(file))
      : file;
  const excluded = options.exclude ? [...all.keys()].filter((k) => options.exclude!.test(k)) : [];
  const source = excluded.length ? new Map([...all].filter(([k]) => !excluded.includes(k))) : all;
  const r = filterStateDict(source, module.stateDict());
  // excluded keys the module has are reported missing (they keep their initial values)
  module.loadStateDict(r.loaded, { strict: false });
  if (typeof file === 'string') for (const [k, t] of all) if (!r.loaded.has(k)) t.dispose();
  return { loaded: [...r.loaded.keys()], excluded, skipped: r.skipped, missing: r.missing, unexpected: r.unexpected };
}
