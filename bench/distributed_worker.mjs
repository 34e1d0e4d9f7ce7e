// One rank of bench/distributed.mjs. argv: mode (allreduce|step) iters batch size. TL_SHM=0: Gloo only.
import { Adam, Tensor, distributed, resnet50, trainStep, manualSeed } from '../dist/index.js';

const [mode, itersArg, batchArg, sizeArg] = process.argv.slice(2);
const iters = Number(itersArg);
const world = Number(process.env.WORLD_SIZE ?? 1);
const group =
  world > 1 ? await distributed.initProcessGroup({ backend: 'gloo', sharedMemory: process.env.TL_SHM !== '0' }) : null;
const rank = group?.rank ?? 0;
const out = { sharedMemory: group?.sharedMemory ?? false };
if (mode === 'allreduce') {
  const t = Tensor.ones([25_557_032]); // ResNet50's gradient, float32
  await group.allReduce(t);
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await group.allReduce(t);
  out.seconds = (performance.now() - t0) / 1000 / iters;
} else {
  manualSeed(0);
  const model = resnet50().train();
  if (group) await distributed.distributedDataParallel(model, { group });
  const opt = new Adam(model.parameters());
  const batch = Number(batchArg);
  const size = Number(sizeArg);
  const images = Tensor.randn([batch, 3, size, size]);
  const labels = Tensor.from(
    BigInt64Array.from({ length: batch }, (_, i) => BigInt(i)),
    [batch],
  );
  // Two warm-up steps: the Reducer regroups its buckets after the first, as DDP.
  await trainStep(model, opt, { images, labels });
  await trainStep(model, opt, { images, labels });
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await trainStep(model, opt, { images, labels });
  out.seconds = (performance.now() - t0) / 1000 / iters;
  if (group) out.stats = await distributed.dataParallelStats(model);
}
if (rank === 0) console.log(JSON.stringify(out));
if (group) {
  await group.barrier();
  group.destroy();
}
