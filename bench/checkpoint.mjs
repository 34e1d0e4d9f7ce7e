// Save and load of a full ResNet50 training checkpoint (weights + buffers +
// Adam's two moments per parameter + step counts + param_groups), torchline
// beside Python's torch.save / torch.load of the very same state, same disk.
//
// usage: node bench/checkpoint.mjs [repeats=5]
import { PYTHON } from '../scripts/peer-python.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Tensor, checkpoint } = require(path.join(root, 'dist/index.js'));

const repeats = Number(process.argv[2] ?? 5);
const PY = PYTHON;
// Same disk for both: one folder, files overwritten in place.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchline-bench-ckpt-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function py(code) {
  const r = spawnSync(PY, ['-c', code], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.trim().split('\n').pop();
}

// 1. torchvision's resnet50 state dict, written by torch.save.
py(`
import torch, torchvision
torch.manual_seed(0)
torch.save(torchvision.models.resnet50().state_dict(), ${JSON.stringify(path.join(dir, 'resnet50.pth'))})
`);

// 2. The training state, built in torchline from those tensors.
const sd = checkpoint.load(path.join(dir, 'resnet50.pth'));
const params = [...sd.keys()].filter((k) => !/running_|num_batches_tracked/.test(k));
const state = new Map();
params.forEach((k, i) => {
  const shape = sd.get(k).shape;
  state.set(i, {
    step: Tensor.from(new Float32Array([1000]), []),
    exp_avg: Tensor.randn(shape),
    exp_avg_sq: Tensor.randn(shape),
  });
});
const value = {
  epoch: 10,
  step: 12345,
  model: sd,
  optimizer: {
    state,
    param_groups: [
      {
        lr: 0.001,
        betas: Object.freeze([0.9, 0.999]),
        eps: 1e-8,
        weight_decay: 0,
        amsgrad: false,
        params: params.map((_, i) => i),
      },
    ],
  },
};
const file = path.join(dir, 'train.pth');
checkpoint.save(file, value);
const bytes = fs.statSync(file).size;
const mb = bytes / 2 ** 20;

// 3. torchline: save (durable = fsync, as shipped; and without fsync) and load.
function time(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
const tl = { save: [], saveNoSync: [], saveAsyncBlocked: [], saveAsync: [], load: [], loadNoCrc: [], loadAsync: [] };
for (let i = 0; i < repeats; i++) {
  tl.saveNoSync.push(time(() => checkpoint.save(file, value, { durable: false })));
  tl.save.push(time(() => checkpoint.save(file, value)));
  // saveAsync: how long the JS thread is held (the snapshot), and until the file is durable
  const t0 = process.hrtime.bigint();
  const p = checkpoint.saveAsync(file, value);
  tl.saveAsyncBlocked.push(Number(process.hrtime.bigint() - t0) / 1e6);
  await p;
  tl.saveAsync.push(Number(process.hrtime.bigint() - t0) / 1e6);
  globalThis.gc?.();
}
// Loads: each in a fresh process, as a resumed run does (page cache warm,
// allocator cold); a loop in one process would measure the allocator's reuse.
const nodeLoad = (how) =>
  JSON.parse(
    spawnSync(
      process.execPath,
      [
        '-e',
        `
      const { checkpoint } = require(${JSON.stringify(path.join(root, 'dist/index.js'))});
      (async () => {
        const t0 = process.hrtime.bigint();
        const v = ${how};
        console.log(Number(process.hrtime.bigint() - t0) / 1e6);
      })();`,
      ],
      { encoding: 'utf8' },
    ).stdout,
  );
for (let i = 0; i < repeats; i++) {
  tl.load.push(nodeLoad(`checkpoint.load(${JSON.stringify(file)})`));
  tl.loadAsync.push(nodeLoad(`await checkpoint.loadAsync(${JSON.stringify(file)})`));
  tl.loadNoCrc.push(nodeLoad(`checkpoint.load(${JSON.stringify(file)}, { verifyCrc: false })`));
}

// 4. Python: the same state (loaded from torchline's file), torch.save / torch.load on the same disk.
const peer = JSON.parse(
  py(`
import json, os, time, torch
torch.set_num_threads(${os.cpus().length})
f = ${JSON.stringify(file)}
out = ${JSON.stringify(path.join(dir, 'train-py.pth'))}
state = torch.load(f)
r = {"save": [], "saveSync": [], "load": []}
for _ in range(${repeats}):
    t0 = time.perf_counter(); torch.save(state, out); r["save"].append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        torch.save(state, fh); fh.flush(); os.fsync(fh.fileno())
    r["saveSync"].append((time.perf_counter() - t0) * 1e3)
print(json.dumps(r))
`),
);

for (let i = 0; i < repeats; i++)
  peer.load.push(
    Number(
      py(`
import time, torch
t0 = time.perf_counter(); s = torch.load(${JSON.stringify(file)}); print((time.perf_counter() - t0) * 1e3)
`),
    ),
  );

const row = (name, a, b) =>
  console.log(
    `${name.padEnd(34)} torchline ${a.toFixed(0).padStart(6)} ms   python ${b.toFixed(0).padStart(6)} ms   (python/torchline ${(b / a).toFixed(2)})`,
  );
console.log(
  `ResNet50 training checkpoint: ${mb.toFixed(1)} MiB, ${sd.size} model tensors + ${params.length}x2 Adam moments; median of ${repeats}`,
);
row('save, no fsync (torch.save default)', median(tl.saveNoSync), median(peer.save));
row('save, fsync (torchline default)', median(tl.save), median(peer.saveSync));
row('saveAsync, fsync: until durable', median(tl.saveAsync), median(peer.saveSync));
console.log(
  `saveAsync holds the JS thread ${median(tl.saveAsyncBlocked).toFixed(0)} ms (the pickle; tensors are copied on the step executor)`,
);
row('load, CRC-32 checked (default)', median(tl.load), median(peer.load));
row('loadAsync, CRC-32 checked', median(tl.loadAsync), median(peer.load));
row('load, no CRC check (as torch.load)', median(tl.loadNoCrc), median(peer.load));
console.log('(loads: one per fresh process, page cache warm; torch.load never checks CRC-32s)');

const tlRound = median(tl.save) + median(tl.loadAsync);
const pyRound = median(peer.saveSync) + median(peer.load);
fs.rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    bench: 'checkpoint',
    torchline: Number(((2 * mb) / (tlRound / 1e3)).toFixed(1)),
    peer: Number(((2 * mb) / (pyRound / 1e3)).toFixed(1)),
    unit: 'MiB/s (durable save + CRC-checked loadAsync)',
    ratio: Number((pyRound / tlRound).toFixed(2)),
    mib: Number(mb.toFixed(1)),
    saveMs: { torchline: median(tl.save), python: median(peer.saveSync) },
    saveAsyncMs: { blocked: median(tl.saveAsyncBlocked), total: median(tl.saveAsync) },
    saveNoFsyncMs: { torchline: median(tl.saveNoSync), python: median(peer.save) },
    loadMs: {
      torchline: median(tl.load),
      torchlineAsync: median(tl.loadAsync),
      torchlineNoCrc: median(tl.loadNoCrc),
      python: median(peer.load),
    },
  }),
);
