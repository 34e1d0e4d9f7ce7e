// Data-parallel cost on this machine: all-reduce of a ResNet50-sized gradient
// over Gloo on localhost (torchline beside torch.distributed), and the step
// time of 2 ranks (1 thread each, half the batch each) vs 1 process (2 threads).
import { PYTHON } from '../scripts/peer-python.js';
import { execFileSync, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BYTES = 25_557_032 * 4;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function ranks(cmd, args, world, threads) {
  const port = await freePort();
  const outs = await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise((resolve, reject) => {
          const env = {
            ...process.env,
            RANK: String(rank),
            WORLD_SIZE: String(world),
            LOCAL_RANK: String(rank),
            MASTER_ADDR: '127.0.0.1',
            MASTER_PORT: String(port),
            OMP_NUM_THREADS: String(threads),
            TORCHLINE_NUM_THREADS: String(threads),
          };
          const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          p.stdout.on('data', (d) => (out += d));
          p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${rank} exited with ${code}`))));
        }),
    ),
  );
  return JSON.parse(outs.find((o) => o.trim()).trim());
}

const iters = 5;
const ours = await ranks(
  process.execPath,
  [path.join(here, 'distributed_worker.mjs'), 'allreduce', String(iters)],
  2,
  1,
);
const peer = await ranks(PYTHON, [path.join(here, 'distributed_peer.py'), String(iters)], 2, 1);
const gbps = (s) => +((2 * BYTES) / s / 1e9).toFixed(3); // ring all-reduce moves ~2x the data per rank
console.log(
  `all-reduce of 25.6M float32 (ResNet50 gradient, ${(BYTES / 1e6).toFixed(0)} MB), 2 ranks, Gloo, localhost:`,
);
console.log(
  `  torchline ${(ours.seconds * 1000).toFixed(1)} ms (${gbps(ours.seconds)} GB/s bus bandwidth)   torch.distributed ${(peer.seconds * 1000).toFixed(1)} ms (${gbps(peer.seconds)} GB/s)`,
);

const steps = 3;
const size = 128;
const single = JSON.parse(
  execFileSync(
    process.execPath,
    [path.join(here, 'distributed_worker.mjs'), 'step', String(steps), '16', String(size)],
    { encoding: 'utf8', env: { ...process.env, WORLD_SIZE: '1' } },
  ).trim(),
);
const ddp = await ranks(
  process.execPath,
  [path.join(here, 'distributed_worker.mjs'), 'step', String(steps), '8', String(size)],
  2,
  1,
);
console.log(
  `ResNet50 train step, global batch 16 at ${size} px: 1 process x 2 threads ${single.seconds.toFixed(2)} s, 2 ranks x 1 thread ${ddp.seconds.toFixed(2)} s (overhead ${((ddp.seconds / single.seconds - 1) * 100).toFixed(1)}%)`,
);
console.log(
  JSON.stringify({
    bench: 'distributed',
    torchline: +(ours.seconds * 1000).toFixed(1),
    peer: +(peer.seconds * 1000).toFixed(1),
    unit: 'ms per all-reduce (ResNet50 gradient, 2 ranks)',
    ratio: +(ours.seconds / peer.seconds).toFixed(3),
    busGBps: gbps(ours.seconds),
    stepSeconds1: +single.seconds.toFixed(3),
    stepSeconds2ranks: +ddp.seconds.toFixed(3),
  }),
);
