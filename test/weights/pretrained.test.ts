// The "done when": resnet50({ weights: 'DEFAULT' }) with the file in
// the torch hub cache gives torchvision's logits on the same photos
// preprocessed with weights.transforms(). The real 100 MB file cannot be
// downloaded here, so the Python peer writes a torchvision ResNet50 state
// dict under the real DEFAULT file name (resnet50-11ad3fa6.pth) in a temp
// TORCH_HOME, and torchvision computes its logits from that same file. Its
// SHA-256 is not the real file's, so these loads pass checkHash: false (the
// first test shows that without it the file is refused).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DataLoader,
  ManifestDataset,
  ResNet50_Weights,
  WeightsError,
  hub,
  load,
  resnet50,
  type Tensor,
} from '../../lib';
import { runPython, tempDir } from '../support/peer';

const PEER = path.join(__dirname, 'peer_weights.py');
const PHOTOS = ['baboon.jpg', 'fruits.jpg', 'butterfly.jpg', 'HappyFish.jpg'].map((f) =>
  path.join('/usr/share/doc/opencv-doc/examples/data', f),
);

let torchHome: string;
let cached: string;
const saved = process.env.TORCH_HOME;

beforeAll(() => {
  torchHome = tempDir('torch-home');
  process.env.TORCH_HOME = torchHome;
  cached = path.join(torchHome, 'hub', 'checkpoints', 'resnet50-11ad3fa6.pth');
  expect(ResNet50_Weights.DEFAULT.cachePath()).toBe(cached);
  fs.mkdirSync(path.dirname(cached), { recursive: true });
  runPython(PEER, ['write', '50', cached, '1']);
}, 180_000);

afterAll(() => {
  if (saved === undefined) delete process.env.TORCH_HOME;
  else process.env.TORCH_HOME = saved;
  fs.rmSync(torchHome, { recursive: true, force: true });
});

describe('resnet50({ weights: "DEFAULT" }) from the hub cache', () => {
  it("refuses the stand-in file by default: its hash is not the real file's", async () => {
    const err = await resnet50({ weights: 'DEFAULT', progress: false }).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe('EHASH');
    expect(err.message).toContain('11ad3fa6');
    expect(fs.existsSync(cached)).toBe(true); // a file the user put there is reported, not deleted
  });

  it("gives torchvision's logits within 1e-4 on real photos with weights.transforms()", async () => {
    for (const f of PHOTOS) expect(fs.existsSync(f)).toBe(true);
    const weights = ResNet50_Weights.DEFAULT;
    expect(weights.preset.resizeSize).toBe(232);
    const model = (await resnet50({ weights: 'DEFAULT', checkHash: false, progress: false })).eval();
    const loader = new DataLoader(new ManifestDataset(PHOTOS.map((uri) => ({ uri, label: 0 }))), {
      transform: weights.transforms(),
      batchSize: PHOTOS.length,
      numWorkers: 2,
    });
    let logits: Tensor | undefined;
    for await (const b of loader) logits = await model.forward(b.images);
    expect(logits!.shape).toEqual([PHOTOS.length, 1000]);
    const peer = JSON.parse(runPython(PEER, ['logits', '50', 'IMAGENET1K_V2', cached, ...PHOTOS])) as {
      logits: number[][];
      argmax: number[];
    };
    const ours = logits!.toTypedArray() as Float32Array;
    let maxDiff = 0;
    let maxAbs = 0;
    const argmax: number[] = [];
    for (let i = 0; i < PHOTOS.length; i++) {
      let best = 0;
      for (let j = 0; j < 1000; j++) {
        const v = ours[i * 1000 + j];
        maxDiff = Math.max(maxDiff, Math.abs(v - peer.logits[i][j]));
        maxAbs = Math.max(maxAbs, Math.abs(peer.logits[i][j]));
        if (v > ours[i * 1000 + best]) best = j;
      }
      argmax.push(best);
    }
    console.log(
      `resnet50 DEFAULT vs torchvision: max |logit diff| ${maxDiff.toExponential(2)} (max |logit| ${maxAbs.toFixed(3)}); ` +
        `top-1 ${argmax.map((c) => weights.meta.categories[c]).join(', ')}`,
    );
    expect(maxAbs).toBeGreaterThan(0.1); // the logits are not trivially zero
    expect(maxDiff).toBeLessThan(1e-4);
    expect(argmax).toEqual(peer.argmax);
  });

  it('fine-tuning: the weights, then replaceHead(n) gives a fresh head on the pretrained backbone', async () => {
    const model = (
      await resnet50({ weights: ResNet50_Weights.DEFAULT, checkHash: false, progress: false })
    ).replaceHead(5);
    expect(model.numClasses).toBe(5);
    const file = load(cached) as Map<string, Tensor>;
    const sd = model.stateDict();
    expect(sd.get('fc.weight')!.shape).toEqual([5, 2048]);
    for (const k of ['conv1.weight', 'layer3.5.bn3.running_mean', 'layer4.2.conv3.weight']) {
      expect(sd.get(k)!.toArray()).toEqual(file.get(k)!.toArray());
    }
    expect(hub.checkpointsDir()).toBe(path.dirname(cached));
  });
});
