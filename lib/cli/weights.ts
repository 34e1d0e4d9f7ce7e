// `torchline weights`: the pretrained weights table and what the torch hub cache holds.
import * as fs from 'node:fs';
import type { Command } from './types';
import { CliError } from './errors';

const weights: Command = {
  usage: `Usage: torchline weights [--model NAME] [--json]

Lists ResNet weights as torchvision names them (use them as --pretrained NAME, or resnet50({ weights: NAME })),
their ImageNet-1k accuracy and eval preset, and whether the file is already in the torch hub cache
($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints; shared with Python).

  --model NAME   only this model (resnet18|34|50|101|152)
  --json         one JSON object per line`,
  options: { model: { type: 'string' }, json: { type: 'boolean' } },
  async run(v) {
    await import('../models/resnet_weights'); // registers the ResNet enums
    const { listModelWeights, getModelWeights } = await import('../models/weights');
    const { checkpointsDir } = await import('../models/hub');
    let enums = listModelWeights();
    if (v.model !== undefined) {
      try {
        enums = [getModelWeights(String(v.model))];
      } catch (err) {
        throw new CliError((err as Error).message);
      }
    }
    const dir = checkpointsDir();
    const rows = enums.flatMap((e) =>
      e.entries().map((w) => ({
        model: e.model,
        weights: String(w),
        default: e.DEFAULT === w,
        acc1: w.meta.metrics.acc1,
        acc5: w.meta.metrics.acc5,
        resize: w.preset.resizeSize,
        crop: w.preset.cropSize,
        sizeMB: w.meta.fileSizeMB,
        url: w.url,
        cached: w.isCached() ? w.cachePath() : null,
      })),
    );
    if (v.json) {
      for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n');
      return 0;
    }
    const lines = [`hub cache: ${dir}${fs.existsSync(dir) ? '' : ' (not created yet)'}`, ''];
    lines.push(
      `${'weights'.padEnd(32)} ${'acc@1'.padStart(6)} ${'acc@5'.padStart(6)}  eval preset        size      cached`,
    );
    for (const r of rows) {
      lines.push(
        `${(r.weights + (r.default ? ' *' : '')).padEnd(32)} ${r.acc1.toFixed(3).padStart(6)} ${r.acc5.toFixed(3).padStart(6)}  ` +
          `resize ${r.resize} crop ${r.crop}  ${r.sizeMB.toFixed(1).padStart(5)} MB  ${r.cached ? 'yes' : 'no'}`,
      );
    }
    lines.push(
      '',
      '* DEFAULT (also --pretrained imagenet). Files are downloaded on first use, verified against the hash in their name.',
    );
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

export default weights;
