// One epoch of the seed's pipeline (dataset from a JPEG folder, Resize 224,
// Normalize, DataLoader, ResNet, Adam, cross-entropy) in Python (fp32, as the
// seed, DataLoader workers = cores) beside torchline at its defaults (precision
// 'auto', default decode workers) on the same folder and intra-op threads.
// Usage: npm run bench -- end-to-end [--files N] [--model resnet50] [--size 224] [--workers N]
import { PYTHON } from '../scripts/peer-python.js';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Adam,
  DataLoader,
  ImageFolder,
  ResNet,
  defaultNumWorkers,
  getNumThreads,
  manualSeed,
  resolvePrecision,
  trainStep,
  transforms as T,
} from '../dist/index.js';
import { makeImagenetLike } from './fixtures.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '192' },
    model: { type: 'string', default: 'resnet50' },
    size: { type: 'string', default: '224' },
    batch: { type: 'string', default: '32' },
    workers: { type: 'string' },
  },
});
const files = Number(values.files);
const size = Number(values.size);
const batch = Number(values.batch);
const peerWorkers = os.availableParallelism();
const workers = values.workers ? Number(values.workers) : defaultNumWorkers();
const precision = resolvePrecision('auto', 'cpu', { imageSize: size });
const root = await makeImagenetLike(path.join(os.tmpdir(), 'torchline-bench-e2e'), files, 8);

async function torchline() {
  const t0 = performance.now();
  const data = new ImageFolder(root, {
    transform: [T.Resize([size, size]), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)],
  });
  const loader = new DataLoader(data, { batchSize: batch, shuffle: true, seed: 0, numWorkers: workers });
  manualSeed(0);
  const model = new ResNet(Number(values.model.replace('resnet', '')), { numClasses: data.classes.length }).train();
  if (precision.channelsLast) model.channelsLast(true);
  const opt = new Adam(model.parameters(), { lr: 0.001 });
  let n = 0;
  for await (const b of loader) {
    const r = await trainStep(model, opt, b, { amp: precision.amp });
    n += r.n;
    b.images.dispose();
    b.labels.dispose();
  }
  return { seconds: (performance.now() - t0) / 1000, images: n };
}

const ours = await torchline();
const peer = JSON.parse(
  execFileSync(
    PYTHON,
    [path.join(here, 'end_to_end_peer.py'), root, values.model, String(batch), String(peerWorkers), String(size)],
    {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: String(getNumThreads()) },
    },
  ),
);
console.log(
  `end-to-end: one epoch of ${files} JPEGs (~500x375), ${values.model} at ${size} px, batch ${batch}, ${getNumThreads()} threads; ` +
    `torchline ${precision.precision}${precision.channelsLast ? ' + channels_last' : ''}, ${workers} decode workers; Python fp32, ${peerWorkers} workers`,
);
console.log(
  `  torchline ${ours.seconds.toFixed(1)} s (${(ours.images / ours.seconds).toFixed(1)} img/s)   Python seed loop ${peer.seconds.toFixed(1)} s (${(peer.images / peer.seconds).toFixed(1)} img/s)   time ratio ${(ours.seconds / peer.seconds).toFixed(3)}`,
);
console.log(
  JSON.stringify({
    bench: 'end-to-end',
    torchline: +ours.seconds.toFixed(2),
    peer: +peer.seconds.toFixed(2),
    unit: 's per epoch',
    ratio: +(ours.seconds / peer.seconds).toFixed(3),
    files,
    model: values.model,
    size,
    precision: precision.precision,
    workers,
    peerWorkers,
    threads: getNumThreads(),
  }),
);
