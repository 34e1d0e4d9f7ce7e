// Data-parallel cost on this machine: all-reduce of a ResNet50-sized gradient
// between 2 ranks of this host (torchline: shared memory, and its Gloo path
// for reference, beside torch.distributed's Gloo), and the step overhead of 2
// ranks (1 thread each, half the batch each) over 1 process (2 threads, the
// whole batch), torchline's Reducer beside torch's DDP.
// Each figure is the best of several runs (AR_ROUNDS all-reduce runs, ROUNDS step runs), the two sides alternating.
import { PYTHON } from '../scripts/peer-python.js';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BYTES = 25_557_032 * 4;
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const STEPS = Number(process.env.STEPS ?? 3);
// An all-reduce run is cheap (one process start and 16 collectives): take more of them, the figure varies ~15%
// from run to run on this VM.
const AR_ROUNDS = Number(process.env.AR_ROUNDS ?? 5);
const SIZE = 128;
const BATCH = 16;
const WORKER = path.join(here, 'distributed_worker.mjs');
const PEER = path.join(here, 'distributed_peer.py');

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Runs `world` processes of cmd (1: a plain process with 2 threads); returns rank 0's JSON line.
async function ranks(cmd, args, world, threads = world === 1 ? 2 : 1, extra = {}) {
  const port = await freePort();
  const outs = await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise((resolve, reject) => {
          const env = {
            ...process.env,
            OMP_NUM_THREADS: String(threads),
            TORCHLINE_NUM_THREADS: String(threads),
            WORLD_SIZE: String(world),
            ...extra,
          };
          if (world > 1)
            Object.assign(env, {
              RANK: String(rank),
              LOCAL_RANK: String(rank),
              MASTER_ADDR: '127.0.0.1',
              MASTER_PORT: String(port),
            });
          const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          p.stdout.on('data', (d) => (out += d));
          p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${rank} exited with ${code}`))));
        }),
    ),
  );
  return JSON.parse(outs.find((o) => o.trim()).trim());
}

const best = (runs) => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
const node = (args, world, threads) => ranks(process.execPath, [WORKER, ...args], world, threads);
const nodeGloo = (args, world) => ranks(process.execPath, [WORKER, ...args], world, undefined, { TL_SHM: '0' });
const py = (args, world) => ranks(PYTHON, [PEER, ...args], world);

// Other jobs on this shared machine skew the step figures (a 2-thread process suffers most): say how busy it was.
const load0 = os.loadavg()[0];
const ar = { ours: [], gloo: [], peer: [] };
for (let r = 0; r < AR_ROUNDS; r++) {
  ar.ours.push(await node(['allreduce', '16'], 2));
  ar.gloo.push(await nodeGloo(['allreduce', '16'], 2));
  ar.peer.push(await py(['allreduce', '16'], 2));
}
const ours = best(ar.ours);
const oursGloo = best(ar.gloo);
const peer = best(ar.peer);
if (!ours.sharedMemory) throw new Error('the ranks did not get shared memory');
const gbps = (s) => +((2 * BYTES) / s / 1e9).toFixed(3); // ring all-reduce moves ~2x the data per rank
const ms = (r) => `${(r.seconds * 1000).toFixed(1)} ms (${gbps(r.seconds)} GB/s bus bandwidth)`;
console.log(
  `all-reduce of 25.6M float32 (ResNet50 gradient, ${(BYTES / 1e6).toFixed(0)} MB), 2 ranks of this host, best of ${AR_ROUNDS}:`,
);
console.log(
  `  torchline (shared memory) ${ms(ours)}   torchline (Gloo) ${ms(oursGloo)}   torch.distributed (Gloo) ${ms(peer)}`,
);

const stepArgs = (batch) => ['step', String(STEPS), String(batch), String(SIZE)];
const st = { single: [], ddp: [], ddpGloo: [], peerSingle: [], peerDdp: [] };
for (let r = 0; r < ROUNDS; r++) {
  st.single.push(await node(stepArgs(BATCH), 1));
  st.ddp.push(await node(stepArgs(BATCH / 2), 2));
  st.ddpGloo.push(await nodeGloo(stepArgs(BATCH / 2), 2));
  st.peerSingle.push(await py(stepArgs(BATCH), 1));
  st.peerDdp.push(await py(stepArgs(BATCH / 2), 2));
}
// Context: 1 process on 1 thread. When another job holds a core, a 2-thread process loses far more than
// two 1-thread ranks (every OpenMP barrier waits for the descheduled thread).
const oneThread = await node(stepArgs(BATCH), 1, 1);
const single = best(st.single);
const ddp = best(st.ddp);
const ddpGloo = best(st.ddpGloo);
const peerSingle = best(st.peerSingle);
const peerDdp = best(st.peerDdp);
const overhead = ddp.seconds / single.seconds - 1;
const peerOverhead = peerDdp.seconds / peerSingle.seconds - 1;
const pct = (x) => `${(x * 100).toFixed(1)}%`;
console.log(
  `ResNet50 train step, global batch ${BATCH} at ${SIZE} px, ${STEPS} steps, best of ${ROUNDS}: 1 process x 2 threads ${single.seconds.toFixed(3)} s, 2 ranks x 1 thread ${ddp.seconds.toFixed(3)} s (stepOverhead ${pct(overhead)}; over Gloo ${ddpGloo.seconds.toFixed(3)} s, ${pct(ddpGloo.seconds / single.seconds - 1)}), 1 process x 1 thread ${oneThread.seconds.toFixed(3)} s; torch DDP ${peerSingle.seconds.toFixed(3)} s vs ${peerDdp.seconds.toFixed(3)} s (${pct(peerOverhead)})`,
);
const s = ddp.stats;
console.log(
  `  Reducer: ${s.bucketBytes.length} buckets (${s.bucketBytes.map((b) => (b / 2 ** 20).toFixed(1)).join(', ')} MiB); step ${s.iteration}: backward compute ${(s.backwardComputeNs / 1e6).toFixed(0)} ms, first all-reduce at ${(s.backwardCommStartNs / 1e6).toFixed(0)} ms, all-reduce busy ${(s.backwardCommNs / 1e6).toFixed(0)} ms, overlapping compute ${(s.backwardOverlapNs / 1e6).toFixed(0)} ms, left after compute ${((s.backwardCommEndNs - s.backwardComputeEndNs) / 1e6).toFixed(0)} ms`,
);
console.log(
  JSON.stringify({
    bench: 'distributed',
    torchline: +(ours.seconds * 1000).toFixed(1),
    peer: +(peer.seconds * 1000).toFixed(1),
    unit: 'ms per all-reduce (ResNet50 gradient, 2 ranks)',
    ratio: +(ours.seconds / peer.seconds).toFixed(3),
    busGBps: gbps(ours.seconds),
    glooMs: +(oursGloo.seconds * 1000).toFixed(1),
    stepSeconds1: +single.seconds.toFixed(3),
    stepSeconds2ranks: +ddp.seconds.toFixed(3),
    stepSeconds1thread: +oneThread.seconds.toFixed(3),
    stepOverhead: +overhead.toFixed(3),
    stepSeconds2ranksGloo: +ddpGloo.seconds.toFixed(3),
    peerStepSeconds1: +peerSingle.seconds.toFixed(3),
    peerStepSeconds2ranks: +peerDdp.seconds.toFixed(3),
    peerStepOverhead: +peerOverhead.toFixed(3),
    buckets: s.bucketBytes.length,
    overlapMs: +(s.backwardOverlapNs / 1e6).toFixed(1),
    // All-reduce time left after backward's compute: what overlap did not hide (robust to other load).
    exposedCommMs: +((s.backwardCommEndNs - s.backwardComputeEndNs) / 1e6).toFixed(1),
    loadAvg: [+load0.toFixed(2), +os.loadavg()[0].toFixed(2)],
  }),
);
