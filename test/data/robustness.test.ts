// Bad and unusual files. Documented results (README "Data"):
//   truncated JPEG, zero-byte file, non-image, image over maxPixels -> an error for that sample:
//     onError 'raise' (default) rejects the iteration naming the file; 'skip' drops the sample from
//     its batch and logs the file and reason once.
//   CMYK JPEG, PNG named .JPEG, 16-bit PNG, EXIF-rotated JPEG, grayscale, palette, alpha -> decoded
//     (sharp for all but grayscale and CMYK JPEGs) to 8-bit RGB with EXIF orientation applied, same layout.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { Batch, DataLoader, ManifestDataset, transforms as T } from '../../lib';
import { binding } from '../../lib/native';
import { collect, photos, tmpDir } from './helpers';

const photo = photos().find((p) => p.endsWith('fruits.jpg'))!;
const dir = tmpDir('robust');
const file = (name: string) => path.join(dir, name);

async function makeFiles() {
  const small = sharp(photo).resize(120, 90);
  const jpeg = await small.clone().jpeg({ quality: 90 }).toBuffer();
  fs.writeFileSync(file('good.jpg'), jpeg);
  fs.writeFileSync(file('truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
  fs.writeFileSync(file('zero.jpg'), Buffer.alloc(0));
  fs.writeFileSync(file('text.jpg'), 'this is not an image\n');
  await small.clone().toColourspace('cmyk').jpeg().toFile(file('cmyk.jpg'));
  const png = await small.clone().png().toBuffer();
  fs.writeFileSync(file('real.png'), png);
  fs.writeFileSync(file('png-named.JPEG'), png);
  await small.clone().toColourspace('rgb16').png().toFile(file('16bit.png'));
  await small.clone().greyscale().jpeg().toFile(file('gray.jpg'));
  await small.clone().png({ palette: true }).toFile(file('palette.png'));
  await small.clone().ensureAlpha(0.5).png().toFile(file('alpha.png'));
  await small.clone().jpeg({ quality: 90, progressive: true }).toFile(file('progressive.jpg'));
  // EXIF orientation 6 (rotate 90° clockwise to display) and its rotated twin, both from the same pixels.
  const raw = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  const rawIn = { raw: { width: raw.info.width, height: raw.info.height, channels: 3 as const } };
  await sharp(raw.data, rawIn).png().withMetadata({ orientation: 6 }).toFile(file('exif6.png'));
  await sharp(raw.data, rawIn).rotate(90).png().toFile(file('rotated.png'));
  await sharp(raw.data, rawIn).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(file('exif6.jpg'));
  await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080' } })
    .jpeg()
    .toFile(file('big.jpg'));
  await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080' } })
    .png()
    .toFile(file('big.png'));
}

const ready = makeFiles();
const tf = [T.CenterCrop([100, 60]), T.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])];

async function load(
  names: string[],
  opts: object = {},
): Promise<{ batches: Batch[]; log: string[]; loader: DataLoader }> {
  await ready;
  const log: string[] = [];
  const loader = new DataLoader(new ManifestDataset(names.map((n, i) => ({ uri: file(n), label: i }))), {
    transform: tf,
    batchSize: names.length,
    numWorkers: 2,
    log: (m) => log.push(m),
    ...opts,
  });
  return { batches: await collect(loader), log, loader };
}

const pixels = (b: Batch, i: number) => {
  const n = 3 * 100 * 60;
  return (b.images.toTypedArray() as Float32Array).slice(i * n, (i + 1) * n);
};
// Mean absolute difference in 0..255 levels (Normalize(0.5, 0.5) scales levels by 2/255).
const meanDiff = (a: Float32Array, b: Float32Array) =>
  (a.reduce((s, v, k) => s + Math.abs(v - b[k]), 0) / a.length) * 0.5 * 255;

describe('the fast path decides by content, not by name', () => {
  it('sniffs JPEGs the native decoder takes and declines the rest', async () => {
    await ready;
    const sniff = (n: string) => binding.data.sniffJpeg(fs.readFileSync(file(n)));
    expect(sniff('good.jpg')).toMatchObject({ isJpeg: true, fastPath: true, hasEnd: true, width: 120, height: 90 });
    expect(sniff('truncated.jpg')).toMatchObject({ isJpeg: true, hasEnd: false });
    expect(sniff('gray.jpg').fastPath).toBe(true);
    expect(sniff('progressive.jpg').fastPath).toBe(true);
    expect(sniff('cmyk.jpg')).toMatchObject({ isJpeg: true, fastPath: true, cmyk: true }); // PIL's conversion, natively
    expect(sniff('exif6.jpg')).toMatchObject({ fastPath: false, reason: 'EXIF orientation 6' });
    expect(sniff('png-named.JPEG')).toMatchObject({ isJpeg: false, fastPath: false });
  });
});

describe('files that decode', () => {
  it('CMYK, PNG named .JPEG, 16-bit, grayscale, palette, alpha, progressive all come out as RGB', async () => {
    const names = [
      'good.jpg',
      'cmyk.jpg',
      'png-named.JPEG',
      'real.png',
      '16bit.png',
      'gray.jpg',
      'palette.png',
      'alpha.png',
      'progressive.jpg',
    ];
    const { batches, log } = await load(names);
    expect(log).toEqual([]);
    const [b] = batches;
    expect(b.images.shape).toEqual([names.length, 3, 100, 60]);
    const good = pixels(b, 0);
    const real = pixels(b, 3);
    expect(pixels(b, 2)).toEqual(real); // a PNG is a PNG whatever its name
    const toLevels = (a: Float32Array, c: Float32Array) =>
      a.reduce((s, v, k) => Math.max(s, Math.abs(v - c[k])), 0) * 0.5 * 255;
    expect(toLevels(pixels(b, 4), real)).toBeLessThanOrEqual(1); // 16-bit -> 8-bit
    expect(toLevels(pixels(b, 6), real)).toBeLessThan(80); // palette quantisation
    expect(toLevels(pixels(b, 7), real)).toBe(0); // alpha dropped, colour kept (PIL convert('RGB'))
    // libvips wrote this CMYK through an ICC profile; PIL (so torchvision, so torchline) converts back
    // without one, as a naive inverse: near, not equal. Exact parity with PIL: test/data/images.test.ts.
    expect(meanDiff(pixels(b, 1), good)).toBeLessThan(20);
    expect(meanDiff(pixels(b, 8), good)).toBeLessThan(3);
    const gray = pixels(b, 5);
    const plane = 100 * 60;
    expect(gray.subarray(0, plane)).toEqual(gray.subarray(plane, 2 * plane)); // R = G = B
    expect(b.labels.toArray()).toEqual(names.map((_, i) => i));
  });

  it('applies EXIF orientation (JPEG and PNG) like the physically rotated image', async () => {
    const { batches } = await load(['rotated.png', 'exif6.png', 'exif6.jpg', 'good.jpg']);
    const [b] = batches;
    expect(pixels(b, 1)).toEqual(pixels(b, 0));
    expect(meanDiff(pixels(b, 2), pixels(b, 0))).toBeLessThan(3); // re-encoded as JPEG
    // Unrotated, the 120x90 image would be padded by a 100x60 crop; rotated it is not.
    expect(meanDiff(pixels(b, 3), pixels(b, 0))).toBeGreaterThan(10);
  });
});

describe('files that fail', () => {
  const bad = ['truncated.jpg', 'zero.jpg', 'text.jpg', 'big.jpg', 'big.png'];

  it("'raise' rejects with the file and the reason", async () => {
    const reasons: Record<string, RegExp> = {
      'truncated.jpg': /truncated/i,
      'zero.jpg': /empty|unsupported|missing/i,
      'text.jpg': /unsupported image format/i,
      'big.jpg': /decompression bomb/,
      'big.png': /pixel limit|exceeds/i,
    };
    for (const name of bad) {
      const err = await load(['good.jpg', name], { maxPixels: 1_000_000 }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err, name).toBeInstanceOf(Error);
      expect(err!.message).toContain(file(name));
      expect(err!.message, name).toMatch(reasons[name]);
    }
  });

  it("'skip' drops them from their batch, logs each once across epochs, and never hangs", async () => {
    await ready;
    const names = ['good.jpg', ...bad, 'cmyk.jpg'];
    const log: string[] = [];
    const loader = new DataLoader(new ManifestDataset(names.map((n, i) => ({ uri: file(n), label: i }))), {
      transform: tf,
      batchSize: 3,
      numWorkers: 2,
      onError: 'skip',
      maxPixels: 1_000_000,
      log: (m) => log.push(m),
    });
    for (let epoch = 0; epoch < 3; epoch++) {
      const batches = await collect(loader);
      expect(batches.flatMap((b) => b.labels.toArray())).toEqual([0, 6]);
      expect(batches.flatMap((b) => b.indices)).toEqual([0, 6]);
    }
    expect(log.length).toBe(bad.length);
    for (const name of bad) expect(log.some((l) => l.includes(file(name)))).toBe(true);
    expect(loader.skipped.map((s) => s.index).sort()).toEqual([1, 2, 3, 4, 5]); // in completion order
  });

  it('a missing file is an error too', async () => {
    await expect(load(['nope.jpg'])).rejects.toThrow(/nope\.jpg/);
  });
});

describe('damaged files never crash or hang the loader', () => {
  it('survives 60 corrupted and cut JPEGs and PNGs with onError: skip', async () => {
    await ready;
    const fuzz = path.join(dir, 'fuzz');
    fs.mkdirSync(fuzz, { recursive: true });
    let rnd = 7;
    const rand = (n: number) => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) % n;
    const sources = [
      fs.readFileSync(file('good.jpg')),
      fs.readFileSync(file('progressive.jpg')),
      fs.readFileSync(file('real.png')),
    ];
    const rows = [];
    for (let i = 0; i < 60; i++) {
      const b = Buffer.from(sources[i % 3]);
      if (i % 2 === 0) for (let k = 0; k < 1 + rand(20); k++) b[20 + rand(b.length - 20)] = rand(256); // header and data damage
      const cut = i % 4 === 1 ? b.subarray(0, 2 + rand(b.length - 2)) : b;
      const name = path.join(fuzz, `f${i}.jpg`);
      fs.writeFileSync(name, cut);
      rows.push({ uri: name, label: i });
    }
    const dl = new DataLoader(new ManifestDataset(rows), {
      transform: T.imagenetTrain(64),
      batchSize: 8,
      numWorkers: 2,
      onError: 'skip',
      maxPixels: 4_000_000,
      log: () => {},
    });
    let n = 0;
    for await (const b of dl) n += b.images.shape[0];
    expect(n + dl.skipped.length).toBe(60);
    expect(n).toBeGreaterThan(0);
  });
});

describe('decoding overlaps the consumer', () => {
  it('a slow training step hides the decode time (prefetch)', async () => {
    await ready;
    const rows = Array.from({ length: 192 }, () => ({ uri: photo, label: 0 }));
    const make = () =>
      new DataLoader(new ManifestDataset(rows), {
        transform: T.imagenetEval(224),
        batchSize: 32,
        numWorkers: 2,
        prefetch: 2,
      });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for await (const b of make()) b.images.dispose(); // warm (page cache, threads)
    const t0 = performance.now();
    for await (const b of make()) b.images.dispose();
    const perBatch = (performance.now() - t0) / 6;
    // A training step twice as long as a batch's decode: while it runs, the
    // next batches are decoded, so the loader should hardly make it wait.
    let waited = 0,
      k = 0;
    let t = performance.now();
    for await (const b of make()) {
      if (k++ > 0) waited += performance.now() - t;
      b.images.dispose();
      await sleep(perBatch * 2);
      t = performance.now();
    }
    // Without overlap batches 2..6 would each wait ~perBatch.
    expect(waited).toBeLessThan(5 * perBatch * 0.5);
  });
});

describe('the event loop stays free', () => {
  it('timers keep firing while batches decode', async () => {
    await ready;
    const many = Array.from({ length: 256 }, () => ({ uri: photo, label: 0 }));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = Date.now();
    const dl = new DataLoader(new ManifestDataset(many), {
      transform: T.imagenetEval(224),
      batchSize: 64,
      numWorkers: 2,
    });
    let n = 0;
    for await (const b of dl) {
      n += b.images.shape[0];
      b.images.dispose();
    }
    clearInterval(timer);
    const elapsed = Date.now() - t0;
    expect(n).toBe(256);
    // A blocked loop would fire ~once; a free one about elapsed / 5 times.
    expect(ticks).toBeGreaterThan(elapsed / 5 / 4);
  });
});
