// Shuffling and distributed partitioning against torch 1.13 itself.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataLoader, DistributedSampler, ImageFolder, data, transforms as T } from '../../lib';
import { collect, peer, photos, tmpDir, PY } from './helpers';
import { execFileSync } from 'node:child_process';

describe('torch-compatible shuffles', () => {
  it('randperm equals torch.randperm with a seeded generator', () => {
    const cases: [number, number][] = [
      [1, 0],
      [10, 0],
      [37, 12345],
      [1000, 2 ** 31 + 5],
      [257, 42],
    ];
    const theirs = JSON.parse(
      execFileSync(
        PY,
        [
          '-c',
          `import torch, json; print(json.dumps([torch.randperm(n, generator=torch.Generator().manual_seed(s)).tolist() for n, s in ${JSON.stringify(cases)}]))`,
        ],
        {
          encoding: 'utf8',
        },
      ),
    );
    cases.forEach(([n, s], i) => expect(Array.from(data.randperm(n, s))).toEqual(theirs[i]));
  });

  it.each([
    [10, 3, 7, 2, 0],
    [10, 3, 7, 2, 1],
    [103, 4, 0, 0, 0],
    [103, 4, 0, 5, 1],
    [5, 8, 1, 1, 0], // more ranks than samples: padding repeats the list
  ])(
    'DistributedSampler(n=%i, world=%i, seed=%i, epoch=%i, dropLast=%i) equals torch',
    (n, world, seed, epoch, drop) => {
      const theirs = JSON.parse(peer('distributed', ...[n, world, seed, epoch, drop].map(String)));
      for (let rank = 0; rank < world; rank++) {
        const s = new DistributedSampler(n, { worldSize: world, rank, seed, dropLast: drop === 1 });
        expect(Array.from(s.indices(epoch))).toEqual(theirs[rank]);
        expect(s.length).toBe(theirs[rank].length);
      }
    },
  );
});

describe('DataLoader epochs', () => {
  const root = tmpDir('epochs');
  const src = photos();
  for (let i = 0; i < 23; i++) {
    const cls = `c${i % 3}`;
    fs.mkdirSync(path.join(root, cls), { recursive: true });
    fs.copyFileSync(src[i], path.join(root, cls, `${i}.jpg`));
  }
  const ds = new ImageFolder(root);
  const order = async (dl: DataLoader) =>
    (await collect(dl)).flatMap((b) => {
      expect(b.labels.toArray()).toEqual(b.indices.map((i) => ds.targets[i]));
      return b.indices;
    });
  const make = (opts: object) =>
    new DataLoader(ds, { transform: T.imagenetTrain(32), batchSize: 5, numWorkers: 2, ...opts });

  it('a seeded shuffle is reproducible, covers every sample once, and changes per epoch', async () => {
    const a = make({ shuffle: true, seed: 9 });
    const b = make({ shuffle: true, seed: 9 });
    const e0 = await order(a);
    expect([...e0].sort((x, y) => x - y)).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(await order(b)).toEqual(e0);
    expect(e0).toEqual(Array.from(data.randperm(23, 9)));
    expect(a.currentEpoch).toBe(1); // a finished iteration advances the epoch
    const e1 = await order(a);
    expect(e1).not.toEqual(e0);
    expect([...e1].sort((x, y) => x - y)).toEqual([...e0].sort((x, y) => x - y));
    a.setEpoch(0);
    expect(await order(a)).toEqual(e0);
    expect(a.length).toBe(5);
    expect((await collect(make({ dropLast: true }))).length).toBe(4);
  });

  it('identical seeds give identical augmented pixels', async () => {
    const [x] = await collect(make({ seed: 4, batchSize: 23 }));
    const [y] = await collect(make({ seed: 4, batchSize: 23, numWorkers: 1 }));
    const [z] = await collect(make({ seed: 5, batchSize: 23 }));
    expect(y.images.toTypedArray()).toEqual(x.images.toTypedArray());
    expect(z.images.toTypedArray()).not.toEqual(x.images.toTypedArray());
  });

  it('ranks of a DistributedSampler together see every sample once per epoch (plus torch padding)', async () => {
    const world = 4;
    for (const epoch of [0, 1]) {
      const seen: number[] = [];
      for (let rank = 0; rank < world; rank++) {
        const dl = make({ sampler: new DistributedSampler(ds.length, { worldSize: world, rank, seed: 3 }) });
        dl.setEpoch(epoch);
        const got = await order(dl);
        expect(got.length).toBe(Math.ceil(23 / world));
        seen.push(...got);
      }
      const counts = new Map<number, number>();
      for (const i of seen) counts.set(i, (counts.get(i) ?? 0) + 1);
      expect(counts.size).toBe(23);
      // 24 slots for 23 samples: exactly one sample is repeated (torch pads with the head of the list).
      expect(seen.length - 23).toBe(1);
      expect([...counts.values()].filter((c) => c === 2).length).toBe(1);
    }
  });
});
