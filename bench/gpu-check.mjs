// The device check (scripts/gpu-check.sh runs it): CUDA smoke tests, ResNet50 training throughput beside
// PyTorch eager at the same settings, and the DataLoader feeding the GPU. Without a GPU it runs what it can
// on CPU, says so, and exits 0. Last line: one JSON object with every figure.
//   node bench/gpu-check.mjs [--quick]
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PYTHON } from '../scripts/peer-python.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const tl = require('../dist/index.js');
const {
  Tensor,
  cuda,
  version,
  resnet18,
  resnet50,
  Adam,
  trainStep,
  evalStep,
  manualSeed,
  distributed,
  data,
  transforms: T,
} = tl;

const quick = process.argv.includes('--quick');
const gpu = cuda.isAvailable();
const dev = gpu ? 'cuda' : 'cpu';
const v = version();
const result = {
  bench: 'gpu-check',
  gpu,
  libtorch: v.libtorch,
  cudaCompiled: v.cuda.compiled,
  cuda: cuda.explain(),
  checks: {},
};
const log = (...a) => console.log('gpu-check:', ...a);
log(`LibTorch ${v.libtorch}, CUDA compiled ${v.cuda.compiled}, ${cuda.explain()}`);
if (!gpu) log('no usable GPU here: running the CPU parts only (CUDA-only checks are reported as skipped)');

async function check(name, fn, { needsGpu = false } = {}) {
  if (needsGpu && !gpu) {
    result.checks[name] = 'skipped (no GPU)';
    return;
  }
  const t0 = Date.now();
  try {
    const detail = await fn();
    result.checks[name] = detail === undefined ? 'ok' : { ok: true, ...detail };
    log(`${name}: ok ${detail ? JSON.stringify(detail) : ''} (${Date.now() - t0} ms)`);
  } catch (e) {
    result.checks[name] = `FAILED: ${e?.message ?? e}`;
    log(`${name}: FAILED ${e?.stack ?? e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
function batch(n, size, device = dev) {
  return {
    images: Tensor.randn([n, 3, size, size], { device }),
    labels: Tensor.from(
      new BigInt64Array(n).map((_, i) => BigInt(i % 10)),
      [n],
    ).to(device),
  };
}

manualSeed(0);

await check('tensor round trip (device and back, nonBlocking)', async () => {
  const a = Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  const eye = Tensor.from(new Float32Array([2, 0, 0, 0, 2, 0, 0, 0, 2]), [3, 3]).to(dev);
  const back = a.to(dev).matmul(eye).to('cpu', { nonBlocking: true });
  assert(back.toArray().join() === '2,4,6,8,10,12', `got ${back.toArray()}`);
});

for (const amp of [false, 'bf16', 'fp16']) {
  await check(
    `trainStep ${amp || 'fp32'}`,
    async () => {
      const m = resnet18({ numClasses: 10 }).to(dev).channelsLast();
      const opt = new Adam(m.parameters(), { lr: 1e-3 });
      const b = batch(16, 64);
      let r;
      for (let i = 0; i < 3; i++) r = await trainStep(m, opt, b, { amp });
      assert(Number.isFinite(r.loss) && r.stepped, `loss ${r.loss}, stepped ${r.stepped}`);
      return { loss: +r.loss.toFixed(4) };
    },
    { needsGpu: amp === 'fp16' },
  );
}

await check(
  'GradScaler skips an inf step and backs off',
  async () => {
    const m = resnet18({ numClasses: 10 }).to(dev);
    const opt = new Adam(m.parameters(), { lr: 1e-3 });
    await trainStep(m, opt, batch(8, 32), { amp: 'fp16' });
    const before = opt.handle.scalerState().scale;
    const w0 = m.stateDict().get('fc.weight').to('cpu').toArray();
    const bad = batch(8, 32);
    bad.images = Tensor.full([8, 3, 32, 32], Infinity, { device: dev });
    const r = await trainStep(m, opt, bad, { amp: 'fp16' });
    const after = opt.handle.scalerState().scale;
    const w1 = m.stateDict().get('fc.weight').to('cpu').toArray();
    assert(r.stepped === false, 'the inf step was applied');
    assert(after === before / 2, `scale ${before} -> ${after}`);
    assert(
      w0.every((x, i) => x === w1[i]),
      'weights changed on a skipped step',
    );
    return { scale: [before, after] };
  },
  { needsGpu: true },
);

await check('evalStep', async () => {
  const m = resnet18({ numClasses: 10 }).to(dev).eval();
  const r = await evalStep(m, batch(16, 64), { amp: gpu ? 'bf16' : false });
  assert(r.n === 16 && r.predictions.length === 16, 'bad eval result');
});

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

await check(`1-rank ${gpu ? 'NCCL' : 'Gloo'} group step`, async () => {
  const g = await distributed.initProcessGroup({
    backend: gpu ? 'nccl' : 'gloo',
    rank: 0,
    worldSize: 1,
    masterAddr: '127.0.0.1',
    masterPort: await freePort(),
    timeout: 60_000,
  });
  try {
    const m = await distributed.distributedDataParallel(resnet18({ numClasses: 10 }).to(dev));
    const opt = new Adam(m.parameters(), { lr: 1e-3 });
    const r = await trainStep(m, opt, batch(8, 32));
    const t = Tensor.full([4], 3, { device: dev });
    await g.allReduce(t, 'sum');
    await g.barrier();
    assert(
      Number.isFinite(r.loss) &&
        t
          .to('cpu')
          .toArray()
          .every((x) => x === 3),
      'collective result',
    );
    return { backend: g.backend };
  } finally {
    distributed.destroyProcessGroup(g);
  }
});

await check('checkpoint saved on the device, loaded on CPU', async () => {
  const m = resnet18({ numClasses: 10 }).to(dev);
  const file = path.join(os.tmpdir(), `gpu-check-${process.pid}.pth`);
  tl.save(file, m.stateDict());
  const back = tl.load(file);
  fs.rmSync(file, { force: true });
  const w = m.stateDict().get('layer1.0.conv1.weight').to('cpu').toArray();
  const l = back.get('layer1.0.conv1.weight');
  assert(l.device.type === 'cpu' && l.toArray().every((x, i) => x === w[i]), 'checkpoint differs');
});

// --- throughput -----------------------------------------------------------------------------------------
async function imgPerSec(model, opt, b, amp, steps, warmup) {
  for (let i = 0; i < warmup; i++) await trainStep(model, opt, b, { amp });
  if (gpu) cuda.synchronize();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await trainStep(model, opt, b, { amp });
  if (gpu) cuda.synchronize();
  return (steps * b.images.shape[0]) / ((performance.now() - t0) / 1000);
}

const B = gpu ? 256 : 8;
const S = gpu ? 224 : 64;
const steps = gpu ? (quick ? 10 : 30) : 2;
const throughput = {};
if (gpu) tl.backends.cudnn.setBenchmark(true);
for (const amp of gpu ? ['bf16', 'fp16'] : ['bf16']) {
  await check(`ResNet50 b${B}@${S} ${amp} + channels_last`, async () => {
    manualSeed(0);
    const m = resnet50({ numClasses: 1000 }).to(dev).channelsLast();
    const opt = new Adam(m.parameters(), { lr: 1e-4 });
    const b = batch(B, S);
    const ips = await imgPerSec(m, opt, b, amp, steps, gpu ? 8 : 1);
    throughput[amp] = Math.round(ips * 10) / 10;
    m.dispose?.();
    return { imgPerSec: throughput[amp] };
  });
}
result.torchline = throughput;

await check('PyTorch eager peer (same settings)', async () => {
  const out = execFileSync(
    PYTHON,
    [path.join(here, 'gpu_check_peer.py'), String(B), String(S), String(steps), gpu ? 'bf16,fp16' : 'bf16'],
    {
      encoding: 'utf8',
      timeout: 300_000,
      maxBuffer: 1 << 24,
    },
  );
  const peer = JSON.parse(out.trim().split('\n').pop());
  result.peer = peer;
  return peer;
});
if (result.peer) {
  result.ratio = Object.fromEntries(
    Object.keys(throughput).map((k) => [k, +(throughput[k] / result.peer[k]).toFixed(3)]),
  );
}

// --- the DataLoader feeding the device ------------------------------------------------------------------
await check('DataLoader -> device (uint8 batches normalised on the device, pinned buffers)', async () => {
  const sharp = require('sharp');
  const root = path.join(os.tmpdir(), 'gpu-check-jpegs');
  const photosDir = process.env.TORCHLINE_PHOTOS || '/usr/share/doc/opencv-doc/examples/data';
  const photos = fs.existsSync(photosDir)
    ? fs
        .readdirSync(photosDir)
        .filter((f) => f.endsWith('.jpg'))
        .map((f) => path.join(photosDir, f))
    : [];
  const n = gpu ? (quick ? 2560 : 5120) : 64;
  if (!fs.existsSync(path.join(root, 'done'))) {
    fs.rmSync(root, { recursive: true, force: true });
    // ImageNet-like files: ~500x375 JPEGs (quality 90) cut from real photos, 10 classes.
    const jobs = [];
    for (let i = 0; i < n; i++) {
      const dir = path.join(root, `c${i % 10}`);
      fs.mkdirSync(dir, { recursive: true });
      const src = photos.length
        ? sharp(photos[i % photos.length]).resize(500 + (i % 7) * 10, 375, { fit: 'cover' })
        : sharp({ create: { width: 500, height: 375, channels: 3, background: { r: i % 255, g: 80, b: 160 } } });
      jobs.push(
        src
          .flop(i % 2 === 1)
          .jpeg({ quality: 90 })
          .toFile(path.join(dir, `${i}.jpg`)),
      );
      if (jobs.length >= 64) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
    fs.writeFileSync(path.join(root, 'done'), '');
  }
  const workers = Math.max(1, os.availableParallelism() - 2);
  const loader = new tl.DataLoader(new tl.ImageFolder(root, { transform: T.imagenetTrain(S) }), {
    batchSize: B,
    shuffle: true,
    numWorkers: workers,
    uint8: true,
    pinMemory: gpu,
    dropLast: true,
    prefetch: 4,
  });
  // Decode alone first (how fast the loader can go), then training fed by it.
  let t0 = performance.now();
  let seen = 0;
  for await (const b of loader) {
    seen += b.images.shape[0];
    b.images.dispose();
  }
  const loaderOnly = seen / ((performance.now() - t0) / 1000);
  manualSeed(0);
  const m = resnet50({ numClasses: 10 }).to(dev).channelsLast();
  const opt = new Adam(m.parameters(), { lr: 1e-4 });
  const amp = gpu ? 'bf16' : 'bf16';
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  seen = 0;
  let first = true;
  for await (const b of loader) {
    const images = data.normalize(b.images, mean, std, dev);
    if (first) {
      await trainStep(m, opt, { images, labels: b.labels.to(dev) }, { amp }); // warm-up (cuDNN plans)
      first = false;
      t0 = performance.now();
      continue;
    }
    await trainStep(m, opt, { images, labels: b.labels.to(dev) }, { amp });
    seen += b.images.shape[0];
    images.dispose();
    b.images.dispose();
  }
  if (gpu) cuda.synchronize();
  const fed = seen / ((performance.now() - t0) / 1000);
  const synthetic = throughput[amp];
  result.dataloader = {
    loaderOnly: Math.round(loaderOnly),
    trainFed: Math.round(fed),
    workers,
    gpuBusy: synthetic ? +(fed / synthetic).toFixed(3) : null,
  };
  return result.dataloader;
});

const failed = Object.entries(result.checks).filter(([, s]) => typeof s === 'string' && s.startsWith('FAILED'));
result.failed = failed.map(([k]) => k);
console.log(JSON.stringify(result));
process.exit(failed.length ? 1 : 0);
