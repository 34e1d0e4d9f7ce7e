// Training-step throughput of ResNet50 and ResNet18 (Adam, cross-entropy) in torchline beside the same model
// in Python PyTorch eager, on the same LibTorch and thread count, at equal settings both ways:
//   fp32 NCHW (the setting of the pipeline torchline replaces) and bf16 autocast + channels_last,
// plus each side's default (torchline: precision 'auto', fused Adam; PyTorch: fp32, Adam's default loop) and
// PyTorch with fused=True. Also minor page faults per step after warm-up, and peak RSS over 50 steps.
// Usage: npm run bench -- train-step [--steps N] [--warmup N] [--size PX] [--rss-steps N]
import { PYTHON } from '../scripts/peer-python.js';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import {
  Adam,
  Tensor,
  getNumThreads,
  resnet18,
  resnet50,
  trainStep,
  manualSeed,
  version,
  resolvePrecision,
  memoryStats,
} from '../dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    size: { type: 'string', default: '224' },
    'rss-steps': { type: 'string', default: '50' },
  },
});
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const size = Number(values.size);
const threads = getNumThreads();
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const auto = resolvePrecision('auto', 'cpu');

async function torchline(depth, batch, mode, n = steps) {
  manualSeed(0);
  const model = (depth === 50 ? resnet50 : resnet18)().train();
  if (mode === 'bf16') model.channelsLast(true);
  const opt = new Adam(model.parameters(), { lr: 1e-3 });
  const images = Tensor.randn([batch, 3, size, size]);
  const labels = Tensor.from(
    BigInt64Array.from({ length: batch }, (_, i) => BigInt((i * 37) % 1000)),
    [batch],
  );
  const times = [];
  let faults = 0;
  let peakRss = 0;
  for (let i = 0; i < warmup + n; i++) {
    const f0 = process.resourceUsage().minorPageFault;
    const t0 = performance.now();
    await trainStep(model, opt, { images, labels }, { amp: mode === 'bf16' ? 'bf16' : false });
    if (i >= warmup) {
      times.push((performance.now() - t0) / 1000);
      faults += process.resourceUsage().minorPageFault - f0;
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
  }
  model.dispose?.();
  return { times, faultsPerStep: faults / n, peakRss };
}

function peer(depth, batch, mode, fused) {
  const out = execFileSync(
    PYTHON,
    [
      path.join(here, 'train_step_peer.py'),
      depth,
      batch,
      size,
      warmup,
      steps,
      threads,
      mode,
      fused ? 'fused' : 'loop',
    ].map(String),
    {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: String(threads) },
    },
  );
  return JSON.parse(out);
}

const v = version();
const ips = (batch, times) => +(batch / median(times)).toFixed(2);
console.log(
  `train-step: LibTorch ${v.libtorch}, ${threads} threads, ${size}px, ${warmup} warm-up + ${steps} timed steps (median); torchline default precision: ${auto.precision}${auto.channelsLast ? ' + channels_last' : ''}`,
);
const results = {};
let peerTorch = '';
for (const [depth, batch] of [
  [50, 16],
  [18, 32],
]) {
  const r = {};
  for (const mode of ['fp32', 'bf16']) {
    // Alternate the two sides so neither gets a warmer machine.
    const ours = await torchline(depth, batch, mode);
    const theirs = peer(depth, batch, mode, false);
    const theirsFused = peer(depth, batch, mode, true);
    peerTorch = theirs.torch;
    r[mode] = {
      torchline: ips(batch, ours.times),
      peer: ips(batch, theirs.times),
      peerFused: ips(batch, theirsFused.times),
      faultsPerStep: { torchline: Math.round(ours.faultsPerStep), peer: Math.round(theirs.faultsPerStep) },
    };
    console.log(
      `resnet${depth} b${batch} ${mode === 'bf16' ? 'bf16 + channels_last' : 'fp32 NCHW'}: torchline ${r[mode].torchline} img/s   PyTorch ${r[mode].peer} (fused=True ${r[mode].peerFused})   page faults/step ${r[mode].faultsPerStep.torchline} vs ${r[mode].faultsPerStep.peer}`,
    );
  }
  results[`resnet${depth}`] = r;
}
const d = auto.precision === 'bf16' ? 'bf16' : 'fp32';
const main = results.resnet50;
const rss = await torchline(50, 16, d, Number(values['rss-steps']));
const mem = memoryStats();
console.log(
  `resnet50 ${values['rss-steps']} steps at the default precision: peak RSS ${(rss.peakRss / 2 ** 20).toFixed(0)} MiB; CPU cache held ${(mem.peakHeldBytes / 2 ** 20).toFixed(0)} MiB peak, ${mem.hits} hits / ${mem.misses} misses`,
);
const out = {
  bench: 'train-step',
  torchline: main[d].torchline,
  peer: main[d].peer,
  peerFused: main[d].peerFused,
  unit: 'img/s',
  ratio: +(main[d].torchline / main[d].peer).toFixed(3),
  precision: `${auto.precision}${auto.channelsLast ? '+channels_last' : ''}`,
  peerFp32: main.fp32.peer,
  speedupVsSeed: +(main[d].torchline / main.fp32.peer).toFixed(3),
  fp32: {
    torchline: main.fp32.torchline,
    peer: main.fp32.peer,
    ratio: +(main.fp32.torchline / main.fp32.peer).toFixed(3),
  },
  resnet18: {
    torchline: results.resnet18[d].torchline,
    peer: results.resnet18[d].peer,
    ratio: +(results.resnet18[d].torchline / results.resnet18[d].peer).toFixed(3),
  },
  pageFaultsPerStep: main[d].faultsPerStep,
  peakRssMiB: Math.round(rss.peakRss / 2 ** 20),
  peerTorch,
  threads,
  size,
};
console.log(JSON.stringify(out));
