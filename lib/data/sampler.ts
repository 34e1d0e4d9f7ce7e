// Samplers: which dataset indices go into which batch, per epoch and rank.
// Shuffles use torch's own algorithm — torch.randperm(n, generator) on a CPU
// generator seeded with `seed + epoch` (mt19937, Fisher-Yates with
// random() % (n - i)) — so a seeded torchline epoch visits samples in the same
// order as torch's DistributedSampler with the same seed (checked in
// test/data/sampler.test.ts against Python torch 1.13).

/** torch's CPU generator (mt19937, 32-bit outputs) after manual_seed(seed). */
export class TorchGenerator {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number | bigint) {
    // manual_seed keeps the low 32 bits for the mt19937 state.
    const s = Number(BigInt.asUintN(32, BigInt(seed)));
    this.mt[0] = s;
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30);
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next 32-bit output (torch's generator->random()). */
  random(): number {
    const mt = this.mt;
    if (this.index >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
        mt[i] = mt[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on CPU. */
export function randperm(n: number, seed: number | bigint): Int32Array {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`randperm: bad n ${n}`);
  const r = new Int32Array(n);
  for (let i = 0; i < n; i++) r[i] = i;
  const g = new TorchGenerator(seed);
  for (let i = 0; i < n - 1; i++) {
    const z = g.random() % (n - i);
    const t = r[i];
    r[i] = r[z + i];
    r[z + i] = t;
  }
  return r;
}

/** Something that yields the dataset indices of one epoch. */
export interface Sampler {
  readonly length: number;
  indices(epoch: number): ArrayLike<number>;
}

/** 0..n-1 in order (torch.utils.data.SequentialSampler). */
export class SequentialSampler implements Sampler {
  constructor(private readonly n: number) {}
  get length(): number {
    return this.n;
  }
  indices(): Int32Array {
    return Int32Array.from({ length: this.n }, (_, i) => i);
  }
}

/** A permutation per epoch: torch.randperm(n) seeded with seed + epoch. */
export class RandomSampler implements Sampler {
  constructor(
    private readonly n: number,
    readonly seed = 0,
  ) {}
  get length(): number {
    return this.n;
  }
  indices(epoch: number): Int32Array {
    return randperm(this.n, BigInt(this.seed) + BigInt(epoch));
  }
}

export interface DistributedSamplerOptions {
  /** Number of processes (torch: num_replicas). */
  worldSize: number;
  rank: number;
  shuffle?: boolean;
  seed?: number;
  /** Drop the tail so every rank gets the same count without padding. */
  dropLast?: boolean;
}

/**
 * torch.utils.data.DistributedSampler: every rank gets ceil(n / worldSize)
 * indices (the list is padded by repeating its head), rank r takes
 * indices[r :: worldSize]; with dropLast the tail is cut instead. Call
 * DataLoader.setEpoch (or pass the epoch) so each epoch reshuffles.
 */
export class DistributedSampler implements Sampler {
  readonly worldSize: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly numSamples: number;
  readonly totalSize: number;

  constructor(
    private readonly n: number,
    options: DistributedSamplerOptions,
  ) {
    const { worldSize, rank } = options;
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be >= 1, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new RangeError(`Invalid rank ${rank}, rank should be in the interval [0, ${worldSize - 1}]`);
    this.worldSize = worldSize;
    this.rank = rank;
    this.shuffle = options.shuffle ?? true;
    this.seed = options.seed ?? 0;
    this.dropLast = options.dropLast ?? false;
    this.numSamples =
      this.dropLast && n % worldSize !== 0 ? Math.ceil((n - worldSize) / worldSize) : Math.ceil(n / worldSize);
    this.totalSize = this.numSamples * worldSize;
  }

  get length(): number {
    return this.numSamples;
  }

  indices(epoch: number): Int32Array {
    const base = this.shuffle
      ? randperm(this.n, BigInt(this.seed) + BigInt(epoch))
      : Int32Array.from({ length: this.n }, (_, i) => i);
    const all = new Int32Array(this.totalSize);
    if (this.dropLast) {
      all.set(base.subarray(0, this.totalSize));
    } else {
      all.set(base);
      // Padding repeats the list from its start (as often as needed).
      for (let i = this.n; i < this.totalSize; i++) all[i] = base[(i - this.n) % this.n];
    }
    const mine = new Int32Array(this.numSamples);
    for (let i = 0; i < this.numSamples; i++) mine[i] = all[this.rank + i * this.worldSize];
    return mine;
  }
}
