// The weights table against torchvision's own (the Python peer reads
// torchvision.models.ResNet*_Weights), the enum API, and the hub folder
// against torch.hub.get_dir() under each environment.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import {
  IMAGENET_CATEGORIES,
  ResNet18_Weights,
  ResNet50_Weights,
  ResNet101_Weights,
  WeightsEntry,
  getModelWeights,
  getWeight,
  hub,
  listModelWeights,
  resnet18,
  resnet50,
  transforms as T,
} from '../../lib';
import { PYTHON, runPython, tempDir } from '../support/peer';

const PEER = path.join(__dirname, 'peer_weights.py');

interface PeerEntry {
  name: string;
  url: string;
  hashPrefix: string;
  numClasses: number;
  categoriesEqual: boolean;
  numParams: number;
  minSize: number[];
  recipe: string;
  dataset: string;
  acc1: number;
  acc5: number;
  gflops: number;
  fileSizeMB: number;
  resizeSize: number[];
  cropSize: number[];
  mean: number[];
  std: number[];
  interpolation: string;
  antialias: boolean;
}

describe('weights table vs torchvision', () => {
  let peer: {
    categories: string[];
    torchvision: string;
    enums: { enumName: string; model: string; default: string; entries: PeerEntry[] }[];
  };
  beforeAll(() => {
    peer = JSON.parse(runPython(PEER, ['table']));
  });

  it('ships the ImageNet-1k category names torchvision ships', () => {
    expect(IMAGENET_CATEGORIES.length).toBe(1000);
    expect([...IMAGENET_CATEGORIES]).toEqual(peer.categories);
  });

  it('has the same models, entry names and defaults', () => {
    expect(listModelWeights().map((e) => [e.enumName, e.model, e.names(), e.DEFAULT.name])).toEqual(
      peer.enums.map((e) => [e.enumName, e.model, e.entries.map((x) => x.name), e.default]),
    );
  });

  it("has each entry's URL, hash prefix, classes, metrics and eval transform", () => {
    for (const pe of peer.enums) {
      const ours = getModelWeights(pe.model);
      for (const p of pe.entries) {
        const w = (ours as unknown as Record<string, WeightsEntry>)[p.name];
        expect(p.categoriesEqual).toBe(true);
        expect({
          name: w.name,
          url: w.url,
          hashPrefix: w.hashPrefix,
          numClasses: w.meta.categories.length,
          categoriesEqual: w.meta.categories === IMAGENET_CATEGORIES,
          numParams: w.meta.numParams,
          minSize: w.meta.minSize,
          recipe: w.meta.recipe,
          dataset: w.meta.metrics.dataset,
          acc1: w.meta.metrics.acc1,
          acc5: w.meta.metrics.acc5,
          gflops: w.meta.gflops,
          fileSizeMB: w.meta.fileSizeMB,
          resizeSize: [w.preset.resizeSize],
          cropSize: [w.preset.cropSize],
          mean: w.preset.mean,
          std: w.preset.std,
          interpolation: w.preset.interpolation,
          antialias: true,
        }).toEqual(p);
        expect(w.fileName).toBe(p.url.split('/').pop());
      }
    }
  });

  it('the parameter counts are those of our models', () => {
    expect(resnet18().numParameters()).toBe(ResNet18_Weights.DEFAULT.meta.numParams);
    expect(resnet50().numParameters()).toBe(ResNet50_Weights.DEFAULT.meta.numParams);
  });
});

describe('weights enum API', () => {
  it('DEFAULT is the best entry itself; names, full names and entries resolve', () => {
    expect(ResNet50_Weights.DEFAULT).toBe(ResNet50_Weights.IMAGENET1K_V2);
    expect(ResNet18_Weights.DEFAULT).toBe(ResNet18_Weights.IMAGENET1K_V1);
    expect(String(ResNet50_Weights.DEFAULT)).toBe('ResNet50_Weights.IMAGENET1K_V2');
    expect(ResNet50_Weights.verify('DEFAULT')).toBe(ResNet50_Weights.IMAGENET1K_V2);
    expect(ResNet50_Weights.verify('IMAGENET1K_V1')).toBe(ResNet50_Weights.IMAGENET1K_V1);
    expect(ResNet50_Weights.verify('ResNet50_Weights.IMAGENET1K_V1')).toBe(ResNet50_Weights.IMAGENET1K_V1);
    expect(ResNet50_Weights.verify(null)).toBeUndefined();
    expect(getWeight('ResNet101_Weights.IMAGENET1K_V2')).toBe(ResNet101_Weights.IMAGENET1K_V2);
    expect(() => ResNet18_Weights.verify('IMAGENET1K_V2')).toThrow(
      /resnet18 has no weights "IMAGENET1K_V2"; known: IMAGENET1K_V1, DEFAULT/,
    );
    expect(() => ResNet18_Weights.verify(ResNet50_Weights.DEFAULT)).toThrow(
      /expected ResNet18_Weights but received ResNet50_Weights/,
    );
    expect(() => getWeight('VGG16_Weights.IMAGENET1K_V1')).toThrow(RangeError);
  });

  it('wrong weights for a builder fail before anything is fetched', async () => {
    await expect(resnet18({ weights: ResNet50_Weights.DEFAULT })).rejects.toThrow(/expected ResNet18_Weights/);
    await expect(resnet50({ weights: 'IMAGENET1K_V3' })).rejects.toThrow(/no weights "IMAGENET1K_V3"/);
    await expect(resnet50({ weights: 'DEFAULT', numClasses: 10 })).rejects.toThrow(/1000 classes.*replaceHead\(10\)/);
  });

  it('transforms() is the eval preset: V2 resize 232, V1 resize 256, crop 224, ImageNet normalisation', () => {
    expect(ResNet50_Weights.IMAGENET1K_V2.transforms()).toEqual(
      T.Compose([T.Resize(232), T.CenterCrop(224), T.ToTensor(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)]),
    );
    expect(ResNet50_Weights.IMAGENET1K_V1.transforms()).toEqual(T.imagenetEval(224));
    expect(ResNet50_Weights.DEFAULT.meta.categories[0]).toBe('tench');
  });

  it('with() derives an entry for another URL and hash, keeping the rest', () => {
    const w = ResNet50_Weights.IMAGENET1K_V2.with({ url: 'https://mirror.example/w/resnet50-0123abcd.pth' });
    expect([w.name, w.model, w.fileName, w.hashPrefix, w.meta.categories.length, w.preset.resizeSize]).toEqual([
      'IMAGENET1K_V2',
      'resnet50',
      'resnet50-0123abcd.pth',
      '0123abcd',
      1000,
      232,
    ]);
    expect(ResNet50_Weights.verify(w)).toBe(w);
    // Same file name: the hash stays the table's.
    expect(ResNet50_Weights.IMAGENET1K_V2.with({ url: 'gs://team/w/resnet50-11ad3fa6.pth' }).hashPrefix).toBe(
      '11ad3fa6',
    );
    expect(() => ResNet50_Weights.IMAGENET1K_V2.with({ hashPrefix: 'XYZ' })).toThrow(/hex/);
    expect(() => ResNet50_Weights.IMAGENET1K_V2.with({ url: 'ftp://x/y.pth' })).toThrow(/https/);
  });
});

describe('hub folder', () => {
  const pyDir = (env: NodeJS.ProcessEnv) =>
    execFileSync(PYTHON, ['-c', 'import torch.hub; print(torch.hub.get_dir())'], { env, encoding: 'utf8' }).trim();
  const ourDir = (env: NodeJS.ProcessEnv) => {
    const saved = { ...process.env };
    try {
      for (const k of ['TORCH_HOME', 'XDG_CACHE_HOME', 'HOME']) delete process.env[k];
      Object.assign(process.env, env);
      return hub.hubDir();
    } finally {
      for (const k of ['TORCH_HOME', 'XDG_CACHE_HOME', 'HOME']) delete process.env[k];
      Object.assign(process.env, saved);
    }
  };

  it('is torch.hub.get_dir() for TORCH_HOME, XDG_CACHE_HOME and the default', () => {
    const t = tempDir('hubdir');
    const base = { PATH: process.env.PATH ?? '' };
    for (const env of [
      { ...base, HOME: t, TORCH_HOME: path.join(t, 'th') },
      { ...base, HOME: t, XDG_CACHE_HOME: path.join(t, 'xdg') },
      { ...base, HOME: t },
      { ...base, HOME: t, TORCH_HOME: '~/rel-home', XDG_CACHE_HOME: path.join(t, 'ignored') },
    ]) {
      expect(ourDir(env)).toBe(pyDir(env));
    }
  });
});
