// `torchline eval`: accuracy of a checkpoint on a folder of class sub-folders.
import * as fs from 'node:fs';
import { resnetDepthOf, type ResNetDepth } from '../models/architectures';
import { CliError, inputStep } from './errors';
import { MODEL_NAMES as MODELS } from './pipeline';
import type { Command } from './types';

/** The depth to build: the one the checkpoint holds, checked against --model when given. */
export function pickDepth(keys: Iterable<string>, flag: string | undefined, file: string): ResNetDepth {
  const held = resnetDepthOf(keys);
  if (flag !== undefined && !MODELS.includes(flag))
    throw new CliError(`--model must be ${MODELS.join(', ')}, got '${flag}'`);
  if (held === undefined) {
    throw new CliError(
      `${file} does not hold a torchvision ResNet state_dict (no conv1/layer1-4 weights torchline knows)`,
    );
  }
  if (flag !== undefined && flag !== `resnet${held}`) {
    throw new CliError(
      `${file} holds a resnet${held}, not a ${flag}: pass --model resnet${held} (or leave --model out)`,
    );
  }
  return held;
}

const evalCmd: Command = {
  usage: `Usage: torchline eval --checkpoint FILE --data DIR [flags]

  --checkpoint FILE   a torchline checkpoint or a torchvision state_dict (.pth)
  --data DIR          images in class sub-folders (the classes the checkpoint was trained on)
  --model NAME        ${MODELS.join('|')} (default: the one the checkpoint holds)
  --image-size PX     (default 224; resize to 256/224 of it, then center crop)
  --batch-size N      (default 64)   --device cpu|cuda[:i]   --json`,
  options: {
    checkpoint: { type: 'string' },
    data: { type: 'string' },
    model: { type: 'string' },
    'image-size': { type: 'string' },
    'batch-size': { type: 'string' },
    device: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(v) {
    if (!v.checkpoint) throw new CliError('--checkpoint is required');
    if (!v.data) throw new CliError('--data is required');
    const file = String(v.checkpoint);
    const dir = String(v.data);
    for (const f of [file, dir]) if (!fs.existsSync(f)) throw new CliError(`${f}: no such file or folder`);
    const size = Number(v['image-size'] ?? 224);
    const batchSize = Number(v['batch-size'] ?? 64);
    if (!Number.isInteger(size) || size < 8)
      throw new CliError(`--image-size must be an integer >= 8, got '${v['image-size']}'`);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new CliError(`--batch-size must be a positive integer, got '${v['batch-size']}'`);
    const tl = await import('../index');
    const T = tl.transforms;
    const sd = await inputStep(file, () => tl.checkpoint.extractStateDict(tl.load(file)));
    const depth = pickDepth(sd.keys(), v.model as string | undefined, file);
    const data = await inputStep(
      dir,
      () =>
        new tl.ImageFolder(dir, {
          transform: [
            T.Resize(Math.round((size * 256) / 224)),
            T.CenterCrop(size),
            T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD),
          ],
        }),
    );
    const outputs = sd.get('fc.weight')?.shape[0];
    if (outputs !== undefined && outputs !== data.classes.length) {
      throw new CliError(
        `${file} classifies ${outputs} classes but ${dir} has ${data.classes.length} class folders: evaluate on data with the classes it was trained on`,
      );
    }
    const net = new tl.ResNet(depth, { numClasses: outputs ?? data.classes.length });
    await inputStep(file, () => net.loadStateDict(sd));
    if (v.device) await inputStep('--device', () => net.to(String(v.device)));
    const loader = new tl.DataLoader(data, { batchSize, onError: 'skip' });
    const m = await new tl.Trainer().evaluate(net, loader, { classes: data.classes });
    if (v.json) process.stdout.write(JSON.stringify({ model: `resnet${depth}`, ...m }) + '\n');
    else {
      process.stdout.write(
        `resnet${depth}: top-1 ${(m.top1 * 100).toFixed(2)}%  top-5 ${(m.top5 * 100).toFixed(2)}%  loss ${m.loss.toFixed(4)}  (${m.n} images)\n`,
      );
      for (const c of m.perClass)
        process.stdout.write(`  ${c.name.padEnd(24)} ${(c.accuracy * 100).toFixed(2).padStart(6)}%  (${c.total})\n`);
    }
    return 0;
  },
};

export default evalCmd;
