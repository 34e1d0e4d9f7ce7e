import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import * as path from 'node:path';
import { Adam, Tensor, distributed, load, resnet18, trainStep } from '../../lib';
import { tempDir } from '../support/peer';
import { freePort, rankEnv, torchrun } from '../support/ranks';

const WORKER = path.join(__dirname, 'ddp_worker.js');

function weights(file: string): Map<string, Tensor> {
  return load(file) as Map<string, Tensor>;
}

describe('distributed data parallel (Gloo, launched by torchrun)', () => {
  it('two ranks end identical and equal to one process on the union of their batches', () => {
    const dir = tempDir('ddp');
    torchrun(WORKER, [dir, '3']);
    execFileSync(process.execPath, [WORKER, dir, '3'], {
      stdio: 'pipe',
      env: { ...process.env, WORLD_SIZE: '', TORCHLINE_NUM_THREADS: '1' },
    });
    const r0 = weights(path.join(dir, 'rank0.pth'));
    const r1 = weights(path.join(dir, 'rank1.pth'));
    const single = weights(path.join(dir, 'single.pth'));
    let worst = 0;
    for (const [k, t] of r0) {
      const a = t.toTypedArray();
      expect(
        Buffer.from(a.buffer).equals(Buffer.from(r1.get(k)!.toTypedArray().buffer)),
        `${k} differs between ranks`,
      ).toBe(true);
      if (t.dtype !== 'float32') continue;
      const b = single.get(k)!.toTypedArray() as Float32Array;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a as Float32Array)[i] - b[i]));
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it('a rank that dies makes the other fail with a clear error within the timeout', async () => {
    const dir = tempDir('ddp-kill');
    const port = await freePort();
    const env = (rank: number) => rankEnv(rank, port, { TL_TIMEOUT_MS: '15000' });
    const t0 = Date.now();
    const procs = [0, 1].map((rank) => spawn(process.execPath, [WORKER, dir, '50', '2'], { env: env(rank) }));
    let err0 = '';
    procs[0].stderr.on('data', (d) => (err0 += d));
    const codes = await Promise.all(
      procs.map((p) => new Promise<number | null>((r) => p.on('exit', (c, sig) => r(c ?? (sig ? -1 : null))))),
    );
    expect(codes[1]).toBe(-1); // rank 1 was SIGKILLed after step 2
    expect(codes[0]).toBe(3); // rank 0 failed with an error, not a hang
    expect(err0).toMatch(/rank 0: .+/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it('attachModel runs as a step of the model: the model is busy meanwhile, and a step queued after it runs after it', async () => {
    const port = await freePort();
    const group = await distributed.initProcessGroup({
      rank: 0,
      worldSize: 1,
      masterAddr: '127.0.0.1',
      masterPort: port,
      backend: 'gloo',
    });
    try {
      const model = resnet18({ numClasses: 3 }).train();
      const opt = new Adam(model.parameters());
      const attached = distributed.distributedDataParallel(model, { group });
      expect(() => model.stateDict()).toThrow(/while a step is running on this model/);
      expect(() => model.train()).toThrow(/while a step is running on this model/);
      const step = trainStep(model, opt, {
        images: Tensor.randn([2, 3, 32, 32]),
        labels: Tensor.from(BigInt64Array.from([0n, 1n]), [2]),
      });
      await attached;
      const r = await step;
      expect(r.n).toBe(2);
      expect(model.stateDict().size).toBeGreaterThan(0);
    } finally {
      group.destroy();
    }
  });
});
