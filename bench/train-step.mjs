// Training-step throughput of ResNet50 and ResNet18 (Adam, cross-entropy) in torchline beside the same model
// in Python PyTorch eager, on the same LibTorch and thread count, at equal settings both ways:
//   fp32 NCHW (the setting of the pipeline torchline replaces) and bf16 autocast + channels_last,
// plus each side's default (torchline: precision 'auto', fused Adam; PyTorch: fp32, Adam's default loop) and
// PyTorch with fused=True, and at bf16 torchline with its fused BatchNorm kernels off. Also minor page faults
// per step in the last round, and peak RSS over 50 steps.
// Usage: npm run bench -- train-step [--rounds R] [--steps N] [--warmup N] [--size PX] [--rss-steps N]
import { PYTHON } from '../scripts/peer-python.js';
import { spawn } from 'node:child_process';
import * as readline from 'node:readline';
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
import { binding } from '../dist/native.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    steps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    size: { type: 'string', default: '224' },
    'rss-steps': { type: 'string', default: '50' },
  },
});
const rounds = Number(values.rounds);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const size = Number(values.size);
const threads = getNumThreads();
const ips = (batch, times) => +(batch / median(times)).toFixed(2);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const auto = resolvePrecision('auto', 'cpu', { imageSize: size });

// A torchline model and optimizer, warmed up once, then timed in rounds. `atenNorm`: the same with the fused
// BatchNorm kernels switched off (ATen's batch_norm, add_ and relu_), to show what they are worth.
async function torchlineSide(depth, batch, mode, atenNorm = false) {
  manualSeed(0);
  const model = (depth === 50 ? resnet50 : resnet18)().train();
  if (mode === 'bf16') model.channelsLast(true);
  const opt = new Adam(model.parameters(), { lr: 1e-3 });
  const images = Tensor.randn([batch, 3, size, size]);
  const labels = Tensor.from(
    BigInt64Array.from({ length: batch }, (_, i) => BigInt((i * 37) % 1000)),
    [batch],
  );
  const amp = mode === 'bf16' ? 'bf16' : false;
  let peakRss = 0;
  const run = async (n) => {
    const times = [];
    let faults = 0;
    binding.setFusedNorm(!atenNorm);
    for (let i = 0; i < n; i++) {
      const f0 = process.resourceUsage().minorPageFault;
      const t0 = performance.now();
      await trainStep(model, opt, { images, labels }, { amp });
      times.push((performance.now() - t0) / 1000);
      faults += process.resourceUsage().minorPageFault - f0;
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }
    binding.setFusedNorm(true);
    return { times, faults };
  };
  await run(warmup);
  peakRss = 0;
  return {
    run,
    peakRss: () => peakRss,
    close() {
      model.dispose?.();
      images.dispose();
      labels.dispose();
    },
  };
}

// The Python peer as a live process (bench/train_step_peer.py): warmed up once, then asked for N steps a round.
async function peerSide(depth, batch, mode, fused) {
  const child = spawn(
    PYTHON,
    [path.join(here, 'train_step_peer.py'), depth, batch, size, warmup, threads, mode, fused ? 'fused' : 'loop'].map(
      String,
    ),
    { env: { ...process.env, OMP_NUM_THREADS: String(threads) }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`train-step peer (resnet${depth} ${mode} ${fused ? 'fused' : 'loop'}) exited`);
    return value;
  };
  if ((await next()) !== 'ready') throw new Error('train-step peer did not start');
  let torchVersion = '';
  return {
    async run(n) {
      child.stdin.write(`run ${n}\n`);
      const r = JSON.parse(await next());
      torchVersion = r.torch;
      return r;
    },
    torch: () => torchVersion,
    close() {
      child.stdin.end();
    },
  };
}

// Steps of each side in turns (torchline, PyTorch, PyTorch fused[, torchline on ATen's BatchNorm]; again), a
// few steps at a time, so a slow stretch of this shared machine lands on every side alike; the figure of each
// side is the median over all its timed steps.
async function measure(depth, batch, mode) {
  const sides = [
    await torchlineSide(depth, batch, mode),
    await peerSide(depth, batch, mode, false),
    await peerSide(depth, batch, mode, true),
  ];
  // Channels-last is where the fused kernels apply.
  if (mode === 'bf16') sides.push(await torchlineSide(depth, batch, mode, true));
  const all = sides.map(() => ({ times: [], faults: 0 }));
  for (let r = 0; r < rounds; r++) {
    for (const [i, side] of sides.entries()) {
      const { times, faults } = await side.run(steps);
      all[i].times.push(...times);
      all[i].faults = faults; // the last round's: page faults in the steady state
    }
  }
  for (const side of sides) side.close();
  return {
    torchline: ips(batch, all[0].times),
    peer: ips(batch, all[1].times),
    peerFused: ips(batch, all[2].times),
    atenNorm: sides.length > 3 ? ips(batch, all[3].times) : undefined,
    faultsPerStep: { torchline: Math.round(all[0].faults / steps), peer: Math.round(all[1].faults / steps) },
    torch: sides[1].torch(),
  };
}

const v = version();
console.log(
  `train-step: LibTorch ${v.libtorch}, ${threads} threads, ${size}px, ${warmup} warm-up + ${rounds} rounds of ${steps} timed steps per side, taken in turns (median); torchline default precision: ${auto.precision}${auto.channelsLast ? ' + channels_last' : ''}`,
);
const results = {};
let peerTorch = '';
for (const [depth, batch] of [
  [50, 16],
  [18, 32],
]) {
  const r = {};
  for (const mode of ['fp32', 'bf16']) {
    const { torch, ...m } = await measure(depth, batch, mode);
    peerTorch = torch;
    r[mode] = m;
    console.log(
      `resnet${depth} b${batch} ${mode === 'bf16' ? 'bf16 + channels_last' : 'fp32 NCHW'}: torchline ${r[mode].torchline} img/s${r[mode].atenNorm ? ` (${r[mode].atenNorm} on ATen's BatchNorm + add + ReLU)` : ''}   PyTorch ${r[mode].peer} (fused=True ${r[mode].peerFused})   page faults/step ${r[mode].faultsPerStep.torchline} vs ${r[mode].faultsPerStep.peer}`,
    );
  }
  results[`resnet${depth}`] = r;
}
const d = auto.precision === 'bf16' ? 'bf16' : 'fp32';
const main = results.resnet50;
const rssSide = await torchlineSide(50, 16, d);
await rssSide.run(Number(values['rss-steps']));
const rss = { peakRss: rssSide.peakRss() };
rssSide.close();
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
  // torchline with its fused BatchNorm kernels off, same run (bf16 + channels_last only).
  atenNorm: { resnet50: results.resnet50.bf16.atenNorm, resnet18: results.resnet18.bf16.atenNorm },
  pageFaultsPerStep: main[d].faultsPerStep,
  peakRssMiB: Math.round(rss.peakRss / 2 ** 20),
  peerTorch,
  threads,
  size,
};
console.log(JSON.stringify(out));
