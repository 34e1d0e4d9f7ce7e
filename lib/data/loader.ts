// DataLoader: batches of { images, labels } as an async iterator. Each batch
// is decoded and transformed on native threads (libjpeg-turbo for plain
// JPEGs, sharp for the rest) straight into one NCHW buffer, while the
// consumer works on earlier batches; at most `prefetch` batches are prepared
// ahead, so memory stays bounded.
import { randomInt } from 'node:crypto';
import { binding } from '../native';
import { defaultNumWorkers } from '../runtime';
import { Tensor } from '../tensor';
import { Device, DeviceLike } from '../device';
import { DataItem, Dataset, EpochReader } from './datasets';
import { decodeWithSharp } from './decode';
import { RandomSampler, Sampler, SequentialSampler } from './sampler';
import { PipelineSpec, toSpec, Transform } from './transforms';

/** Pillow's DecompressionBombError threshold (2 * Image.MAX_IMAGE_PIXELS). */
export const DEFAULT_MAX_PIXELS = 178956970;

export interface DataLoaderOptions {
  /** The transforms (torchline.transforms); default: the dataset's `transform`. */
  transform?: Transform | Transform[];
  batchSize?: number;
  /** Reshuffle every epoch (torch.randperm seeded with seed + epoch). Ignored with `sampler`. */
  shuffle?: boolean;
  /** Seeds the shuffle and the random transforms; default: a random seed. */
  seed?: number;
  /** Drop the last incomplete batch. */
  dropLast?: boolean;
  /** Native decode threads (default: defaultNumWorkers(), every core, as the intra-op threads). */
  numWorkers?: number;
  /** Batches prepared ahead of the one the consumer awaits (default 2). */
  prefetch?: number;
  /** Custom index order, e.g. a DistributedSampler. */
  sampler?: Sampler;
  /** A bad image: 'raise' (default) rejects the iteration; 'skip' drops it from its batch and logs it once. */
  onError?: 'skip' | 'raise';
  /** Images with more pixels are refused (decompression bombs); 0 disables. Default 178956970 (PIL's). */
  maxPixels?: number;
  /**
   * Bytes of libjpeg working memory one worker may use for one image (the whole-image coefficient buffer of a
   * progressive JPEG: ~3 bytes per pixel at 4:2:0); larger files are refused as bad images. Default 256 MiB.
   */
  maxDecoderMemory?: number;
  /**
   * Apply the EXIF orientation tag (rotate/flip as the camera was held), as PIL's ImageOps.exif_transpose.
   * Default true. torchvision's ImageFolder does NOT apply it: pass false to get its pixels exactly.
   */
  exifTranspose?: boolean;
  /** uint8 images (N,3,H,W, 0..255) instead of normalised float32: normalise on the device. */
  uint8?: boolean;
  /**
   * Let libjpeg-turbo decode at n/8 scale when the crop is at least that much larger than its target size.
   * Much faster, but its IDCT filter is not Pillow's: pixels differ by ~1-5/255 on average. Default: on when
   * the transforms are random (RandomResizedCrop), off otherwise, so evaluation matches torchvision exactly.
   */
  dctScaling?: boolean;
  /** With CUDA: page-locked batches, so `images.to('cuda', { nonBlocking: true })` overlaps. Ignored without a GPU. */
  pinMemory?: boolean;
  /** Where skip messages go (default console.warn). */
  log?: (message: string) => void;
}

export interface Batch {
  /** float32 (N, 3, H, W), normalised; uint8 with the `uint8` option. */
  images: Tensor;
  /** int64 (N) */
  labels: Tensor;
  /** The dataset indices in this batch (skipped samples removed). */
  indices: number[];
}

export interface SkippedSample {
  index: number;
  source: string;
  reason: string;
}

function describe(item: DataItem): string {
  if (item.name) return item.name;
  const s = item.source;
  return typeof s === 'string'
    ? s
    : s instanceof Uint8Array
      ? `<${s.byteLength} bytes in memory>`
      : `<${s.width}x${s.height} pixels in memory>`;
}

/**
 * ToTensor + Normalize for a uint8 batch (DataLoader `uint8: true`), done
 * after moving it to `device`: a quarter of the bytes cross the bus and the
 * GPU does the arithmetic. On CPU it equals the float loader's output.
 */
export function normalize(
  images: Tensor,
  mean: readonly number[],
  std: readonly number[],
  device: DeviceLike = 'cpu',
): Tensor {
  return new Tensor(binding.data.normalize(images.handle, [...mean], [...std], Device.parse(device).toString()));
}

export class DataLoader implements AsyncIterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly dropLast: boolean;
  readonly numWorkers: number;
  readonly prefetch: number;
  readonly sampler: Sampler;
  readonly seed: number;
  readonly onError: 'skip' | 'raise';
  readonly spec: PipelineSpec;
  readonly pinMemory: boolean;
  /** Every sample skipped so far (onError: 'skip'), first occurrence of each source. */
  readonly skipped: SkippedSample[] = [];
  private epoch = 0;
  private readonly pipeline: any;
  private readonly logged = new Set<string>();
  private readonly log: (message: string) => void;

  constructor(dataset: Dataset & { transform?: Transform | Transform[] }, options: DataLoaderOptions = {}) {
    if (!dataset || typeof dataset.getItem !== 'function' || typeof dataset.length !== 'number')
      throw new TypeError('DataLoader needs a dataset with length and getItem(index)');
    this.dataset = dataset;
    this.batchSize = options.batchSize ?? 1;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1)
      throw new RangeError('batchSize must be a positive integer');
    this.dropLast = options.dropLast ?? false;
    this.numWorkers = Math.max(1, options.numWorkers ?? defaultNumWorkers());
    this.prefetch = Math.max(1, options.prefetch ?? 2);
    this.seed = options.seed ?? randomInt(2 ** 31);
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new RangeError('seed must be a non-negative integer');
    this.onError = options.onError ?? 'raise';
    if (this.onError !== 'skip' && this.onError !== 'raise') throw new TypeError("onError must be 'skip' or 'raise'");
    this.log = options.log ?? ((m) => console.warn(m));
    this.pinMemory = options.pinMemory ?? false;
    if (options.sampler && options.shuffle) throw new TypeError('sampler option is mutually exclusive with shuffle');
    this.sampler =
      options.sampler ??
      dataset.createSampler?.({ shuffle: options.shuffle ?? false, seed: this.seed }) ??
      (options.shuffle ? new RandomSampler(dataset.length, this.seed) : new SequentialSampler(dataset.length));
    const transform = options.transform ?? dataset.transform;
    if (!transform) throw new TypeError('DataLoader needs a transform (options.transform or dataset.transform)');
    this.spec = toSpec(transform, {
      uint8: options.uint8,
      pinMemory: this.pinMemory,
      dctScaling: options.dctScaling,
      maxPixels: options.maxPixels ?? DEFAULT_MAX_PIXELS,
      maxDecoderBytes: options.maxDecoderMemory,
      exifTranspose: options.exifTranspose,
    });
    this.pipeline = new binding.data.DataPipeline(this.spec, this.numWorkers);
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.sampler.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /**
   * The epoch the next iteration uses (shuffle order and random transforms).
   * A completed iteration advances it by one, so plain loops reshuffle.
   */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError('epoch must be a non-negative integer');
    this.epoch = epoch;
  }

  get currentEpoch(): number {
    return this.epoch;
  }

  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.iterate()[Symbol.asyncIterator]();
  }

  /**
   * The current epoch's batches from `startBatch` on: a run resumed mid-epoch
   * continues with exactly the batches it had not seen, without decoding the others.
   */
  async *iterate(options: { startBatch?: number } = {}): AsyncIterable<Batch> {
    const startBatch = options.startBatch ?? 0;
    if (!Number.isInteger(startBatch) || startBatch < 0)
      throw new RangeError(`startBatch must be a non-negative integer, got ${startBatch}`);
    const epoch = this.epoch;
    const order = this.sampler.indices(epoch);
    const batches: number[][] = [];
    for (let i = 0; i < order.length; i += this.batchSize) {
      const b = Array.from(
        order.length - i >= this.batchSize ? { length: this.batchSize } : { length: order.length - i },
        (_, k) => order[i + k],
      );
      if (b.length < this.batchSize && this.dropLast) break;
      batches.push(b);
    }
    const inflight: Promise<Batch | null>[] = [];
    let next = Math.min(startBatch, batches.length);
    // Streaming datasets read ahead along the order this iteration will ask for.
    const reader = this.dataset.openEpoch?.(batches.slice(next).flat());
    const launch = () => {
      while (inflight.length < this.prefetch && next < batches.length) {
        const p = this.loadBatch(batches[next++], epoch, reader);
        p.catch(() => {}); // rejections surface when the batch is awaited
        inflight.push(p);
      }
    };
    try {
      launch();
      while (inflight.length > 0) {
        const p = inflight.shift()!;
        launch();
        const b = await p;
        if (b) yield b;
      }
      this.epoch = epoch + 1;
    } finally {
      reader?.close();
      // An early exit (break, error): free what is still being prepared.
      for (const p of inflight)
        p.then(
          (b) => {
            b?.images.dispose();
            b?.labels.dispose();
          },
          () => {},
        );
    }
  }

  /** Loads one batch of dataset indices (the iterator uses this). */
  async loadBatch(indices: readonly number[], epoch = this.epoch, reader?: EpochReader): Promise<Batch | null> {
    const items: DataItem[] = reader
      ? await reader.getItems(indices)
      : this.dataset.getItems
        ? await this.dataset.getItems(indices)
        : indices.map((i) => this.dataset.getItem(i));
    const n = items.length;
    const batch = this.pipeline.newBatch(n);
    const seeds: BigUint64Array = binding.data.sampleSeeds(this.seed, epoch, [...indices]);
    // Samples the dataset could not read at all do not reach the decoders.
    const slots = Array.from({ length: n }, (_, i) => i).filter((i) => !items[i].error);
    const status: string[] = new Array(n);
    items.forEach((it, i) => it.error && (status[i] = `error:${it.error}`));
    const st1: string[] = await this.pipeline.run(
      batch,
      slots.map((i) => items[i].source),
      slots,
      BigUint64Array.from(slots, (i) => seeds[i]),
    );
    slots.forEach((i, k) => (status[i] = st1[k]));
    // What the JPEG fast path declined goes through sharp, then the same native transform.
    const declined = slots.filter((i) => status[i].startsWith('decline:'));
    if (declined.length > 0) {
      const decoded = await Promise.all(
        declined.map((i) =>
          decodeWithSharp(items[i].source as string | Uint8Array, this.spec.maxPixels, {
            exifTranspose: this.spec.exifTranspose,
          }).then(
            (img) => img,
            (err: unknown) => new Error(err instanceof Error ? err.message : String(err)),
          ),
        ),
      );
      const ok = declined.filter((_, k) => !(decoded[k] instanceof Error));
      declined.forEach((i, k) => {
        const d = decoded[k];
        if (d instanceof Error) status[i] = `error:${d.message}`;
      });
      if (ok.length > 0) {
        const rgb = ok.map((i) => decoded[declined.indexOf(i)]);
        const st2: string[] = await this.pipeline.run(batch, rgb, ok, BigUint64Array.from(ok.map((i) => seeds[i])));
        ok.forEach((i, k) => (status[i] = st2[k]));
      }
    }
    const keep: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = status[i];
      if (s === '') {
        keep.push(i);
        continue;
      }
      const reason = s.slice(s.indexOf(':') + 1);
      const name = describe(items[i]);
      if (s.startsWith('fatal:') || this.onError === 'raise') {
        batch.dispose();
        throw new Error(`torchline: cannot load ${name} (dataset index ${indices[i]}): ${reason}`);
      }
      // One log line per file, or per unreadable row group (its rows share the name).
      const key =
        typeof items[i].source === 'string'
          ? (items[i].source as string)
          : items[i].error && items[i].name
            ? items[i].name!
            : `#${indices[i]}`;
      if (!this.logged.has(key)) {
        this.logged.add(key);
        this.skipped.push({ index: indices[i], source: name, reason });
        this.log(`torchline: skipping ${name}: ${reason}`);
      }
    }
    if (keep.length === 0) {
      batch.dispose();
      return null;
    }
    const images = new Tensor(batch.toTensor(keep.length === n ? undefined : keep));
    const labels = Tensor.from(
      BigInt64Array.from(keep, (i) => BigInt(items[i].label)),
      [keep.length],
    );
    return { images, labels, indices: keep.map((i) => indices[i]) };
  }
}
