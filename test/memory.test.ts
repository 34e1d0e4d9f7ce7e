import { describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import { Tensor } from '../lib';

describe('memory', () => {
  it('10,000 undisposed tensors are reclaimed by the GC (RSS stays flat)', async () => {
    const elems = 64 * 1024; // 256 KiB each: 2.5 GiB in all if nothing were freed
    const data = new Float32Array(elems).fill(1);
    for (let i = 0; i < 200; i++) Tensor.from(data);
    await tick();
    const before = process.memoryUsage().rss;
    let peak = before;
    for (let i = 0; i < 10_000; i++) {
      Tensor.from(data);
      // Finalizers run between tasks, as they do in any async training loop.
      if (i % 100 === 99) {
        await tick();
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    }
    const growth = peak - before;
    expect(growth).toBeLessThan(512 * 1024 * 1024);
  });

  it('disposed tensors free native memory at once', async () => {
    const data = new Float32Array(1024 * 1024);
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 500; i++) Tensor.from(data).dispose();
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
  });
});
