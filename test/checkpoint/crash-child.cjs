// Saves checkpoints in a loop until killed (the crash test SIGKILLs it).
// argv: <torchline dist dir> <checkpoint dir> <first epoch>
const { Tensor, checkpoint } = require(process.argv[2]);
const dir = process.argv[3];
let epoch = Number(process.argv[4]);
const manager = new checkpoint.CheckpointManager({ dir, keepLast: 2, keepBest: 1 });
// ~24 MB per checkpoint, so a kill often lands in the middle of a write.
const weights = Tensor.randn([2_000_000]);
const moments = [Tensor.randn([2_000_000]), Tensor.randn([2_000_000])];
for (;;) {
  const marker = Tensor.full([1000], epoch);
  manager.save(epoch, { epoch, marker, weights, moments }, { metric: (epoch * 7919) % 13 });
  process.stdout.write(`saved ${epoch}\n`);
  epoch++;
}
