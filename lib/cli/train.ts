// `torchline train`: a whole training run (download, train, checkpoint, evaluate, upload) from flags.
import type { Command } from './types';
import { PIPELINE_FLAGS, PIPELINE_USAGE, resolveConfig, runPipeline } from './pipeline';

const train: Command = {
  usage: `Usage: torchline train [flags]

Trains a ResNet on class folders (local, or downloaded from gs://BUCKET/PREFIX first), saving a checkpoint
every N epochs (uploaded to gs://BUCKET/CHECKPOINT-PREFIX/ when --bucket is given), then evaluates.

${PIPELINE_USAGE}`,
  options: PIPELINE_FLAGS,
  async run(values) {
    const r = await runPipeline(resolveConfig(values));
    process.stdout.write(
      `accuracy ${(r.accuracy * 100).toFixed(2)}% top-1, ${(r.top5 * 100).toFixed(2)}% top-5 on ${r.valImages} validation images\n` +
        `checkpoints: ${r.checkpoints.join(', ') || 'none'}\nreport: ${r.reportPath}\n`,
    );
    return r.interrupted ? 130 : 0;
  },
};

export default train;
