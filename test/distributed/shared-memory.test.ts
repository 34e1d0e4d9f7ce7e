// All-reduce through shared memory between ranks of one host: every dtype and
// op bit-exact against a reference, data parallel training bit-identical to
// the Gloo path, and the failures (a mismatched call, a rank that exits, a
// destroyed group) answered with errors, not hangs.
import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { Tensor, distributed, load } from '../../lib';
import { tempDir } from '../support/peer';
import { freePort, runRanks, torchrun } from '../support/ranks';
import { testSeed } from '../support/seed';

const WORKER = path.join(__dirname, 'shm_worker.js');
const DDP_WORKER = path.join(__dirname, 'ddp_worker.js');

describe('shared-memory all-reduce (ranks of one host)', () => {
  for (const world of [2, 3])
    it(`${world} ranks: every dtype and op, sizes across the segment's rounds, bit-exact and the same on every rank`, async () => {
      const seed = testSeed();
      const results = await runRanks(WORKER, ['cases', String(seed)], world);
      for (const r of results) {
        expect(r.sharedMemory, r.reason).toBe(true);
        expect(r.mismatches, `seed ${seed}, rank ${r.rank}`).toEqual([]);
        expect(r.checked).toBe(6 * 5 * 5 - 2 * 5);
        expect(r.hash).toBe(results[0].hash);
        expect(r.segmentsLeft).toEqual([]);
      }
    }, 120_000);

  it('sharedMemory: false keeps every collective on Gloo, with the same results', async () => {
    const seed = testSeed();
    const results = await runRanks(WORKER, ['cases', String(seed)], 2, { TL_SHM: '0' });
    for (const r of results) {
      expect(r.sharedMemory).toBe(false);
      expect(r.reason).toBe('sharedMemory: false');
      // Where the reference (the shared-memory semantics) and Gloo may differ: Gloo's max and min do not
      // propagate NaN as torch.maximum does, and Gloo's float16 avg sums in float16 before dividing (a sum
      // over 65504 is infinite there; shared memory sums in float32 and scales once).
      const differs = (m: any) =>
        ['max', 'min'].includes(m.op) || (m.dtype === 'float16' && m.op === 'avg' && !Number.isFinite(Number(m.got)));
      expect(
        r.mismatches.filter((m: any) => !differs(m)),
        `seed ${seed}`,
      ).toEqual([]);
    }
  }, 120_000);

  it('data parallel training gives the same bits over shared memory as over Gloo', async () => {
    const dirs = { shm: tempDir('ddp-shm'), gloo: tempDir('ddp-gloo') };
    await runRanks(DDP_WORKER, [dirs.shm, '3'], 2, { TL_SHM: '1' });
    await runRanks(DDP_WORKER, [dirs.gloo, '3'], 2, { TL_SHM: '0' });
    const a = load(path.join(dirs.shm, 'rank0.pth')) as Map<string, Tensor>;
    const b = load(path.join(dirs.gloo, 'rank1.pth')) as Map<string, Tensor>;
    expect(a.size).toBeGreaterThan(0);
    for (const [k, t] of a)
      expect(Buffer.from(t.toTypedArray().buffer).equals(Buffer.from(b.get(k)!.toTypedArray().buffer)), k).toBe(true);
  }, 120_000);

  it('ranks that disagree on the tensor all fail with an error that says how', async () => {
    const results = await runRanks(WORKER, ['mismatch'], 2);
    for (const r of results) {
      expect(r.sharedMemory).toBe(true);
      expect(r.error).toMatch(/all-reduce mismatch: rank \d has 1[01] float32 elements \(sum\), rank \d has 1[01]/);
    }
  }, 60_000);

  it('a rank that exits fails the others at once, not after the timeout', async () => {
    const [r0] = await runRanks(WORKER, ['exit'], 2, { TL_TIMEOUT_MS: '600000' });
    expect(r0.error).toMatch(/rank 1 \(pid \d+\) exited during a shared-memory all-reduce/);
    expect(r0.ms).toBeLessThan(10_000);
  }, 60_000);

  it('destroy() fails an all-reduce waiting for another rank, and every later one', async () => {
    const [r0] = await runRanks(WORKER, ['destroy'], 2, { TL_TIMEOUT_MS: '600000' });
    expect(r0.error).toMatch(/the process group was destroyed/);
    expect(r0.ms).toBeLessThan(2_000);
    expect(r0.afterDestroy).toMatch(/the process group was destroyed/);
  }, 60_000);

  it('a second group in one torchrun job gets keys of its own in the agent store that outlives the first', () => {
    const out = torchrun(WORKER, ['reinit'], 120_000);
    const line = out.split('\n').find((l) => l.includes('"groups"'))!;
    const { groups } = JSON.parse(line.slice(line.indexOf('{')));
    expect(groups).toEqual([
      { sum: 2, sharedMemory: true, reason: '' },
      { sum: 2, sharedMemory: true, reason: '' },
    ]);
  }, 120_000);

  it("a group of one rank has nothing to share; 'avg' of integers is refused before any rank sends", async () => {
    const group = await distributed.initProcessGroup({
      rank: 0,
      worldSize: 1,
      masterAddr: '127.0.0.1',
      masterPort: await freePort(),
      backend: 'gloo',
    });
    try {
      expect(group.sharedMemory).toBe(false);
      expect(group.sharedMemoryReason).toBe('a group of one rank');
      const t = Tensor.from(Int32Array.from([4, 6]));
      expect(() => group.allReduce(t, 'avg')).toThrow(/'avg' needs a floating-point tensor, not Int; use 'sum'/);
      expect(t.toArray()).toEqual([4, 6]);
    } finally {
      group.destroy();
    }
  });
});
