// The native transforms against torchvision (PIL) on Debian's real photos.
//
// Tolerance: with DCT scaling off (the default for non-random transforms)
// the output must equal torchvision's exactly. Both decode with
// libjpeg-turbo's ISLOW IDCT and fancy upsampling (Debian's Pillow links
// libjpeg62-turbo), our resampler does Pillow's fixed-point antialiased
// bilinear arithmetic step for step, and ToTensor/Normalize run in float32
// as torch does — so any difference is a bug, not rounding. With DCT scaling
// on (the train default), libjpeg-turbo's scaled IDCT replaces part of
// Pillow's triangle filter: a different low-pass, so pixels differ by a few
// levels on average (bounded below), never by a shift of the image.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { DataLoader, ManifestDataset, data, transforms as T } from '../../lib';
import { binding } from '../../lib/native';
import { collect, peer, photos, tmpDir } from './helpers';

const files = photos();
const STD = [0.229, 0.224, 0.225];

function diffLevels(a: Float32Array, b: Float32Array, offset: number, n: number): { max: number; mean: number } {
  // Back from normalised floats to 0..255 levels (per channel std).
  let max = 0,
    sum = 0;
  const plane = n / 3;
  for (let k = 0; k < n; k++) {
    const d = Math.abs(a[offset + k] - b[offset + k]) * STD[Math.floor(k / plane)] * 255;
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / n };
}

describe('Resize + CenterCrop + Normalize vs torchvision', () => {
  const dir = tmpDir('tf');
  const out = path.join(dir, 'peer.raw');
  peer('transform', out, '256', '224', ...files);
  const expected = new Float32Array(new Uint8Array(fs.readFileSync(out)).buffer);
  const per = 3 * 224 * 224;
  const ds = new ManifestDataset(files.map((uri) => ({ uri, label: 0 })));

  it(`is exact on all ${files.length} photos (DCT scaling off)`, async () => {
    const dl = new DataLoader(ds, { transform: T.imagenetEval(224), batchSize: 16, numWorkers: 2 });
    expect(dl.spec.dctScaling).toBe(false);
    const batches = await collect(dl);
    const got = new Float32Array(files.length * per);
    let o = 0;
    for (const b of batches) {
      expect(b.images.dtype).toBe('float32');
      got.set(b.images.toTypedArray() as Float32Array, o);
      o += b.images.numel;
    }
    expect(o).toBe(files.length * per);
    for (let i = 0; i < files.length; i++) {
      const d = diffLevels(got, expected, i * per, per);
      expect({ file: files[i], max: d.max }).toEqual({ file: files[i], max: 0 });
    }
  });

  it('stays within a few levels with DCT scaling on', async () => {
    const dl = new DataLoader(ds, {
      transform: T.imagenetEval(224),
      batchSize: files.length,
      numWorkers: 2,
      dctScaling: true,
    });
    const [b] = await collect(dl);
    const got = b.images.toTypedArray() as Float32Array;
    let worstMean = 0;
    for (let i = 0; i < files.length; i++)
      worstMean = Math.max(worstMean, diffLevels(got, expected, i * per, per).mean);
    // Measured worst: ~5 levels on baboon.jpg (fur: the most high-frequency photo).
    expect(worstMean).toBeGreaterThan(0);
    expect(worstMean).toBeLessThan(8);
  });
});

describe('RandomResizedCrop', () => {
  it('equals torchvision F.resized_crop for the same boxes (region decoding, no DCT scaling)', async () => {
    const some = files.filter((_, i) => i % 3 === 0);
    const seed = 11;
    const dl = new DataLoader(new ManifestDataset(some.map((uri) => ({ uri, label: 0 }))), {
      transform: T.RandomResizedCrop(160),
      batchSize: some.length,
      uint8: true,
      dctScaling: false,
      seed,
      numWorkers: 2,
    });
    const [b] = await collect(dl);
    expect(b.images.dtype).toBe('uint8');
    const seeds: BigUint64Array = binding.data.sampleSeeds(
      seed,
      0,
      some.map((_, i) => i),
    );
    const specs = await Promise.all(
      some.map(async (f, i) => {
        const m = await sharp(f).metadata();
        const g = binding.data.planGeometry(dl.spec, m.width, m.height, seeds[i]);
        return [f, g.cropY, g.cropX, g.cropH, g.cropW, 160];
      }),
    );
    // The boxes follow torchvision's sampling rules.
    for (const [, top, left, h, w] of specs as number[][]) {
      expect(top).toBeGreaterThanOrEqual(0);
      expect(left).toBeGreaterThanOrEqual(0);
      expect(h).toBeGreaterThan(0);
      expect(w).toBeGreaterThan(0);
    }
    const out = path.join(tmpDir('rrc'), 'rc.raw');
    peer('resized_crop', out, JSON.stringify(specs));
    const hwc = fs.readFileSync(out);
    const got = b.images.toTypedArray() as Uint8Array;
    const P = 160 * 160;
    let max = 0;
    for (let i = 0; i < some.length; i++)
      for (let c = 0; c < 3; c++)
        for (let k = 0; k < P; k++)
          max = Math.max(max, Math.abs(got[i * 3 * P + c * P + k] - hwc[(i * P + k) * 3 + c]));
    expect(max).toBe(0);
  });

  it('samples scale and ratio within bounds and falls back to a central crop', () => {
    const spec = {
      ops: [T.RandomResizedCrop(224, [0.08, 1], [3 / 4, 4 / 3])],
      outH: 224,
      outW: 224,
      uint8: false,
      dctScaling: false,
      maxPixels: 0,
    };
    const seeds: BigUint64Array = binding.data.sampleSeeds(
      3,
      0,
      Array.from({ length: 500 }, (_, i) => i),
    );
    let areaSum = 0;
    for (const s of seeds) {
      const g = binding.data.planGeometry(spec, 500, 375, s);
      const area = (g.cropW * g.cropH) / (500 * 375);
      areaSum += area;
      expect(area).toBeGreaterThan(0.06);
      expect(area).toBeLessThanOrEqual(1.0);
      expect(g.cropX + g.cropW).toBeLessThanOrEqual(500);
      expect(g.cropY + g.cropH).toBeLessThanOrEqual(375);
      expect([g.gridW, g.gridH]).toEqual([224, 224]);
    }
    expect(areaSum / seeds.length).toBeGreaterThan(0.4); // uniform(0.08, 1) clipped by the image
    // An impossible ratio: every try fails, torchvision's fallback is a central crop at the nearest ratio.
    const thin = { ...spec, ops: [T.RandomResizedCrop(224, [0.9, 1], [10, 12])] };
    const g = binding.data.planGeometry(thin, 500, 375, seeds[0]);
    expect([g.cropW, g.cropH]).toEqual([500, 50]); // in_ratio < min(ratio): w = width, h = round(w / 10)
    expect([g.cropX, g.cropY]).toEqual([0, Math.floor((375 - 50) / 2)]);
  });
});

describe('RandomHorizontalFlip and Normalize', () => {
  it('p=1 mirrors, p=0 does not; Normalize equals (x/255 - mean)/std', async () => {
    const f = files[10];
    const ds = new ManifestDataset([{ uri: f, label: 3 }]);
    const base = [T.Resize(64), T.CenterCrop(48)];
    const load = async (extra: T.Transform[]) =>
      (await collect(new DataLoader(ds, { transform: [...base, ...extra], batchSize: 1, numWorkers: 1 })))[0];
    const plain = await load([]);
    const flipped = await load([T.RandomHorizontalFlip(1)]);
    const kept = await load([T.RandomHorizontalFlip(0)]);
    const norm = await load([T.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.5])]);
    const a = plain.images.toTypedArray() as Float32Array;
    const fl = flipped.images.toTypedArray() as Float32Array;
    expect(kept.images.toTypedArray()).toEqual(a);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 48; y++)
        for (let x = 0; x < 48; x++) expect(fl[c * 2304 + y * 48 + x]).toBe(a[c * 2304 + y * 48 + 47 - x]);
    const n = norm.images.toTypedArray() as Float32Array;
    const mean = [0.5, 0.4, 0.3],
      std = [0.2, 0.25, 0.5];
    for (let k = 0; k < n.length; k += 97) {
      const c = Math.floor(k / 2304);
      expect(n[k]).toBeCloseTo((a[k] - mean[c]) / std[c], 5);
    }
    expect(plain.labels.toArray()).toEqual([3]);
    expect(plain.labels.dtype).toBe('int64');
  });

  it('uint8 batches normalised later (data.normalize, the GPU path) equal the float batches', async () => {
    const ds = new ManifestDataset(files.slice(0, 6).map((uri) => ({ uri, label: 0 })));
    const opts = { transform: T.imagenetEval(96), batchSize: 6, numWorkers: 2, pinMemory: true };
    const [f] = await collect(new DataLoader(ds, opts));
    const [u] = await collect(new DataLoader(ds, { ...opts, uint8: true }));
    expect(u.images.dtype).toBe('uint8');
    const n = data.normalize(u.images, T.IMAGENET_MEAN, T.IMAGENET_STD, 'cpu');
    expect(n.dtype).toBe('float32');
    expect(n.shape).toEqual(f.images.shape);
    expect(n.toTypedArray()).toEqual(f.images.toTypedArray());
    expect(() => data.normalize(f.images, T.IMAGENET_MEAN, T.IMAGENET_STD)).toThrow(/uint8/);
  });

  it('refuses transforms that give no fixed batch size', () => {
    const ds = new ManifestDataset([{ uri: files[0], label: 0 }]);
    expect(() => new DataLoader(ds, { transform: T.Resize(256) })).toThrow(/fixed output size/);
    expect(() => T.Normalize([1, 2], [1, 1])).toThrow(TypeError);
    expect(() => T.RandomResizedCrop(224, [1, 0.5])).toThrow(RangeError);
  });

  it('RandomResizedCrop refuses a ratio <= 0 and a scale outside (0, 1] with a RangeError', () => {
    for (const ratio of [
      [0, 1],
      [-1, 2],
      [-2, -1],
    ] as [number, number][])
      expect(() => T.RandomResizedCrop(224, [0.08, 1], ratio), `ratio ${ratio}`).toThrow(
        /RandomResizedCrop: ratio must be > 0/,
      );
    for (const scale of [
      [0, 1],
      [-0.5, 0.5],
      [0.5, 1.5],
      [1.1, 2],
    ] as [number, number][])
      expect(() => T.RandomResizedCrop(224, scale), `scale ${scale}`).toThrow(
        /RandomResizedCrop: scale must lie in \(0, 1\]/,
      );
    expect(T.RandomResizedCrop(224, [1, 1], [1, 1]).op).toBe('RandomResizedCrop'); // the edges are fine
  });
});
