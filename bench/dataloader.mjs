// DataLoader throughput: torchline's ImageNet train preset (RandomResizedCrop
// 224 + flip + normalise, batch 64) and eval preset (Resize 256 + CenterCrop
// 224) on ImageNet-sized JPEGs (~500x375, cut from Debian's opencv-doc
// photos), beside torchvision's ImageFolder + DataLoader with the same
// workers, plus libjpeg-turbo decode-only img/s as the ceiling.
//   npm run bench -- dataloader [--workers N] [--files N] [--epochs N] [--rounds N]
import { PYTHON } from '../scripts/peer-python.js';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import tl from '../dist/index.js';
import { makeImagenetLike } from './fixtures.mjs';

const require = createRequire(import.meta.url);
const { DataLoader, ImageFolder, transforms: T } = tl;

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const workers = arg('workers', 2);
const nFiles = arg('files', 512);
const epochs = arg('epochs', 3);
const rounds = arg('rounds', 2);
const batchSize = 64;
const PY = PYTHON;

async function torchline(root, transform) {
  const ds = new ImageFolder(root);
  const dl = new DataLoader(ds, { transform, batchSize, shuffle: true, seed: 1, numWorkers: workers });
  const rates = [];
  let cpu = 0,
    total = 0;
  for (let e = 0; e <= epochs; e++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let n = 0;
    for await (const b of dl) {
      n += b.images.shape[0];
      b.images.dispose();
      b.labels.dispose();
    }
    if (e > 0) {
      rates.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
      const c = process.cpuUsage(c0);
      cpu += (c.user + c.system) / 1e6;
      total += n;
    }
  }
  // Best epoch: other work on a shared machine only ever slows an epoch down.
  return { rate: Math.max(...rates), perCpu: total / cpu };
}

const root = path.join(os.tmpdir(), 'torchline-bench-imagenet');
await makeImagenetLike(root, nFiles, 8);
const files = new ImageFolder(root).samples.map((s) => fs.readFileSync(s[0]));
console.log(
  `dataset: ${files.length} JPEGs (~500x375) in ${root}; ${workers} workers, batch ${batchSize}, ${os.cpus().length} CPUs`,
);

const binding = require('../build/Release/torchline.node');
binding.data.decodeBench(files.slice(0, 32), 1, 1); // warm
// Best of three: a burst of a second or two is easily hit by other load.
const bestOf = (f) => Math.max(f(), f(), f());
const decode1 = bestOf(() => binding.data.decodeBench(files, 1, 2));
const decodeN = bestOf(() => binding.data.decodeBench(files, workers, 3));
console.log(
  `libjpeg-turbo decode only: ${decode1.toFixed(0)} img/s on 1 thread, ${decodeN.toFixed(0)} img/s on ${workers}`,
);

// Rounds alternate torchline and torchvision so that load from elsewhere on
// the machine hits both; each side keeps its best epoch.
let tr = { rate: 0, perCpu: 0 },
  ev = { rate: 0, perCpu: 0 },
  peer = null;
const best = (a, b) => ({ rate: Math.max(a.rate, b.rate), perCpu: Math.max(a.perCpu, b.perCpu) });
for (let round = 0; round < rounds; round++) {
  tr = best(tr, await torchline(root, T.imagenetTrain(224)));
  ev = best(ev, await torchline(root, T.imagenetEval(224)));
  const py = spawnSync(
    PY,
    [path.join(import.meta.dirname, 'dataloader_peer.py'), root, String(workers), String(epochs), String(batchSize)],
    {
      encoding: 'utf8',
    },
  );
  if (py.status !== 0) {
    console.error(py.stderr);
    process.exit(1);
  }
  const p = JSON.parse(py.stdout.trim().split('\n').pop());
  peer = peer
    ? Object.fromEntries(
        Object.entries(p).map(([k, v]) => [k, k === 'peakRssMiB' ? Math.max(v, peer[k]) : Math.max(v, peer[k])]),
      )
    : p;
}
const train = tr.rate,
  evalRate = ev.rate;
const rss = Math.round(process.resourceUsage().maxRSS / 1024);
console.log(`torchline   train ${train.toFixed(0)} img/s, eval ${evalRate.toFixed(0)} img/s, peak RSS ${rss} MiB`);
console.log(
  `torchvision train ${peer.train.toFixed(0)} img/s, eval ${peer.eval.toFixed(0)} img/s, peak RSS ~${peer.peakRssMiB} MiB (main + ${workers} workers)`,
);
console.log(`ratio       train ${(train / peer.train).toFixed(2)}x, eval ${(evalRate / peer.eval).toFixed(2)}x`);
console.log(
  `per CPU-second (robust to other load): torchline train ${tr.perCpu.toFixed(0)}, eval ${ev.perCpu.toFixed(0)}; ` +
    `torchvision train ${peer.trainPerCpuSecond.toFixed(0)}, eval ${peer.evalPerCpuSecond.toFixed(0)} img`,
);
console.log(
  JSON.stringify({
    bench: 'dataloader',
    torchline: Math.round(train),
    peer: Math.round(peer.train),
    unit: 'img/s',
    ratio: Number((train / peer.train).toFixed(2)),
    eval: Math.round(evalRate),
    trainPerCpuSecond: Math.round(tr.perCpu),
    peerTrainPerCpuSecond: Math.round(peer.trainPerCpuSecond),
    peerEval: Math.round(peer.eval),
    decodeOnly: Math.round(decodeN),
    workers,
    peakRssMiB: rss,
    peerPeakRssMiB: peer.peakRssMiB,
  }),
);
