// The one retry loop of the storage layer: every list, read and write to GCS
// goes through it, so backoff, jitter, abort and "is this safe to repeat" are
// decided in one place. Writes pass `idempotent: false` unless they carry a
// precondition (ifGenerationMatch): a repeated unconditional write could
// overwrite an object someone else wrote in between, which is the rule of the
// client library's conditional idempotency strategy.
import { isRetryableError } from './client';
import { sleep } from './pool';

export interface RetryOptions {
  /** Attempts after the first (default 6). */
  maxRetries?: number;
  /** First backoff delay in ms (default 250), doubled per attempt, with +-50% jitter. */
  retryDelayMs?: number;
  /** Backoff ceiling in ms (default 20,000). */
  maxRetryDelayMs?: number;
  /** Stops retrying (and rethrows the signal's reason) once aborted. */
  signal?: AbortSignal;
  /** False for a write without a precondition: it is tried once (default true). */
  idempotent?: boolean;
  /** Which errors are worth another attempt (default: isRetryableError). */
  retryable?: (err: unknown) => boolean;
  /** Called before each backoff sleep (counting retries, logging). */
  onRetry?: (err: unknown, attempt: number) => void;
}

/** The delay before retry number `attempt` (0-based): base * 2^attempt, capped, with +-50% jitter. */
export function backoffDelay(
  attempt: number,
  opts: Pick<RetryOptions, 'retryDelayMs' | 'maxRetryDelayMs'> = {},
): number {
  const base = opts.retryDelayMs ?? 250;
  const cap = opts.maxRetryDelayMs ?? 20_000;
  return Math.min(cap, base * 2 ** attempt) * (0.5 + Math.random());
}

/** Runs fn until it succeeds, retrying retryable errors with exponential backoff and jitter. */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const max = opts.idempotent === false ? 0 : (opts.maxRetries ?? 6);
  const retryable = opts.retryable ?? isRetryableError;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (attempt >= max || !retryable(err)) throw err;
      opts.onRetry?.(err, attempt);
      await sleep(backoffDelay(attempt, opts));
    }
  }
}
