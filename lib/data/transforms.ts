// torchvision.transforms, as plain descriptions that the native pipeline
// executes (no JS runs per image). Names, arguments and semantics follow
// torchvision 0.14 on PIL images: bilinear resizes are Pillow's antialiased
// bilinear, RandomResizedCrop samples with torchvision's algorithm (10 tries,
// then a central crop), CenterCrop pads with zeros when the image is smaller.
// Random parameters come from a per-sample generator seeded by
// (loader seed, epoch, sample index), so a run is reproducible whatever the
// thread scheduling; they are not torch's random streams.

export type Size = number | readonly [number, number];

export type Transform =
  | { op: 'RandomResizedCrop'; size: [number, number]; scale: [number, number]; ratio: [number, number] }
  | { op: 'Resize'; size: number | [number, number]; maxSize?: number }
  | { op: 'CenterCrop'; size: [number, number] }
  | { op: 'RandomHorizontalFlip'; p: number }
  | { op: 'Normalize'; mean: [number, number, number]; std: [number, number, number] }
  | { op: 'ToTensor' }
  | { op: 'Compose'; transforms: Transform[] };

function hw(size: Size, what: string): [number, number] {
  const s: [number, number] = typeof size === 'number' ? [size, size] : [size[0], size[1]];
  if (!s.every((v) => Number.isInteger(v) && v > 0))
    throw new TypeError(`${what}: size must be a positive integer or [h, w]`);
  return s;
}

function range(v: readonly [number, number], what: string): [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isFinite(x)))
    throw new TypeError(`${what} must be [lo, hi]`);
  return [v[0], v[1]];
}

/** Crop a random area (fraction `scale` of the image, aspect `ratio`) and resize it to `size`. */
export function RandomResizedCrop(
  size: Size,
  scale: readonly [number, number] = [0.08, 1.0],
  ratio: readonly [number, number] = [3 / 4, 4 / 3],
): Transform {
  const sc = range(scale, 'RandomResizedCrop scale');
  const ra = range(ratio, 'RandomResizedCrop ratio');
  if (sc[0] > sc[1] || ra[0] > ra[1])
    throw new RangeError('RandomResizedCrop: scale and ratio should be of kind (min, max)');
  // The crop is a fraction of the image: 0 or less never fits, over 1 never fits either.
  if (!(sc[0] > 0 && sc[1] <= 1))
    throw new RangeError(`RandomResizedCrop: scale must lie in (0, 1], got [${sc[0]}, ${sc[1]}]`);
  // log(ratio) is drawn: a ratio <= 0 has no logarithm.
  if (!(ra[0] > 0)) throw new RangeError(`RandomResizedCrop: ratio must be > 0, got [${ra[0]}, ${ra[1]}]`);
  return { op: 'RandomResizedCrop', size: hw(size, 'RandomResizedCrop'), scale: sc, ratio: ra };
}

/** Resize the shorter side to `size` (a number) or to exactly [h, w]. */
export function Resize(size: Size, maxSize?: number): Transform {
  if (typeof size === 'number') {
    if (!Number.isInteger(size) || size <= 0) throw new TypeError('Resize: size must be a positive integer or [h, w]');
    if (maxSize !== undefined && maxSize <= size)
      throw new RangeError(
        `max_size = ${maxSize} must be strictly greater than the requested size for the smaller edge size = ${size}`,
      );
    return maxSize === undefined ? { op: 'Resize', size } : { op: 'Resize', size, maxSize };
  }
  if (maxSize !== undefined) throw new TypeError('Resize: maxSize only applies when size is a number');
  return { op: 'Resize', size: hw(size, 'Resize') };
}

export function CenterCrop(size: Size): Transform {
  return { op: 'CenterCrop', size: hw(size, 'CenterCrop') };
}

export function RandomHorizontalFlip(p = 0.5): Transform {
  if (!(p >= 0 && p <= 1)) throw new RangeError('RandomHorizontalFlip: p must be in [0, 1]');
  return { op: 'RandomHorizontalFlip', p };
}

export function Normalize(mean: readonly number[], std: readonly number[]): Transform {
  if (mean.length !== 3 || std.length !== 3) throw new TypeError('Normalize: mean and std need 3 values (RGB)');
  if (std.some((s) => s === 0))
    throw new RangeError('std evaluated to zero after conversion to float32, leading to division by zero.');
  return { op: 'Normalize', mean: [mean[0], mean[1], mean[2]], std: [std[0], std[1], std[2]] };
}

/** Accepted for familiarity: the loader always produces CHW tensors scaled to [0, 1] before Normalize. */
export function ToTensor(): Transform {
  return { op: 'ToTensor' };
}

export function Compose(transforms: readonly Transform[]): Transform {
  if (!Array.isArray(transforms)) throw new TypeError('Compose takes an array of transforms');
  return { op: 'Compose', transforms: [...transforms] };
}

/** Default libjpeg working memory per image and worker (256 MiB). */
export const DEFAULT_MAX_DECODER_BYTES = 256 * 2 ** 20;

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

/** torchvision's ImageNet training recipe: RandomResizedCrop, flip, normalise. */
export function imagenetTrain(size = 224): Transform {
  return Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)]);
}

/** torchvision's ImageNet evaluation recipe: Resize(size * 256 / 224), CenterCrop(size), normalise. */
export function imagenetEval(size = 224): Transform {
  return Compose([
    Resize(Math.floor((size * 256) / 224)),
    CenterCrop(size),
    ToTensor(),
    Normalize(IMAGENET_MEAN, IMAGENET_STD),
  ]);
}

/** What the native pipeline runs: the flat op list and the fixed output size. */
export interface PipelineSpec {
  ops: Exclude<Transform, { op: 'Compose' } | { op: 'ToTensor' }>[];
  outH: number;
  outW: number;
  uint8: boolean;
  /** Batch buffers in page-locked memory, decoded into directly (a no-op without a usable GPU). */
  pinMemory?: boolean;
  dctScaling: boolean;
  maxPixels: number;
  /** libjpeg working memory per image, bytes (see DataLoaderOptions.maxDecoderMemory). */
  maxDecoderBytes: number;
  exifTranspose: boolean;
}

export function flatten(t: Transform | readonly Transform[]): PipelineSpec['ops'] {
  const list = Array.isArray(t) ? (t as Transform[]) : [t as Transform];
  const out: PipelineSpec['ops'] = [];
  for (const x of list) {
    if (!x || typeof x !== 'object' || typeof (x as { op?: unknown }).op !== 'string')
      throw new TypeError('a transform must come from torchline transforms (e.g. transforms.Resize(256))');
    if (x.op === 'Compose') out.push(...flatten(x.transforms));
    else if (x.op !== 'ToTensor') out.push(x);
  }
  return out;
}

export function toSpec(
  t: Transform | readonly Transform[],
  options: {
    uint8?: boolean;
    pinMemory?: boolean;
    dctScaling?: boolean;
    maxPixels?: number;
    maxDecoderBytes?: number;
    exifTranspose?: boolean;
  } = {},
): PipelineSpec {
  const ops = flatten(t);
  // The batch needs one size: the last op that sets it must set both sides.
  let size: [number, number] | undefined;
  for (const op of ops) {
    if (op.op === 'RandomResizedCrop' || op.op === 'CenterCrop') size = op.size;
    else if (op.op === 'Resize') size = typeof op.size === 'number' ? undefined : op.size;
  }
  if (!size)
    throw new TypeError(
      'the transforms must end with a fixed output size (RandomResizedCrop, CenterCrop or Resize([h, w])) to batch images',
    );
  const maxDecoderBytes = options.maxDecoderBytes ?? DEFAULT_MAX_DECODER_BYTES;
  if (!(Number.isSafeInteger(maxDecoderBytes) && maxDecoderBytes >= 0))
    throw new RangeError(
      `maxDecoderMemory must be a non-negative integer (bytes; 0: no limit), got ${maxDecoderBytes}`,
    );
  if (options.exifTranspose !== undefined && typeof options.exifTranspose !== 'boolean')
    throw new TypeError('exifTranspose must be a boolean');
  return {
    ops,
    outH: size[0],
    outW: size[1],
    uint8: options.uint8 ?? false,
    pinMemory: options.pinMemory ?? false,
    dctScaling: options.dctScaling ?? ops.some((o) => o.op === 'RandomResizedCrop'),
    maxPixels: options.maxPixels ?? 0,
    maxDecoderBytes: options.maxDecoderBytes ?? DEFAULT_MAX_DECODER_BYTES,
    exifTranspose: options.exifTranspose ?? true,
  };
}
