// Fetches one weights file into $TORCH_HOME, for the concurrent-download test.
// argv: <torchline dist dir> <url>
const tl = require(process.argv[2]);
const entry = tl.ResNet18_Weights.IMAGENET1K_V1.with({ url: process.argv[3] });
entry.fetch({ progress: true }).then(
  (file) => process.stdout.write(file + '\n'),
  (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 1;
  },
);
