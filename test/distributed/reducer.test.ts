// Data parallel on c10d's Reducer: overlap of all-reduce with backward (two
// real ranks, through shared memory), and the Reducer's life cycle in one process (a group
// of one rank): skipped steps, parameter changes, attach rules.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { SGD, Tensor, distributed, load, manualSeed, resnet18, trainStep } from '../../lib';
import type { Module } from '../../lib/models/module';
import { tempDir } from '../support/peer';
import { freePort, runRanks } from '../support/ranks';

const STATS_WORKER = path.join(__dirname, 'ddp_stats_worker.js');
const DDP_WORKER = path.join(__dirname, 'ddp_worker.js');
const GC_WORKER = path.join(__dirname, 'gc_worker.js');

function batch(n: number, size = 32, seed = 11) {
  manualSeed(seed);
  return {
    images: Tensor.randn([n, 3, size, size]),
    labels: Tensor.from(
      BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 3)),
      [n],
    ),
  };
}

function maxDiff(a: Module | Map<string, Tensor>, b: Module | Map<string, Tensor>): number {
  const sa = a instanceof Map ? a : a.stateDict();
  const sb = b instanceof Map ? b : b.stateDict();
  let worst = 0;
  for (const [k, t] of sa) {
    if (t.dtype !== 'float32') continue;
    const x = t.toTypedArray() as Float32Array;
    const y = sb.get(k)!.toTypedArray() as Float32Array;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  }
  return worst;
}

async function oneRankGroup() {
  return distributed.initProcessGroup({
    rank: 0,
    worldSize: 1,
    masterAddr: '127.0.0.1',
    masterPort: await freePort(),
    backend: 'gloo',
  });
}

describe('data parallel on c10d Reducer', () => {
  it('all-reduces gradient buckets while backward still runs (DDP statistics of two ranks)', async () => {
    const results = await runRanks(STATS_WORKER, ['3', '8', '64']);
    for (const { params, stats, sharedMemory } of results) {
      // Ranks of one host: the buckets go through the shared-memory comm hook.
      expect(sharedMemory).toBe(true);
      // After the first step the Reducer regroups buckets in gradient-ready order: 1 MiB first, then 25 MiB.
      expect(stats.rebuiltBuckets).toBe(true);
      expect(stats.bucketBytes.reduce((a: number, b: number) => a + b, 0)).toBe(params * 4);
      expect(stats.bucketBytes.length).toBeGreaterThanOrEqual(3);
      expect(Math.max(...stats.bucketBytes)).toBeLessThanOrEqual(26 * 2 ** 20 + 10 * 2 ** 20);
      // The first bucket's all-reduce starts early in backward, long before backward's compute ends.
      expect(stats.backwardComputeEndNs).toBeGreaterThan(0);
      expect(stats.backwardCommStartNs).toBeGreaterThan(0);
      expect(stats.backwardCommStartNs).toBeLessThan(0.5 * stats.backwardComputeEndNs);
      expect(stats.backwardOverlapNs).toBeGreaterThan(0.4 * stats.backwardComputeNs);
      expect(stats.backwardCommEndNs).toBeGreaterThanOrEqual(stats.backwardComputeEndNs);
    }
  }, 60_000);

  it('SyncBatchNorm: two ranks in training mode end identical and equal to one process on the union batch', async () => {
    const dir = tempDir('syncbn');
    // lr 0.02, 2 steps: see ddp_worker.js (a max-pool tie flipped by rounding moves conv1's gradient).
    const env = { TL_SYNC_BN: '1', TL_LR: '0.02' };
    await runRanks(DDP_WORKER, [dir, '2'], 2, env);
    execFileSync(process.execPath, [DDP_WORKER, dir, '2'], {
      stdio: 'pipe',
      env: { ...process.env, ...env, WORLD_SIZE: '', TORCHLINE_NUM_THREADS: '1' },
    });
    const r0 = load(path.join(dir, 'rank0.pth')) as Map<string, Tensor>;
    const r1 = load(path.join(dir, 'rank1.pth')) as Map<string, Tensor>;
    const single = load(path.join(dir, 'single.pth')) as Map<string, Tensor>;
    for (const [k, t] of r0) {
      const same = Buffer.from(t.toTypedArray().buffer).equals(Buffer.from(r1.get(k)!.toTypedArray().buffer));
      expect(same, `${k} differs between ranks`).toBe(true);
    }
    // Weights and running statistics (training-mode BatchNorm over the union batch), and the step count.
    expect(maxDiff(r0, single)).toBeLessThan(1e-5);
    expect(r0.get('bn1.num_batches_tracked')!.toArray()).toEqual(single.get('bn1.num_batches_tracked')!.toArray());
  }, 60_000);

  it('a group of one rank trains like no group; skipped non-finite steps and parameter changes keep the Reducer sound', async () => {
    const group = await oneRankGroup();
    try {
      manualSeed(3);
      const ddp = resnet18({ numClasses: 3 }).eval();
      manualSeed(3);
      const ref = resnet18({ numClasses: 3 }).eval();
      await distributed.distributedDataParallel(ddp, { group });
      const optD = new SGD(ddp.parameters(), { lr: 0.05, momentum: 0.9 });
      const optR = new SGD(ref.parameters(), { lr: 0.05, momentum: 0.9 });
      const both = async (b: ReturnType<typeof batch>, o = {}) => {
        await trainStep(ddp, optD, b, o);
        await trainStep(ref, optR, b, o);
      };
      await both(batch(4, 32, 1));
      // A NaN loss: every rank skips together, before the Reducer expects any gradient.
      const bad = batch(4, 32, 2);
      bad.images = Tensor.full([4, 3, 32, 32], Number.NaN);
      await expect(trainStep(ddp, optD, bad)).rejects.toMatchObject({ code: 'ERR_NONFINITE_LOSS' });
      await both(batch(4, 32, 3), { clipGradNorm: 1 });
      // Parameters re-laid out after attach: the next step rebuilds the Reducer's buckets and views.
      ddp.channelsLast(true);
      ref.channelsLast(true);
      await both(batch(4, 32, 4), { amp: 'bf16' });
      await both(batch(4, 32, 5));
      expect(maxDiff(ddp, ref)).toBeLessThan(1e-6);
      const stats = await distributed.dataParallelStats(ddp);
      expect(stats.bucketBytes.length).toBeGreaterThan(0);
    } finally {
      group.destroy();
    }
  }, 60_000);

  it('findUnusedParameters and copied (not viewed) gradients give the same steps', async () => {
    const group = await oneRankGroup();
    try {
      manualSeed(5);
      const a = resnet18({ numClasses: 3 }).eval();
      manualSeed(5);
      const ref = resnet18({ numClasses: 3 }).eval();
      await distributed.distributedDataParallel(a, { group, findUnusedParameters: true, gradientAsBucketView: false });
      const optA = new SGD(a.parameters(), { lr: 0.05 });
      const optR = new SGD(ref.parameters(), { lr: 0.05 });
      for (let s = 0; s < 3; s++) {
        await trainStep(a, optA, batch(4, 32, 20 + s));
        await trainStep(ref, optR, batch(4, 32, 20 + s));
      }
      expect(maxDiff(a, ref)).toBeLessThan(1e-6);
    } finally {
      group.destroy();
    }
  }, 60_000);

  it('attach rules: once per live group, the group keeps the model, a destroyed group fails the next step', async () => {
    const group = await oneRankGroup();
    const model = resnet18({ numClasses: 3 });
    const opt = new SGD(model.parameters(), { lr: 0.01 });
    await expect(distributed.dataParallelStats(model)).rejects.toThrow(/not data parallel/);
    await distributed.distributedDataParallel(model, { group });
    await expect(distributed.distributedDataParallel(model, { group })).rejects.toThrow(/already data parallel/);
    await trainStep(model, opt, batch(2));
    group.destroy();
    await expect(trainStep(model, opt, batch(2))).rejects.toThrow(
      /process group this model was attached to was destroyed/,
    );
    // Re-attached to a new group, it trains again.
    const again = await oneRankGroup();
    try {
      await distributed.distributedDataParallel(model, { group: again });
      const r = await trainStep(model, opt, batch(2));
      expect(r.n).toBe(2);
    } finally {
      again.destroy();
    }
  }, 60_000);

  it('the group keeps an attached model alive; after destroy the model is usable and collectable', async () => {
    const out = execFileSync(process.execPath, ['--expose-gc', GC_WORKER, String(await freePort())], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, TORCHLINE_NUM_THREADS: '1' },
    });
    expect(JSON.parse(out.trim())).toEqual({
      aliveWhileAttached: true,
      forwardAfterDestroy: [2, 3],
      collectedAfterDestroy: true,
      allReduce: [1, 1, 1, 1],
    });
  }, 60_000);
});
