// A data-parallel worker for test/distributed: launched by torchrun (2 ranks)
// or alone (the single-process reference on the union of both ranks' batches).
// argv: outDir steps [dieAfterStep]
const path = require('node:path');
const tl = require(path.resolve(__dirname, '../../dist'));

const [outDir, stepsArg, dieAfter] = process.argv.slice(2);
const steps = Number(stepsArg);
const GLOBAL_BATCH = 8;

(async () => {
  const distributed = Boolean(process.env.WORLD_SIZE);
  const group = distributed
    ? await tl.distributed.initProcessGroup({ timeout: Number(process.env.TL_TIMEOUT_MS ?? 60000) })
    : null;
  const rank = group ? group.rank : 0;
  const world = group ? group.worldSize : 1;
  // Different init per rank on purpose: DDP must broadcast rank 0's weights.
  tl.manualSeed(1000 + rank);
  let model = tl.resnet18({ numClasses: 5 });
  // Eval-mode BatchNorm: running statistics, so the per-rank batch split
  // cannot change the math (as the issue asks for this comparison).
  model.eval();
  if (!group) {
    tl.manualSeed(1000);
    model = tl.resnet18({ numClasses: 5 }).eval();
  } else {
    await tl.distributed.distributedDataParallel(model, { group });
  }
  const opt = new tl.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  for (let s = 0; s < steps; s++) {
    tl.manualSeed(5000 + s); // the same global batch on every process
    const images = tl.Tensor.randn([GLOBAL_BATCH, 3, 32, 32]).toTypedArray();
    const labels = Array.from({ length: GLOBAL_BATCH }, (_, i) => BigInt((s + i) % 5));
    const per = GLOBAL_BATCH / world;
    const sl = (a, k) => a.slice(rank * per * k, (rank + 1) * per * k);
    const batch = {
      images: tl.Tensor.from(sl(images, 3 * 32 * 32), [per, 3, 32, 32]),
      labels: tl.Tensor.from(BigInt64Array.from(labels.slice(rank * per, (rank + 1) * per)), [per]),
    };
    await tl.trainStep(model, opt, batch);
    if (dieAfter !== undefined && rank === 1 && s + 1 === Number(dieAfter)) process.kill(process.pid, 'SIGKILL');
  }
  tl.save(path.join(outDir, group ? `rank${rank}.pth` : 'single.pth'), model.stateDict());
  if (group) {
    await tl.distributed.barrier();
    tl.distributed.destroyProcessGroup();
  }
})().catch((err) => {
  console.error(`rank ${process.env.RANK ?? 0}: ${err.message}`);
  process.exit(3);
});
