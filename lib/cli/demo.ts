// `torchline demo`: a whole training run on this machine with no cloud
// account. Fashion-MNIST (Debian's dataset-fashion-mnist) is written as JPEG
// files in class folders into a local GCS server, then listed, downloaded,
// trained on (ResNet50 + Adam, checkpoint every 2 epochs), evaluated, and the
// checkpoints are uploaded back.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  fashionMnistFiles,
  writeFashionMnistFolder,
} from '../data/fashion-mnist';
import { CliError, inputStep } from './errors';
import { PIPELINE_FLAGS, PIPELINE_USAGE, type PipelineConfig, resolveConfig, runPipeline } from './pipeline';
import type { Command } from './types';

/** Written into --out by the demo; only a folder holding it is ever cleaned, and then only of OUTPUTS. */
export const DEMO_MARKER = '.torchline-demo';
const OUTPUTS = ['data', 'staging', 'checkpoints', 'run'];
const FIREBASE_TOOLS = 'firebase-tools@15.34.2';

/** --quick: a run of seconds that still goes through every step. Flags given win over these. */
const QUICK = {
  trainPerClass: 20,
  valPerClass: 10,
  config: { model: 'resnet18', epochs: 1, batchSize: 50, checkpointEvery: 1 } as Partial<PipelineConfig>,
};

/** Everything the demo needs, checked before it writes anything. */
function preflight(out: string): void {
  try {
    require.resolve('firebase-tools/package.json', { paths: [__dirname, process.cwd()] });
  } catch {
    throw new CliError(
      `the demo's local GCS server comes from firebase-tools, an optional peer dependency: npm install --save-dev --ignore-scripts ${FIREBASE_TOOLS}`,
    );
  }
  for (const f of [...fashionMnistFiles('train'), ...fashionMnistFiles('t10k')]) {
    if (!fs.existsSync(f))
      throw new CliError(
        `${f} not found: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)`,
      );
  }
  if (fs.existsSync(out)) {
    if (!fs.statSync(out).isDirectory()) throw new CliError(`--out ${out} is a file: give a new or empty folder`);
    if (fs.readdirSync(out).length > 0 && !fs.existsSync(path.join(out, DEMO_MARKER))) {
      throw new CliError(
        `--out ${out} holds files the demo did not write: give a new or empty folder (or one an earlier demo made)`,
      );
    }
  }
}

/** Makes --out, marks it as the demo's, and removes what an earlier demo left there (and nothing else). */
function prepareOut(out: string): void {
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(
    path.join(out, DEMO_MARKER),
    'written by `torchline demo`; a later demo run replaces data/, staging/, checkpoints/ and run/\n',
  );
  for (const entry of OUTPUTS) fs.rmSync(path.join(out, entry), { recursive: true, force: true });
}

const demo: Command = {
  usage: `Usage: torchline demo [flags]

Writes Fashion-MNIST images (Debian's dataset-fashion-mnist) as JPEGs into a local GCS server (npm
firebase-tools, an optional peer dependency), then runs a whole training job against it: partitioned listing,
verified download, Dataset + transforms + DataLoader, ResNet50 + Adam, a checkpoint every 2 epochs uploaded
to the bucket, and evaluation on held-out images.

  --out DIR                where data, checkpoints and the report go (default ./demo-output); a new or empty
                           folder, or one an earlier demo made (it replaces only what that demo wrote)
  --train-per-class N      training images per class (default 1000)
  --val-per-class N        held-out test images per class, from t10k (default 200)
  --quick                  a run of seconds: 20 + 10 images per class, resnet18, 1 epoch (flags still win)
Pipeline flags (defaults chosen for the demo: resnet50, 4 epochs, cosine lr, 32 px, batch 64):
${PIPELINE_USAGE}`,
  options: {
    ...PIPELINE_FLAGS,
    out: { type: 'string' },
    'train-per-class': { type: 'string' },
    'val-per-class': { type: 'string' },
    quick: { type: 'boolean' },
  },
  async run(values) {
    const out = path.resolve(String(values.out ?? 'demo-output'));
    const quick = Boolean(values.quick);
    const perClass = (k: string, d: number) => {
      const n = values[k] === undefined ? d : Number(values[k]);
      if (!Number.isInteger(n) || n < 1) throw new CliError(`--${k} must be a positive integer, got '${values[k]}'`);
      return n;
    };
    const trainPer = perClass('train-per-class', quick ? QUICK.trainPerClass : 1000);
    const valPer = perClass('val-per-class', quick ? QUICK.valPerClass : 200);
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
      mean: FASHION_MNIST_MEAN,
      std: FASHION_MNIST_STD,
      ...(quick ? QUICK.config : {}),
    });
    preflight(out);
    const tl = await import('../index');
    const t0 = performance.now();
    prepareOut(out);
    const staging = path.join(out, 'staging');
    const nTrain = await inputStep('Fashion-MNIST', () =>
      writeFashionMnistFolder('train', path.join(staging, 'train_data'), trainPer),
    );
    const nVal = await inputStep('Fashion-MNIST', () =>
      writeFashionMnistFolder('t10k', path.join(staging, 'val_data'), valPer),
    );
    process.stderr.write(`wrote ${nTrain} train and ${nVal} held-out Fashion-MNIST JPEGs (28x28, grey)\n`);

    const emu = await tl.startGcsEmulator();
    const previousHost = process.env.STORAGE_EMULATOR_HOST;
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
      const seconds = (performance.now() - t0) / 1000;
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
        `  time          ${seconds.toFixed(0)} s`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
      const summary = {
        demo: 'fashion-mnist',
        accuracy: r.accuracy,
        top5: r.top5,
        valImages: r.valImages,
        trainImages: r.trainImages,
        seconds: Math.round(seconds),
      };
      process.stdout.write(JSON.stringify(summary) + '\n');
      return r.interrupted ? 130 : 0;
    } finally {
      if (previousHost === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = previousHost;
      await emu.stop();
    }
  },
};

export default demo;
