// A data-parallel worker for test/distributed: launched by torchrun (2 ranks)
// or alone (the single-process reference on the union of both ranks' batches).
// argv: outDir steps [dieAfterStep]. TL_SYNC_BN=1: training-mode BatchNorm,
// synchronised across ranks (SyncBatchNorm); TL_SYNC_BN=0: training-mode,
// not synchronised. TL_LR: learning rate (0.05). TL_SHM=0: gradients over
// Gloo instead of shared memory (TL_SHM=1 requires shared memory).
const path = require('node:path');
const tl = require(path.resolve(__dirname, '../../dist'));

const [outDir, stepsArg, dieAfter] = process.argv.slice(2);
const steps = Number(stepsArg);
const GLOBAL_BATCH = 8;
const syncBN = process.env.TL_SYNC_BN === '1';
const trainBN = process.env.TL_SYNC_BN !== undefined;

(async () => {
  const distributed = Boolean(process.env.WORLD_SIZE);
  const group = distributed
    ? await tl.distributed.initProcessGroup({
        timeout: Number(process.env.TL_TIMEOUT_MS ?? 60000),
        sharedMemory: process.env.TL_SHM !== '0',
      })
    : null;
  if (group && process.env.TL_SHM && group.sharedMemory !== (process.env.TL_SHM === '1'))
    throw new Error(
      `sharedMemory is ${group.sharedMemory} (${group.sharedMemoryReason}), TL_SHM=${process.env.TL_SHM}`,
    );
  const rank = group ? group.rank : 0;
  const world = group ? group.worldSize : 1;
  // Different init per rank on purpose: DDP must broadcast rank 0's weights.
  tl.manualSeed(1000 + rank);
  // Eval-mode BatchNorm uses running statistics, so the per-rank batch split
  // cannot change the math; with SyncBatchNorm, training-mode BatchNorm sees
  // the union batch too.
  const mode = (m) => (trainBN ? m.train() : m.eval());
  let model = mode(tl.resnet18({ numClasses: 5 }));
  if (!group) {
    tl.manualSeed(1000);
    model = mode(tl.resnet18({ numClasses: 5 }));
  } else {
    await tl.distributed.distributedDataParallel(model, { group, syncBatchNorm: syncBN });
  }
  // TL_LR: with training-mode BatchNorm a rounding difference can flip which value a max-pool window
  // picks (and with it conv1's gradient): one process on 1 thread and on 2 differ by 3e-4 after 2 steps at
  // lr 0.05. The SyncBatchNorm check uses a step size at which no window flips.
  const opt = new tl.SGD(model.parameters(), { lr: Number(process.env.TL_LR ?? 0.05), momentum: 0.9 });
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
