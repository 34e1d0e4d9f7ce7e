// One rank of test/distributed's overlap check: a few ResNet18 train steps
// data parallel, then DDP's own statistics of the last sampled step as JSON.
// argv: steps batch size
const path = require('node:path');
const tl = require(path.resolve(__dirname, '../../dist'));

const [steps, batch, size] = process.argv.slice(2).map(Number);

(async () => {
  const group = await tl.distributed.initProcessGroup({ backend: 'gloo', timeout: 60000 });
  tl.manualSeed(7);
  const model = tl.resnet18({ numClasses: 10 }).train();
  await tl.distributed.distributedDataParallel(model, { group });
  const opt = new tl.SGD(model.parameters(), { lr: 0.01 });
  const images = tl.Tensor.randn([batch, 3, size, size]);
  const labels = tl.Tensor.from(
    BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)),
    [batch],
  );
  for (let s = 0; s < steps; s++) await tl.trainStep(model, opt, { images, labels });
  // The statistics are sampled at the start of a step: run one more forward's worth.
  await tl.trainStep(model, opt, { images, labels });
  const stats = await tl.distributed.dataParallelStats(model);
  const params = model.parameters().reduce((n, p) => n + p.numel, 0);
  process.stdout.write(`${JSON.stringify({ rank: group.rank, params, stats, sharedMemory: group.sharedMemory })}\n`);
  await group.barrier();
  group.destroy();
})().catch((err) => {
  console.error(`rank ${process.env.RANK ?? 0}: ${err.stack}`);
  process.exit(3);
});
