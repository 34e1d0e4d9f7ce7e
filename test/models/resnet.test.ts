import { beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { ResNet, resnet18, resnet50, Tensor, ResNetDepth, RESNET_DEPTHS, resnetDepthOf } from '../../lib';
import { readTensorDir } from '../support/npy';
import { runPython, tempDir } from '../support/peer';

const PEER = path.join(__dirname, 'peer_models.py');

function maxAbsDiff(a: Tensor, b: Tensor): number {
  const x = a.toTypedArray() as Float32Array;
  const y = b.toTypedArray() as Float32Array;
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

describe('ResNet family vs torchvision', () => {
  let peerKeys: Record<string, [string, number[], string][]>;
  beforeAll(() => {
    peerKeys = JSON.parse(runPython(PEER, ['keys']));
  });

  it.each([...RESNET_DEPTHS])("resnet%i state_dict keys, shapes and dtypes equal torchvision's", (depth) => {
    const m = new ResNet(depth, { numClasses: 10 });
    const ours = [...m.stateDict()].map(([k, t]) => [k, t.shape, t.dtype]);
    expect(ours).toEqual(peerKeys[depth]);
  });

  it.each([18, 50] as ResNetDepth[])(
    "resnet%i with torchvision's weights: eval forward matches within 1e-4",
    async (depth) => {
      const dir = tempDir('fwd');
      runPython(PEER, ['forward', dir, String(depth)]);
      const weights = readTensorDir(path.join(dir, 'weights'));
      const io = readTensorDir(path.join(dir, 'io'));
      const m = new ResNet(depth, { numClasses: 10 });
      expect(m.loadStateDict(weights)).toEqual({ missingKeys: [], unexpectedKeys: [] });
      m.eval();
      const y = await m.forward(io.get('x')!);
      expect(y.shape).toEqual([2, 10]);
      expect(maxAbsDiff(y, io.get('y')!)).toBeLessThan(1e-4);
    },
  );
});

describe('ResNet API', () => {
  it('counts parameters as torchvision does', () => {
    expect(resnet50().numParameters()).toBe(25_557_032);
    expect(resnet18().numParameters()).toBe(11_689_512);
  });

  it('replaceHead swaps fc for the new class count and keeps the backbone', () => {
    const m = resnet50();
    const before = m.stateDict().get('conv1.weight')!.toArray();
    m.replaceHead(7);
    expect(m.numClasses).toBe(7);
    const sd = m.stateDict();
    expect(sd.get('fc.weight')!.shape).toEqual([7, 2048]);
    expect(sd.get('fc.bias')!.shape).toEqual([7]);
    expect(sd.get('conv1.weight')!.toArray()).toEqual(before);
    expect(() => m.replaceHead(0)).toThrow(RangeError);
  });

  it('zeroInitResidual zeroes the last BN weight of every block', () => {
    const sd = new ResNet(50, { zeroInitResidual: true }).stateDict();
    expect(
      sd
        .get('layer1.0.bn3.weight')!
        .toArray()
        .every((v) => v === 0),
    ).toBe(true);
    expect(
      sd
        .get('layer1.0.bn1.weight')!
        .toArray()
        .every((v) => v === 1),
    ).toBe(true);
    const basic = new ResNet(18, { zeroInitResidual: true }).stateDict();
    expect(
      basic
        .get('layer2.1.bn2.weight')!
        .toArray()
        .every((v) => v === 0),
    ).toBe(true);
  });

  it('freeze/unfreeze by prefix, with layer1 not matching layer10-style names', () => {
    const m = resnet18({ numClasses: 3 });
    const all = m.numParameters();
    const frozen = m.freeze();
    expect(frozen).toBe(m.parameters().length);
    expect(m.numParameters({ trainableOnly: true })).toBe(0);
    m.unfreeze(['fc']);
    expect(m.numParameters({ trainableOnly: true })).toBe(512 * 3 + 3);
    m.unfreeze(['layer4']);
    expect(m.parameters({ trainableOnly: true }).length).toBe(2 + m.parameters({ prefixes: ['layer4'] }).length);
    expect(() => m.freeze(['layer9'])).toThrow(/no parameter matches the prefix 'layer9'/);
    m.unfreeze();
    expect(m.numParameters({ trainableOnly: true })).toBe(all);
  });

  it('loadStateDict: strict refuses missing/unexpected keys, shape mismatch names the key', () => {
    const m = resnet18({ numClasses: 10 });
    const sd = resnet18({ numClasses: 10 }).stateDict();
    sd.delete('fc.bias');
    sd.set('extra.weight', Tensor.zeros([1]));
    expect(() => m.loadStateDict(sd)).toThrow(/missing keys: fc.bias.*unexpected keys: extra.weight/);
    expect(m.loadStateDict(sd, { strict: false })).toEqual({
      missingKeys: ['fc.bias'],
      unexpectedKeys: ['extra.weight'],
    });
    const wrong = resnet18({ numClasses: 5 }).stateDict();
    expect(() => m.loadStateDict(wrong)).toThrow(
      /size mismatch for fc.weight: copying a param with shape \[5, 512\], the shape in the current model is \[10, 512\]/,
    );
  });

  it('rejects bad constructor arguments', () => {
    expect(() => new ResNet(42 as ResNetDepth)).toThrow(RangeError);
    expect(() => new ResNet(42 as ResNetDepth)).toThrow(/^ResNet depth must be one of 18, 34, 50, 101 or 152, got 42$/);
    expect(() => resnet50({ numClasses: -1 })).toThrow(/^numClasses must be a positive integer, got -1$/);
    expect(() => resnet50({ numClasses: '10' as never })).toThrow(TypeError);
    expect(() => resnet18().replaceHead(2.5)).toThrow(RangeError);
    expect(() => resnet18().train('no' as never)).toThrow(/^mode must be a boolean, got "no"$/);
  });

  it('names the depth a state_dict holds, from its keys', () => {
    for (const depth of RESNET_DEPTHS)
      expect(resnetDepthOf(new ResNet(depth, { numClasses: 3 }).stateDict().keys())).toBe(depth);
    expect(resnetDepthOf(['conv1.weight', 'fc.weight'])).toBeUndefined();
    expect(resnetDepthOf(['features.0.weight'])).toBeUndefined();
  });

  it('forward refuses inputs of the wrong shape or dtype with the expected one named', async () => {
    const m = resnet18().eval();
    await expect(m.forward(Tensor.zeros([2, 1, 32, 32]))).rejects.toThrow(/\[N, 3, H, W\], got \[2, 1, 32, 32\]/);
    await expect(m.forward(Tensor.zeros([2, 3, 32, 32], { dtype: 'int32' }))).rejects.toThrow(
      /floating-point input, got int32/,
    );
  });
});
