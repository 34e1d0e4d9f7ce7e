// 20 epochs on a small set: resident memory must stay flat (batch buffers
// are recycled or freed, JS handles are disposed, nothing accumulates per
// epoch or per bad file).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataLoader, ManifestDataset, transforms as T } from '../../lib';
import { photos, tmpDir } from './helpers';

describe('memory over epochs', () => {
  it('stays flat over 20 epochs (train preset, with a skipped bad file)', async () => {
    const dir = tmpDir('mem');
    fs.writeFileSync(path.join(dir, 'bad.jpg'), 'nope');
    const rows = [...photos().slice(0, 30), path.join(dir, 'bad.jpg')].map((uri, i) => ({ uri, label: i % 5 }));
    const dl = new DataLoader(new ManifestDataset(rows), {
      transform: T.imagenetTrain(224),
      batchSize: 8,
      shuffle: true,
      seed: 1,
      numWorkers: 2,
      onError: 'skip',
      log: () => {},
    });
    const rss: number[] = [];
    for (let epoch = 0; epoch < 20; epoch++) {
      let n = 0;
      for await (const b of dl) {
        n += b.images.shape[0];
        b.images.dispose();
        b.labels.dispose();
      }
      expect(n).toBe(30);
      rss.push(process.memoryUsage().rss);
    }
    const mib = (b: number) => b / 2 ** 20;
    // After warm-up (epoch 3) growth over 17 more epochs: a leak of one batch
    // buffer (4.8 MB) per epoch would add ~80 MiB.
    const growth = mib(rss[19] - rss[3]);
    expect(growth, `rss MiB per epoch: ${rss.map((r) => mib(r).toFixed(0)).join(' ')}`).toBeLessThan(24);
  });
});
