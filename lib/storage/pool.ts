// Bounded concurrency without a dependency.

/** Runs fn over items with at most `limit` in flight; results keep item order. Rejects on the first error after in-flight work settles. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: { err: unknown } | undefined;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed) throw failed.err;
  return out;
}

/**
 * A work queue whose tasks may enqueue more tasks (tree discovery): resolves
 * when the queue is empty and nothing is running; rejects on the first error.
 */
export function runQueue<T>(
  initial: T[],
  limit: number,
  fn: (item: T, push: (t: T) => void) => Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const queue = [...initial];
    let running = 0;
    let done = false;
    const pump = () => {
      if (done) return;
      if (queue.length === 0 && running === 0) {
        done = true;
        resolve();
        return;
      }
      while (running < limit && queue.length) {
        const item = queue.shift() as T;
        running++;
        fn(item, (t) => queue.push(t)).then(
          () => {
            running--;
            pump();
          },
          (err) => {
            done = true;
            reject(err);
          },
        );
      }
    };
    pump();
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
