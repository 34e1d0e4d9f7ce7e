// Fashion-MNIST as Debian's dataset-fashion-mnist ships it (gzipped IDX files),
// and a writer that turns it into an ImageFolder of JPEGs: the data of the demo,
// the Fashion-MNIST benchmark and the training tests.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

/** Where Debian's dataset-fashion-mnist puts the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
/** Class folder names, by label (file-name safe spellings of the dataset's names). */
export const FASHION_MNIST_CLASSES = [
  'T-shirt_top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle_boot',
];
/** Per-channel statistics of the training images (grey, so the same on R, G, B). */
export const FASHION_MNIST_MEAN = [0.286, 0.286, 0.286];
export const FASHION_MNIST_STD = [0.353, 0.353, 0.353];

export type FashionMnistSplit = 'train' | 't10k';

/** The file names of a split, for checks before any work starts. */
export function fashionMnistFiles(split: FashionMnistSplit, dir = FASHION_MNIST_DIR): string[] {
  return [`${split}-images-idx3-ubyte.gz`, `${split}-labels-idx1-ubyte.gz`].map((f) => path.join(dir, f));
}

/** Reads a split's IDX file pair. Throws an Error with code ENOENT, naming the package, when a file is missing. */
export function readFashionMnist(
  split: FashionMnistSplit,
  dir = FASHION_MNIST_DIR,
): { images: Buffer; labels: Buffer; rows: number; cols: number } {
  const [img, lab] = fashionMnistFiles(split, dir).map((p) => {
    if (!fs.existsSync(p)) {
      const err = new Error(
        `${p} not found: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)`,
      );
      (err as NodeJS.ErrnoException).code = 'ENOENT';
      throw err;
    }
    return zlib.gunzipSync(fs.readFileSync(p));
  });
  if (img.length < 16 || lab.length < 8 || img.readUInt32BE(0) !== 2051 || lab.readUInt32BE(0) !== 2049)
    throw new Error(`${dir}: not IDX files`);
  const n = img.readUInt32BE(4);
  const rows = img.readUInt32BE(8);
  const cols = img.readUInt32BE(12);
  if (lab.readUInt32BE(4) !== n) throw new Error(`${dir}: ${n} images but ${lab.readUInt32BE(4)} labels`);
  if (img.length - 16 < n * rows * cols || lab.length - 8 < n)
    throw new Error(`${dir}: IDX files shorter than their headers say`);
  return { images: img.subarray(16), labels: lab.subarray(8), rows, cols };
}

/** Writes the first `perClass` images of each class as JPEGs in <dir>/<class>/. Returns the count. */
export async function writeFashionMnistFolder(
  split: FashionMnistSplit,
  dir: string,
  perClass: number,
  source = FASHION_MNIST_DIR,
): Promise<number> {
  const sharp = (await import('sharp')).default;
  const { images, labels, rows, cols } = readFashionMnist(split, source);
  const counts = new Array(10).fill(0);
  for (const c of FASHION_MNIST_CLASSES) fs.mkdirSync(path.join(dir, c), { recursive: true });
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (counts[y] >= perClass) continue;
    counts[y]++;
    const px = images.subarray(i * rows * cols, (i + 1) * rows * cols);
    const file = path.join(dir, FASHION_MNIST_CLASSES[y], `${split}_${String(i).padStart(5, '0')}.jpg`);
    jobs.push(
      sharp(px, { raw: { width: cols, height: rows, channels: 1 } })
        .jpeg({ quality: 95 })
        .toFile(file),
    );
    if (jobs.length >= 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return counts.reduce((a, b) => a + b, 0);
}
