// Training-step throughput of ResNet50 and ResNet18 (Adam, cross-entropy) in
// torchline beside the same model in Python PyTorch, on the same LibTorch and
// the same thread count. Usage: npm run bench -- train-step [--steps N] [--size PX]
import { PYTHON } from '../scripts/peer-python.js';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Adam, Tensor, getNumThreads, resnet18, resnet50, trainStep, manualSeed, version } from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: { steps: { type: 'string', default: '5' }, warmup: { type: 'string', default: '2' }, size: { type: 'string', default: '224' } },
});
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const size = Number(values.size);
const threads = getNumThreads();
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function torchline(depth, batch) {
  manualSeed(0);
  const model = (depth === 50 ? resnet50 : resnet18)().train();
  const opt = new Adam(model.parameters(), { lr: 1e-3 });
  const images = Tensor.randn([batch, 3, size, size]);
  const labels = Tensor.from(BigInt64Array.from({ length: batch }, (_, i) => BigInt((i * 37) % 1000)), [batch]);
  const times = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    await trainStep(model, opt, { images, labels });
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  return times;
}

function peer(depth, batch) {
  const out = execFileSync(PYTHON, [path.join(here, 'train_step_peer.py'), depth, batch, size, warmup, steps, threads].map(String), {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  return JSON.parse(out).times;
}

const v = version();
console.log(`train-step: LibTorch ${v.libtorch}, ${threads} threads, BLAS ${v.blas.loaded}, ${size}px, ${warmup} warm-up + ${steps} timed steps (median)`);
const results = {};
for (const [depth, batch] of [[50, 16], [18, 32]]) {
  // Alternate the two sides so neither gets a warmer machine.
  const ours = median(await torchline(depth, batch));
  const theirs = median(peer(depth, batch));
  const r = { torchline: +(batch / ours).toFixed(2), peer: +(batch / theirs).toFixed(2), stepTimeRatio: +(ours / theirs).toFixed(3), batch };
  results[`resnet${depth}`] = r;
  console.log(`resnet${depth} batch ${batch}: torchline ${r.torchline} img/s (${ours.toFixed(3)} s/step)   PyTorch ${r.peer} img/s (${theirs.toFixed(3)} s/step)   step-time ratio ${r.stepTimeRatio}`);
}
const main = results.resnet50;
console.log(JSON.stringify({ bench: 'train-step', torchline: main.torchline, peer: main.peer, unit: 'img/s', ratio: +(main.torchline / main.peer).toFixed(3), resnet18: results.resnet18, threads, size }));
