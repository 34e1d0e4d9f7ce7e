// `torchline demo`: the seed's whole pipeline on this machine with no cloud
// account. Fashion-MNIST (Debian's dataset-fashion-mnist) is written as JPEG
// files in class folders into a local GCS server, then listed, downloaded,
// trained on (ResNet50 + Adam, checkpoint every 2 epochs), evaluated, and the
// checkpoints are uploaded back.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { Command } from './registry';
import { CliError } from './registry';
import { PIPELINE_FLAGS, PIPELINE_USAGE, resolveConfig, runPipeline } from './pipeline';

const FMNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FMNIST_CLASSES = ['T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle_boot'];
// Per-channel statistics of Fashion-MNIST's training images (grey, so the same on R, G, B).
const FMNIST_MEAN = [0.286, 0.286, 0.286];
const FMNIST_STD = [0.353, 0.353, 0.353];

/** Reads an IDX file pair (images, labels), gzipped as Debian ships them. */
export function readIdx(split: 'train' | 't10k', dir = FMNIST_DIR): { images: Buffer; labels: Buffer; rows: number; cols: number } {
  const read = (f: string) => {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) throw new CliError(`${p} not found: install Debian's dataset-fashion-mnist (npm run setup does)`);
    return zlib.gunzipSync(fs.readFileSync(p));
  };
  const img = read(`${split}-images-idx3-ubyte.gz`);
  const lab = read(`${split}-labels-idx1-ubyte.gz`);
  if (img.readUInt32BE(0) !== 2051 || lab.readUInt32BE(0) !== 2049) throw new CliError(`${dir}: not IDX files`);
  const n = img.readUInt32BE(4);
  if (lab.readUInt32BE(4) !== n) throw new CliError(`${dir}: ${n} images but ${lab.readUInt32BE(4)} labels`);
  return { images: img.subarray(16), labels: lab.subarray(8), rows: img.readUInt32BE(8), cols: img.readUInt32BE(12) };
}

/** Writes the first `perClass` images of each class as JPEGs in <dir>/<class>/. Returns the count. */
export async function writeImageFolder(split: 'train' | 't10k', dir: string, perClass: number): Promise<number> {
  const sharp = (await import('sharp')).default;
  const { images, labels, rows, cols } = readIdx(split);
  const counts = new Array(10).fill(0);
  for (const c of FMNIST_CLASSES) fs.mkdirSync(path.join(dir, c), { recursive: true });
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (counts[y] >= perClass) continue;
    counts[y]++;
    const px = images.subarray(i * rows * cols, (i + 1) * rows * cols);
    jobs.push(sharp(px, { raw: { width: cols, height: rows, channels: 1 } }).jpeg({ quality: 95 }).toFile(path.join(dir, FMNIST_CLASSES[y], `${split}_${String(i).padStart(5, '0')}.jpg`)));
    if (jobs.length >= 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return counts.reduce((a, b) => a + b, 0);
}

const demo: Command = {
  summary: 'run the whole pipeline on Fashion-MNIST through a local GCS server',
  usage: `Usage: torchline demo [flags]

Writes Fashion-MNIST images (Debian's dataset-fashion-mnist) as JPEGs into a local GCS server, then does what
the seed does: partitioned listing, verified download, Dataset + transforms + DataLoader, ResNet50 + Adam,
a checkpoint every 2 epochs uploaded to the bucket, and evaluation on held-out images.

  --out DIR                where data, checkpoints and the report go (default ./demo-output)
  --train-per-class N      training images per class (default 1000)
  --val-per-class N        held-out test images per class, from t10k (default 200)
Pipeline flags (defaults chosen for the demo: resnet50, 4 epochs, cosine lr, 32 px, batch 64):
${PIPELINE_USAGE}`,
  options: { ...PIPELINE_FLAGS, out: { type: 'string' }, 'train-per-class': { type: 'string' }, 'val-per-class': { type: 'string' } },
  async run(values) {
    const tl = await import('../index');
    const out = path.resolve(String(values.out ?? 'demo-output'));
    const perClass = (k: string, d: number) => {
      const n = values[k] === undefined ? d : Number(values[k]);
      if (!Number.isInteger(n) || n < 1) throw new CliError(`--${k} must be a positive integer`);
      return n;
    };
    const trainPer = perClass('train-per-class', 1000);
    const valPer = perClass('val-per-class', 200);
    const cfg = resolveConfig(values, {
      bucket: 'torchline-demo',
      trainDir: path.join(out, 'data/train'),
      valDir: path.join(out, 'data/val'),
      checkpointDir: path.join(out, 'checkpoints'),
      logDir: path.join(out, 'run'),
      model: 'resnet50',
      epochs: 4,
      scheduler: 'cosine',
      // The local GCS server (Firebase's emulator) refuses objects over 130 MB; ResNet50's weights are 94 MB,
      // with Adam's moments 290 MB. Real GCS takes the full checkpoint (the default of \`torchline train\`).
      weightsOnly: true,
      imageSize: 32,
      augment: 'flip',
      mean: FMNIST_MEAN,
      std: FMNIST_STD,
    });
    const t0 = performance.now();
    fs.rmSync(out, { recursive: true, force: true });
    const staging = path.join(out, 'staging');
    const nTrain = await writeImageFolder('train', path.join(staging, 'train_data'), trainPer);
    const nVal = await writeImageFolder('t10k', path.join(staging, 'val_data'), valPer);
    process.stderr.write(`wrote ${nTrain} train and ${nVal} held-out Fashion-MNIST JPEGs (28x28, grey)\n`);

    const emu = await tl.startGcsEmulator();
    process.env.STORAGE_EMULATOR_HOST = emu.url;
    process.stderr.write(`local GCS server (Firebase Storage emulator) at ${emu.url}\n`);
    try {
      for (const prefix of ['train_data', 'val_data']) {
        const r = await tl.upload(path.join(staging, prefix), `gs://${cfg.bucket}/${prefix}/`, { progress: false });
        process.stderr.write(`uploaded ${r.files.length} files to gs://${cfg.bucket}/${prefix}/\n`);
      }
      fs.rmSync(staging, { recursive: true, force: true });
      const r = await runPipeline(cfg);
      const inBucket = await tl.listPartitioned(`gs://${cfg.bucket}/${cfg.checkpointPrefix}/`);
      const lines = [
        '',
        'torchline demo: done',
        `  data          Fashion-MNIST, ${r.trainImages} train images (${trainPer}/class), ${r.valImages} held-out t10k images (${valPer}/class), 28x28 grey -> ${cfg.imageSize}x${cfg.imageSize} RGB`,
        `  model         ${cfg.model}, Adam lr ${cfg.lr} (${cfg.scheduler} schedule), ${cfg.epochs} epochs, batch ${cfg.batchSize}`,
        `  accuracy      ${(r.accuracy * 100).toFixed(2)}% top-1, ${(r.top5 * 100).toFixed(2)}% top-5 on the held-out images (chance: 10%)`,
        `  checkpoints   ${r.checkpoints.join(', ')}`,
        `  uploaded      ${inBucket.files.map((f) => f.path).join(', ') || 'none'}`,
        `  report        ${r.reportPath}`,
        `  metrics       ${path.join(r.logDir, 'metrics.jsonl')} and TensorBoard events in ${r.logDir}`,
        `  time          ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
      process.stdout.write(JSON.stringify({ demo: 'fashion-mnist', accuracy: r.accuracy, top5: r.top5, valImages: r.valImages, trainImages: r.trainImages, seconds: Math.round((performance.now() - t0) / 1000) }) + '\n');
      return r.interrupted ? 130 : 0;
    } finally {
      await emu.stop();
    }
  },
};

export default demo;
