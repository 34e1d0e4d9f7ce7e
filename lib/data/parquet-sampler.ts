// The read plan of a Parquet table: row groups are the unit of work. Ranks
// get whole row groups (a plan every rank computes identically from the
// footers), and an epoch visits a rank's row groups in a seeded order,
// shuffling rows only within a window of `shuffleBuffer` row groups, so a
// reader needs only those groups in memory. This is NOT a global shuffle: two
// rows of different windows never swap places, and rows of one row group stay
// within one window. Write the table with rows in random order (Spark:
// `df.orderBy(rand())` or `repartition`) when that matters.
import { TorchGenerator, type Sampler } from './sampler';

export interface RowGroupSpan {
  firstRow: number;
  rows: number;
}

/**
 * Splits row groups among ranks: largest first, each to the rank with the
 * fewest rows so far (ties: lower rank), then each rank's share in table
 * order. Deterministic, so every rank computes the same plan.
 */
export function planRanks(groups: readonly RowGroupSpan[], worldSize: number): number[][] {
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  const shares: number[][] = Array.from({ length: worldSize }, () => []);
  const rows = new Array<number>(worldSize).fill(0);
  const bySize = groups.map((_, i) => i).sort((a, b) => groups[b].rows - groups[a].rows || a - b);
  for (const g of bySize) {
    let r = 0;
    for (let k = 1; k < worldSize; k++) if (rows[k] < rows[r]) r = k;
    shares[r].push(g);
    rows[r] += groups[g].rows;
  }
  for (const s of shares) s.sort((a, b) => a - b);
  return shares;
}

export interface RowGroupSamplerOptions {
  shuffle?: boolean;
  /** Seeds the order; epoch e uses seed + e (default 0). */
  seed?: number;
  /** Row groups whose rows are shuffled together (default 4). 1: row groups in random order, rows in order within. */
  shuffleBuffer?: number;
  rank?: number;
  worldSize?: number;
  /**
   * Every rank must yield the same number of rows (one batch count for all
   * ranks in data-parallel training): by default the smaller shares repeat
   * the last rows of their epoch (the row groups still in memory); with
   * dropLast the larger shares cut their tail instead.
   */
  dropLast?: boolean;
}

function shuffleInPlace(a: number[], g: TorchGenerator): void {
  // randperm's Fisher-Yates, over an existing array.
  for (let i = 0; i < a.length - 1; i++) {
    const z = i + (g.random() % (a.length - i));
    const t = a[i];
    a[i] = a[z];
    a[z] = t;
  }
}

export class RowGroupSampler implements Sampler {
  readonly shuffle: boolean;
  readonly seed: number;
  readonly shuffleBuffer: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly dropLast: boolean;
  /** This rank's row groups (indices into the table's list). */
  readonly groups: number[];
  readonly numSamples: number;

  constructor(
    private readonly table: readonly RowGroupSpan[],
    options: RowGroupSamplerOptions = {},
  ) {
    this.shuffle = options.shuffle ?? false;
    this.seed = options.seed ?? 0;
    this.shuffleBuffer = options.shuffleBuffer ?? 4;
    this.rank = options.rank ?? 0;
    this.worldSize = options.worldSize ?? 1;
    this.dropLast = options.dropLast ?? false;
    if (!Number.isInteger(this.shuffleBuffer) || this.shuffleBuffer < 1)
      throw new RangeError(`shuffleBuffer must be a positive integer, got ${this.shuffleBuffer}`);
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new RangeError('seed must be a non-negative integer');
    if (!Number.isInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new RangeError(`rank must be an integer in [0, ${this.worldSize}), got ${this.rank}`);
    const plan = planRanks(table, this.worldSize);
    if (plan.some((s) => s.length === 0))
      throw new RangeError(
        `${table.length} row groups cannot be shared by ${this.worldSize} ranks: write the table with more (smaller) row groups`,
      );
    this.groups = plan[this.rank];
    const sizes = plan.map((s) => s.reduce((n, g) => n + table[g].rows, 0));
    this.numSamples = this.dropLast ? Math.min(...sizes) : Math.max(...sizes);
  }

  get length(): number {
    return this.numSamples;
  }

  indices(epoch: number): Int32Array {
    const gen = new TorchGenerator(BigInt(this.seed) + BigInt(epoch));
    const groups = [...this.groups];
    if (this.shuffle) shuffleInPlace(groups, gen);
    const out = new Int32Array(this.numSamples);
    let n = 0;
    for (let w = 0; w < groups.length && n < out.length; w += this.shuffleBuffer) {
      const rows: number[] = [];
      for (const g of groups.slice(w, w + this.shuffleBuffer)) {
        const { firstRow, rows: count } = this.table[g];
        for (let k = 0; k < count; k++) rows.push(firstRow + k);
      }
      if (this.shuffle) shuffleInPlace(rows, gen);
      for (const r of rows) {
        if (n === out.length) break;
        out[n++] = r;
      }
    }
    // Padding: the last rows again, whose row groups a reader still holds.
    const have = n;
    for (let i = 0; n < out.length; i++) out[n++] = out[have - 1 - (i % have)];
    return out;
  }
}
