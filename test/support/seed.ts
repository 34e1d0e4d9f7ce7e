// Seeded randomness for tests. Every randomised test draws from testRandom():
// the seed is fixed by default (CI is reproducible), TORCHLINE_TEST_SEED=<n>
// replays a run, TORCHLINE_TEST_SEED=random explores. A failure names the
// seed, so any red run can be replayed exactly.

import { mulberry32 } from './mulberry32.js';

/** A small, fast PRNG (mulberry32, support/mulberry32.js): uniform [0, 1). */
export interface Rng {
  readonly seed: number;
  (): number;
  /** An integer in [0, n). */
  int(n: number): number;
}

export function rng(seed: number): Rng {
  const next = mulberry32(seed) as Rng;
  Object.defineProperty(next, 'seed', { value: seed });
  next.int = (n: number) => Math.floor(next() * n);
  return next;
}

/** The run's seed: TORCHLINE_TEST_SEED, 'random', or the fixed default. */
export function testSeed(): number {
  const env = process.env.TORCHLINE_TEST_SEED;
  if (env === 'random') return Math.floor(Math.random() * 2 ** 31);
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isSafeInteger(n) || n < 0)
      throw new Error(`TORCHLINE_TEST_SEED must be a non-negative integer or 'random', got ${env}`);
    return n;
  }
  return 20260101;
}

/**
 * Runs `body` with a seeded generator; an error thrown by it is rethrown
 * with the seed and the command that replays it in its message.
 */
export async function withSeed<T>(body: (r: Rng) => T | Promise<T>, seed = testSeed()): Promise<T> {
  try {
    return await body(rng(seed));
  } catch (err) {
    const note = `[random test: seed ${seed}; replay with TORCHLINE_TEST_SEED=${seed}]`;
    if (err instanceof Error) {
      err.message = `${err.message}\n${note}`;
      throw err;
    }
    throw new Error(`${String(err)}\n${note}`);
  }
}
