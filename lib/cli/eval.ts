// `torchline eval`: accuracy of a checkpoint on a folder of class sub-folders.
import * as fs from 'node:fs';
import type { Command } from './registry';
import { CliError } from './registry';

const evalCmd: Command = {
  summary: 'evaluate a checkpoint on a folder (top-1, top-5, per class)',
  usage: `Usage: torchline eval --checkpoint FILE --data DIR [flags]

  --checkpoint FILE   a torchline checkpoint or a torchvision state_dict (.pth)
  --data DIR          images in class sub-folders
  --model NAME        resnet18|34|50|101|152 (default resnet50)
  --image-size PX     (default 224; resize to 256/224 of it, then center crop)
  --batch-size N      (default 64)   --device cpu|cuda[:i]   --json`,
  options: {
    checkpoint: { type: 'string' }, data: { type: 'string' }, model: { type: 'string' }, 'image-size': { type: 'string' },
    'batch-size': { type: 'string' }, device: { type: 'string' }, json: { type: 'boolean' },
  },
  async run(v) {
    if (!v.checkpoint) throw new CliError('--checkpoint is required');
    if (!v.data) throw new CliError('--data is required');
    for (const f of [v.checkpoint, v.data] as string[]) if (!fs.existsSync(f)) throw new CliError(`${f}: no such file or folder`);
    const model = String(v.model ?? 'resnet50');
    const depth = Number(model.replace(/^resnet/, ''));
    if (![18, 34, 50, 101, 152].includes(depth)) throw new CliError(`--model must be resnet18|34|50|101|152, got '${model}'`);
    const size = Number(v['image-size'] ?? 224);
    const batchSize = Number(v['batch-size'] ?? 64);
    if (!Number.isInteger(size) || size < 8 || !Number.isInteger(batchSize) || batchSize < 1) throw new CliError('--image-size and --batch-size must be positive integers');
    const tl = await import('../index');
    const T = tl.transforms;
    const data = new tl.ImageFolder(String(v.data), { transform: [T.Resize(Math.round((size * 256) / 224)), T.CenterCrop(size), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)] });
    const sd = tl.checkpoint.extractStateDict(tl.load(String(v.checkpoint)));
    const fc = sd.get('fc.weight');
    const net = new tl.ResNet(depth as 50, { numClasses: fc ? fc.shape[0] : data.classes.length });
    net.loadStateDict(sd);
    if (v.device) net.to(String(v.device));
    const loader = new tl.DataLoader(data, { batchSize, onError: 'skip' });
    const m = await new tl.Trainer().evaluate(net, loader, { classes: data.classes });
    if (v.json) process.stdout.write(JSON.stringify(m) + '\n');
    else {
      process.stdout.write(`top-1 ${(m.top1 * 100).toFixed(2)}%  top-5 ${(m.top5 * 100).toFixed(2)}%  loss ${m.loss.toFixed(4)}  (${m.n} images)\n`);
      for (const c of m.perClass) process.stdout.write(`  ${c.name.padEnd(24)} ${(c.accuracy * 100).toFixed(2).padStart(6)}%  (${c.total})\n`);
    }
    return 0;
  },
};

export default evalCmd;
