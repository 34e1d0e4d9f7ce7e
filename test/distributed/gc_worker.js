// Run with --expose-gc by test/distributed/reducer.test.ts: a group of one rank keeps an attached model alive
// (the caller dropped it), a destroyed group leaves a usable model (SyncBatchNorm falls back to BatchNorm),
// and collecting the model afterwards does not disturb the next group. Prints one JSON line.
const path = require('node:path');
const tl = require(path.resolve(__dirname, '../../dist'));

const gc = async () => {
  for (let i = 0; i < 5; i++) {
    global.gc();
    await new Promise((r) => setTimeout(r, 10));
  }
};
const batch = () => ({
  images: tl.Tensor.randn([2, 3, 32, 32]),
  labels: tl.Tensor.from(BigInt64Array.from([0n, 1n]), [2]),
});
const port = Number(process.argv[2]);
const group1 = (p) =>
  tl.distributed.initProcessGroup({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: p, backend: 'gloo' });

(async () => {
  const out = {};
  let group = await group1(port);
  let model = tl.resnet18({ numClasses: 3 }).train();
  const opt = new tl.SGD(model.parameters(), { lr: 0.01 });
  await tl.distributed.distributedDataParallel(model, { group, syncBatchNorm: true });
  await tl.trainStep(model, opt, batch());
  const weak = new WeakRef(model);
  model = null;
  await gc();
  out.aliveWhileAttached = weak.deref() !== undefined;
  await tl.trainStep(weak.deref(), opt, batch());
  group.destroy();
  out.forwardAfterDestroy = (await weak.deref().forward(tl.Tensor.randn([2, 3, 32, 32]))).shape;
  await gc();
  out.collectedAfterDestroy = weak.deref() === undefined;
  group = await group1(port + 1);
  const t = tl.Tensor.ones([4]);
  await group.allReduce(t);
  out.allReduce = t.toArray();
  group.destroy();
  console.log(JSON.stringify(out));
})().catch((err) => {
  console.error(err.stack);
  process.exit(3);
});
