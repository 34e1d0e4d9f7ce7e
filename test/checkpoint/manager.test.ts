// Atomic saving, the checkpoint folder manager, and the crash test.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, load, save, saveAsync, checkpoint, CheckpointManager } from '../../lib';
import { allocStorage } from '../../lib/checkpoint/native-io';
import { tmpDir } from './helpers';
import { withSeed } from '../support/seed';

const root = path.resolve(__dirname, '../..');

describe('atomic save', () => {
  it('a save that fails midway leaves the previous file intact and no temp file', () => {
    const dir = tmpDir('ckpt-atomic');
    const file = path.join(dir, 'model.pth');
    save(file, { epoch: 1, w: Tensor.ones([4]) });
    expect(() => save(file, { epoch: 2, w: Tensor.ones([4]), bad: new Date() })).toThrow(/Date instance/);
    expect(load(file).epoch).toBe(1);
    expect(fs.readdirSync(dir)).toEqual(['model.pth']);
  });

  it('temp files of dead processes are swept, never listed as checkpoints', () => {
    const dir = tmpDir('ckpt-sweep');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = `.checkpoint-epoch-0009.pth.tmp-${dead}-1a2b`;
    const mine = `.checkpoint-epoch-0010.pth.tmp-${process.pid}-3c4d`;
    fs.writeFileSync(path.join(dir, stale), 'partial');
    fs.writeFileSync(path.join(dir, mine), 'in progress');
    const m = new CheckpointManager({ dir });
    expect(m.list()).toEqual([]);
    expect(fs.existsSync(path.join(dir, stale))).toBe(false);
    expect(fs.existsSync(path.join(dir, mine))).toBe(true); // a live writer's file is left alone
  });
});

describe('saveAsync', () => {
  it('writes the same bytes as save(); its snapshot is ordered with the step executor, not the JS thread', async () => {
    const dir = tmpDir('ckpt-async');
    // A tensor whose memory the test can change directly.
    const { handle, bytes } = allocStorage(1 << 20, 'float32');
    const live = new Tensor(handle);
    const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, 1 << 20);
    f32.fill(1);
    const value = { epoch: 4, w: live, other: Tensor.randn([3, 5]), lr: 0.01 };
    save(path.join(dir, 'sync.pth'), value);
    await saveAsync(path.join(dir, 'async.pth'), value);
    expect(fs.readFileSync(path.join(dir, 'async.pth')).equals(fs.readFileSync(path.join(dir, 'sync.pth')))).toBe(true);

    // A long job (a "training step") is on the executor; saveAsync returns at once and
    // its copy happens after that job: a change made before the copy's turn is in the file.
    const a = Tensor.randn([512, 512]);
    const step = a.matmulAsync(a, { repeat: 60 });
    const t0 = performance.now();
    const pending = saveAsync(path.join(dir, 'queued.pth'), value);
    const held = performance.now() - t0;
    f32.fill(2); // runs while the step is still going
    await Promise.all([step, pending]);
    expect(held).toBeLessThan(50);
    expect(new Set(load(path.join(dir, 'queued.pth')).w.toArray())).toEqual(new Set([2]));
    expect(fs.readdirSync(dir).sort()).toEqual(['async.pth', 'queued.pth', 'sync.pth']);
  });

  it('CheckpointManager.saveAsync completes in call order, prunes and hands files over', async () => {
    const dir = tmpDir('ckpt-async-manager');
    const handed: number[] = [];
    const m = new CheckpointManager({
      dir,
      keepLast: 2,
      keepBest: 1,
      onSaved: (_, info) => void handed.push(info.epoch),
    });
    const saves = [0.5, 0.9, 0.1, 0.2].map((acc, epoch) =>
      m.saveAsync(epoch, { epoch, w: Tensor.full([1000], epoch) }, { metric: acc }),
    );
    const infos = await Promise.all(saves);
    expect(infos.map((i) => i.epoch)).toEqual([0, 1, 2, 3]);
    expect(handed).toEqual([0, 1, 2, 3]);
    expect(m.list().map((c) => c.epoch)).toEqual([1, 2, 3]);
    for (const c of m.list()) expect(load(c.path).w.toArray()[999]).toBe(c.epoch);
  });
});

describe('CheckpointManager', () => {
  it('keeps the last K plus the best by metric, hands each file to onSaved when complete', async () => {
    const dir = tmpDir('ckpt-manager');
    const handed: { path: string; epoch: number; loads: number }[] = [];
    const m = new CheckpointManager({
      dir,
      keepLast: 2,
      keepBest: 1,
      onSaved: async (p, info) => {
        // the file is complete and in place when the hook runs
        handed.push({ path: p, epoch: info.epoch, loads: load(p).epoch });
      },
    });
    const acc = [0.1, 0.9, 0.3, 0.2, 0.4, 0.5];
    acc.forEach((a, epoch) => m.save(epoch, { epoch, w: Tensor.full([3], epoch) }, { metric: a }));
    await m.idle();
    expect(handed.map((h) => [h.epoch, h.loads])).toEqual(acc.map((_, e) => [e, e]));
    expect(handed[0].path).toBe(path.join(dir, 'checkpoint-epoch-0000.pth'));
    expect(m.list().map((c) => [c.epoch, c.metric])).toEqual([
      [1, 0.9],
      [4, 0.4],
      [5, 0.5],
    ]);
    expect(m.latest()!.epoch).toBe(5);
    expect(m.best()!.epoch).toBe(1);
    expect(fs.readdirSync(dir).sort()).toEqual([
      'checkpoint-epoch-0001.pth',
      'checkpoint-epoch-0004.pth',
      'checkpoint-epoch-0005.pth',
      'checkpoints.json',
    ]);

    // A new manager over the same folder (a resumed run) sees the same state.
    const again = new CheckpointManager({ dir, keepLast: 2, keepBest: 1, mode: 'max' });
    expect(again.best()!.epoch).toBe(1);
    again.save(6, { epoch: 6 }, { metric: 0.95 });
    expect(again.list().map((c) => c.epoch)).toEqual([5, 6]);
  });

  it("mode 'min' keeps the lowest loss; a failing onSaved surfaces in idle()", async () => {
    const dir = tmpDir('ckpt-min');
    const m = new CheckpointManager({
      dir,
      keepLast: 1,
      keepBest: 1,
      mode: 'min',
      onSaved: async () => {
        throw new Error('upload failed');
      },
    });
    [3, 1, 2].forEach((loss, e) => m.save(e, { e }, { metric: loss }));
    expect(m.list().map((c) => c.epoch)).toEqual([1, 2]);
    await expect(m.idle()).rejects.toThrow('upload failed');
  });
});

describe('crash test', () => {
  beforeAll(() => {
    // The child process runs the compiled library: rebuild dist/ if lib/ is newer.
    const built = path.join(root, 'dist/checkpoint/index.js');
    const newest = (d: string): number =>
      Math.max(
        ...fs
          .readdirSync(d, { withFileTypes: true })
          .map((e) => (e.isDirectory() ? newest(path.join(d, e.name)) : fs.statSync(path.join(d, e.name)).mtimeMs)),
      );
    if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newest(path.join(root, 'lib')))
      execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root]);
  });

  it('SIGKILL at random moments while saving: the newest complete checkpoint always loads', () =>
    withSeed(async (random) => {
      const dir = tmpDir('ckpt-crash');
      let midWrite = 0;
      let next = 0;
      for (let round = 0; round < 10; round++) {
        const child = spawn(
          process.execPath,
          [path.join(__dirname, 'crash-child.cjs'), path.join(root, 'dist'), dir, String(next)],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
        // Wait for the first save, then kill at a random moment of the following ones.
        await new Promise<void>((resolve, reject) => {
          const t0 = Date.now();
          const poll = setInterval(() => {
            if (out.includes('saved')) clearInterval(poll), resolve();
            else if (child.exitCode !== null || Date.now() - t0 > 20000)
              clearInterval(poll), reject(new Error(`child did not save: ${err}`));
          }, 5);
        });
        await new Promise((r) => setTimeout(r, random() * 400));
        child.kill('SIGKILL');
        await exited;
        const saved = [...out.matchAll(/saved (\d+)/g)].map((x) => Number(x[1]));
        const lastReported = saved[saved.length - 1];
        if (fs.readdirSync(dir).some((n) => checkpoint.isTempName(n))) midWrite++;

        const m = new CheckpointManager({ dir, keepLast: 2, keepBest: 1 }); // sweeps the dead child's temp file
        expect(fs.readdirSync(dir).filter((n) => checkpoint.isTempName(n))).toEqual([]);
        const latest = m.latest()!;
        expect(latest.epoch).toBeGreaterThanOrEqual(lastReported);
        for (const c of m.list()) {
          const v = load(c.path);
          expect(v.epoch).toBe(c.epoch);
          expect(new Set(v.marker.toArray())).toEqual(new Set([c.epoch]));
          expect(v.weights.shape).toEqual([2_000_000]);
        }
        // keepLast 2 + keepBest 1, plus one when the kill fell between a save and its pruning
        expect(m.list().length).toBeLessThanOrEqual(4);
        next = latest.epoch + 1;
      }
      // Not asserted (timing), but reported: how often the kill hit a write in progress.
      console.log(`crash test: ${midWrite}/10 kills landed mid-write; reached epoch ${next - 1}`);
    }));
});
