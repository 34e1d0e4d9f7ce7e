// Images that decode differently from torchvision, and hostile images (issue 14):
//   CMYK JPEGs -> PIL's CMYK conversion (within 2 levels of PIL's pixels),
//   16-bit greyscale PNGs -> clipped to 255 as PIL's convert('RGB'),
//   EXIF orientation -> applied by default, exactly torchvision's pixels with exifTranspose: false,
//   a 65500x1 JPEG, a tiny progressive JPEG claiming 169 MP, a large photo -> per-worker memory bounded
//   (peak and after), measured in a fresh process,
//   bad decodeJpeg scales -> RangeError; a worker pool that cannot start -> a JS error, no abort.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataLoader, ImageFiles, transforms as T } from '../../lib';
import { binding } from '../../lib/native';
import { PY, photos, tmpDir } from './helpers';

const root = path.resolve(__dirname, '../..');
const dir = tmpDir('images');
const file = (n: string) => path.join(dir, n);

beforeAll(() => {
  execFileSync(PY, [path.join(__dirname, 'peer_images.py'), dir, photos().find((p) => p.endsWith('fruits.jpg'))!]);
  // The memory tests run the compiled library in a child process: rebuild dist/ if lib/ is newer.
  const built = path.join(root, 'dist/index.js');
  const newest = (d: string): number =>
    Math.max(
      ...fs
        .readdirSync(d, { withFileTypes: true })
        .map((e) => (e.isDirectory() ? newest(path.join(d, e.name)) : fs.statSync(path.join(d, e.name)).mtimeMs)),
    );
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newest(path.join(root, 'lib')))
    execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root]);
});

/** What PIL read (HWC uint8) and its size. */
function reference(name: string): { rgb: Buffer; width: number; height: number } {
  const { width, height } = JSON.parse(fs.readFileSync(file(`${name}.json`), 'utf8'));
  return { rgb: fs.readFileSync(file(`${name}.rgb`)), width, height };
}

/** The loader's pixels for a file, unresized (a CenterCrop of the whole image), as HWC uint8. */
async function load(
  name: string,
  height: number,
  width: number,
  options: { exifTranspose?: boolean } = {},
): Promise<Buffer> {
  const ds = new ImageFiles([file(name)], { label: () => 'x', transform: T.CenterCrop([height, width]) });
  const dl = new DataLoader(ds, { uint8: true, numWorkers: 1, seed: 1, ...options });
  for await (const b of dl) {
    const chw = Buffer.from(b.images.toTypedArray().buffer as ArrayBuffer);
    const hwc = Buffer.alloc(chw.length);
    const plane = height * width;
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) hwc[i * 3 + c] = chw[c * plane + i];
    return hwc;
  }
  throw new Error('no batch');
}

function diff(a: Buffer, b: Buffer): { mean: number; max: number } {
  expect(a.length).toBe(b.length);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

describe('decoded as torchvision (PIL) decodes them', () => {
  it.each(['cmyk.jpg', 'cmyk444.jpg'])("%s: PIL's CMYK (Adobe inverted) conversion, within 2 levels", async (name) => {
    const ref = reference(name);
    const d = diff(await load(name, ref.height, ref.width), ref.rgb);
    expect(d.mean, `mean ${d.mean}, max ${d.max}`).toBeLessThan(0.5);
    expect(d.max).toBeLessThanOrEqual(2);
  });

  it.each(['grey16-low.png', 'grey16-high.png'])(
    '%s (PIL mode I;16): values clipped to 255, as convert("RGB")',
    async (name) => {
      const ref = reference(name);
      const d = diff(await load(name, ref.height, ref.width), ref.rgb);
      expect(d).toEqual({ mean: 0, max: 0 });
    },
  );

  it("EXIF orientation: applied by default (exif_transpose), torchvision's pixels with exifTranspose: false", async () => {
    const plain = reference('exif6.jpg');
    const turned = reference('exif6.jpg.transposed');
    expect([turned.width, turned.height]).toEqual([plain.height, plain.width]);
    // Default: rotated, as PIL's ImageOps.exif_transpose (sharp decodes: within a level or two of PIL).
    const d1 = diff(await load('exif6.jpg', turned.height, turned.width), turned.rgb);
    expect(d1.mean).toBeLessThan(1);
    // exifTranspose: false: the stored pixels, as torchvision's loader gives them (the native path: exact).
    const d2 = diff(await load('exif6.jpg', plain.height, plain.width, { exifTranspose: false }), plain.rgb);
    expect(d2).toEqual({ mean: 0, max: 0 });
    expect(binding.data.sniffJpeg(fs.readFileSync(file('exif6.jpg')), false).fastPath).toBe(true);
    expect(binding.data.sniffJpeg(fs.readFileSync(file('exif6.jpg'))).reason).toBe('EXIF orientation 6');
  });
});

describe('hostile images: per-worker memory is bounded', () => {
  const child = (opts: object) => {
    const r = spawnSync(
      process.execPath,
      [path.join(__dirname, 'memory-child.cjs'), path.join(root, 'dist'), JSON.stringify(opts)],
      {
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    if (r.status !== 0) throw new Error(`child failed (${r.status} ${r.signal}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const warm = photos().slice(0, 4);

  it('a 65500x1 JPEG with Resize(256) + CenterCrop(224): the resampler sizes its tables for the output window', () => {
    const r = child({
      files: [file('wide.jpg'), file('wide.jpg'), file('wide.jpg'), file('wide.jpg')],
      warm,
      numWorkers: 2,
      transform: 'eval',
      repeat: 2,
    });
    expect(r.n).toBe(4); // decoded, not refused
    const peak = r.after.hwm - r.before.hwm;
    expect(peak, JSON.stringify(r)).toBeLessThan(64);
  });

  it('a 520-byte progressive JPEG claiming 13000x13000 is refused before libjpeg allocates its coefficients', () => {
    const r = child({
      files: [file('progressive-bomb.jpg'), file('progressive-bomb.jpg')],
      warm,
      numWorkers: 2,
      transform: 'train',
      repeat: 2,
    });
    expect(r.n).toBe(0);
    expect(r.reasons.join('\n')).toMatch(/needs 48\d MiB of decoder memory, over maxDecoderMemory 256 MiB/);
    const peak = r.after.hwm - r.before.hwm;
    expect(peak, JSON.stringify(r)).toBeLessThan(64);
  });

  it('a worker gives back the buffers of a large image (6000x4000) once it is done', () => {
    const r = child({
      files: [file('large.jpg'), file('large.jpg')],
      warm,
      numWorkers: 2,
      transform: 'eval',
      repeat: 1,
    });
    expect(r.n).toBe(2);
    expect(r.after.hwm - r.before.hwm, 'the large image was really decoded').toBeGreaterThan(60);
    expect(r.after.rss - r.before.rss, JSON.stringify(r)).toBeLessThan(40);
  });

  it('maxDecoderMemory is checked and can be raised', async () => {
    expect(
      () =>
        new DataLoader(new ImageFiles([file('wide.jpg')], { label: () => 'x' }), {
          transform: T.CenterCrop(1),
          maxDecoderMemory: -1,
        }),
    ).toThrow(RangeError);
    const bomb = fs.readFileSync(file('progressive-bomb.jpg'));
    expect(() => binding.data.decodeJpeg(bomb, 1)).toThrow(/needs 48\d MiB of decoder memory/);
  });
});

describe('native decode arguments', () => {
  const jpeg = fs.readFileSync(photos()[0]);

  it('decodeJpeg accepts only libjpeg-turbo scaling factors (n/8, n in 1..16)', () => {
    const full = binding.data.decodeJpeg(jpeg);
    for (const bad of [0, -1, 17, 2.5, NaN, Infinity, 1e9])
      expect(() => binding.data.decodeJpeg(jpeg, bad), String(bad)).toThrow(RangeError);
    expect(() => binding.data.decodeJpeg(jpeg, '4')).toThrow(TypeError);
    for (const n of [1, 2, 3, 4, 8, 16]) {
      const img = binding.data.decodeJpeg(jpeg, n);
      expect(img.width).toBe(Math.ceil((full.width * n) / 8));
      expect(img.rgb.length).toBe(img.width * img.height * 3);
    }
  });

  it('a worker pool whose threads cannot all start gives a JS error, never an abort', () => {
    // TORCHLINE_TEST_THREAD_LIMIT=2: the OS "refuses" every pool's third thread.
    const script = `
      const { DataLoader, ImageFiles, transforms: T } = require(${JSON.stringify(path.join(root, 'dist'))});
      const ds = new ImageFiles([${JSON.stringify(photos()[0])}], { label: () => 'x' });
      try { new DataLoader(ds, { transform: T.CenterCrop(8), numWorkers: 4 }); console.log('no error'); }
      catch (e) { console.log('error: ' + e.message); }
      const ok = new DataLoader(ds, { transform: T.CenterCrop(8), numWorkers: 2 });
      ok.loadBatch([0]).then((b) => console.log('two workers: ' + b.images.shape.join('x')));`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, TORCHLINE_TEST_THREAD_LIMIT: '2' },
      timeout: 60_000,
    });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /error: DataPipeline: cannot start worker thread 3 of 4: Resource temporarily unavailable/,
    );
    expect(r.stdout).toMatch(/two workers: 1x3x8x8/);
  });
});
