// `torchline weights` and how `--pretrained` is understood.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ResNet18_Weights, ResNet50_Weights } from '../../lib';
import { resolveConfig } from '../../lib/cli/pipeline';
import { tempDir } from '../support/peer';

const CLI = path.resolve(__dirname, '../../dist/cli.js');

function cli(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('torchline weights', () => {
  it('lists the table and what the hub cache holds', () => {
    const home = tempDir('cli-weights');
    const dir = path.join(home, 'hub', 'checkpoints');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'resnet18-f37072fd.pth'), 'x');
    const json = cli(['weights', '--json'], { TORCH_HOME: home });
    expect(json.code).toBe(0);
    const rows = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => r.weights)).toEqual([
      'ResNet18_Weights.IMAGENET1K_V1',
      'ResNet34_Weights.IMAGENET1K_V1',
      'ResNet50_Weights.IMAGENET1K_V1',
      'ResNet50_Weights.IMAGENET1K_V2',
      'ResNet101_Weights.IMAGENET1K_V1',
      'ResNet101_Weights.IMAGENET1K_V2',
      'ResNet152_Weights.IMAGENET1K_V1',
      'ResNet152_Weights.IMAGENET1K_V2',
    ]);
    expect(rows.filter((r) => r.cached).map((r) => r.cached)).toEqual([path.join(dir, 'resnet18-f37072fd.pth')]);
    expect(rows.find((r) => r.weights === 'ResNet50_Weights.IMAGENET1K_V2')).toMatchObject({
      default: true,
      resize: 232,
      crop: 224,
      acc1: 80.858,
    });
    const text = cli(['weights', '--model', 'resnet50'], { TORCH_HOME: home });
    expect(text.code).toBe(0);
    expect(text.out).toContain(`hub cache: ${dir}`);
    expect(text.out).toMatch(/ResNet50_Weights\.IMAGENET1K_V2 \* +80\.858 +95\.434 +resize 232 crop 224 +97\.8 MB +no/);
    expect(text.out).not.toContain('ResNet18');
    const bad = cli(['weights', '--model', 'resnet7'], { TORCH_HOME: home });
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('no pretrained weights known for "resnet7"');
  });
});

describe('--pretrained', () => {
  const cfg = (model: string, pretrained: string) => resolveConfig({ model, pretrained });

  it('takes imagenet, a weights name, a URL or a file', async () => {
    const { pretrainedSource } = await import('../../lib/cli/pipeline');
    expect(cfg('resnet50', 'imagenet').pretrained).toBe('imagenet');
    expect(pretrainedSource('imagenet', 'resnet50')).toEqual({ kind: 'entry', entry: ResNet50_Weights.IMAGENET1K_V2 });
    expect(pretrainedSource('IMAGENET1K_V1', 'resnet50')).toEqual({
      kind: 'entry',
      entry: ResNet50_Weights.IMAGENET1K_V1,
    });
    expect(pretrainedSource('ResNet18_Weights.DEFAULT', 'resnet18')).toEqual({
      kind: 'entry',
      entry: ResNet18_Weights.IMAGENET1K_V1,
    });
    expect(pretrainedSource('gs://team/w/resnet50-11ad3fa6.pth', 'resnet50')).toEqual({
      kind: 'url',
      value: 'gs://team/w/resnet50-11ad3fa6.pth',
    });
    const f = path.join(tempDir('pre'), 'mine.pth');
    fs.writeFileSync(f, 'x');
    expect(pretrainedSource(f, 'resnet50')).toEqual({ kind: 'file', value: f });
  });

  it('refuses names the model lacks and missing files, before any work', () => {
    expect(() => cfg('resnet18', 'IMAGENET1K_V2')).toThrow(
      /--pretrained IMAGENET1K_V2: resnet18 has no weights "IMAGENET1K_V2"; known: IMAGENET1K_V1, DEFAULT/,
    );
    expect(() => cfg('resnet50', 'ResNet18_Weights.IMAGENET1K_V1')).toThrow(/resnet50 has no weights/);
    expect(() => cfg('resnet50', '/nonexistent/w.pth')).toThrow(/no such file/);
  });
});
