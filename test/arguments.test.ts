// Public entry points reject bad arguments the same way: a TypeError (code ERR_INVALID_ARG_TYPE) for
// the wrong type, a RangeError (code ERR_OUT_OF_RANGE) for a value outside what is accepted, and a
// message that names the parameter, what it accepts and what it got.
import { describe, expect, it } from 'vitest';
import {
  Adam,
  CosineAnnealingLR,
  CrossEntropyLoss,
  LinearLR,
  SGD,
  StepLR,
  Tensor,
  Trainer,
  manualSeed,
  resnet18,
  setNumThreads,
  setRngState,
  trainStep,
} from '../lib';
import * as is from '../lib/is';

function fault(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('did not throw');
}

const params = () => [Tensor.zeros([2])];

describe('lib/is', () => {
  it.each([
    [() => is.integer('n', 1.5, { min: 1 }), RangeError, 'n must be a positive integer, got 1.5'],
    [() => is.integer('n', '3', { min: 0 }), TypeError, 'n must be a non-negative integer, got "3"'],
    [() => is.integer('n', 11, { min: 1, max: 10 }), RangeError, 'n must be an integer in [1, 10], got 11'],
    [() => is.number('lr', Number.NaN, { min: 0 }), RangeError, 'lr must be a finite number >= 0, got NaN'],
    [() => is.number('p', 2, { min: 0, max: 1 }), RangeError, 'p must be a finite number in [0, 1], got 2'],
    [() => is.number('t', 0, { min: 0, minExclusive: true }), RangeError, 't must be a finite number > 0, got 0'],
    [() => is.oneOf('amp', 'fp8', ['fp16', 'bf16']), RangeError, "amp must be one of 'fp16' or 'bf16', got \"fp8\""],
    [() => is.oneOf('amp', 16, ['fp16', 'bf16']), TypeError, "amp must be one of 'fp16' or 'bf16', got 16"],
    [() => is.boolean('flag', null), TypeError, 'flag must be a boolean, got null'],
    [() => is.options('options', [1]), TypeError, 'options must be an options object, got an array of 1'],
    [() => is.instance('state', new Uint8Array(2), Tensor), TypeError, 'state must be a Tensor, got a Uint8Array'],
  ] as [() => void, typeof Error, string][])('%#: %s', (fn, Kind, message) => {
    const err = fault(fn);
    expect(err).toBeInstanceOf(Kind);
    expect(err.message).toBe(message);
    expect(err.code).toBe(Kind === RangeError ? 'ERR_OUT_OF_RANGE' : 'ERR_INVALID_ARG_TYPE');
  });

  it('accepts what it says it accepts', () => {
    expect(() => {
      is.integer('n', 0, { min: 0 });
      is.number('p', 1, { min: 0, max: 1 });
      is.oneOf('amp', 'bf16', ['fp16', 'bf16']);
      is.options('o', undefined);
    }).not.toThrow();
  });
});

describe('public functions use it', () => {
  it.each([
    ['Adam lr', () => new Adam(params(), { lr: -1 }), RangeError, /^options\.lr must be a finite number >= 0, got -1$/],
    [
      'Adam betas',
      () => new Adam(params(), { betas: [0.9, 1] }),
      RangeError,
      /^options\.betas\[1\] must be a number in \[0, 1\), got 1$/,
    ],
    ['Adam group', () => new Adam([{ params: params(), lr: Number.NaN }]), RangeError, /^params\[0\]\.lr must be/],
    ['empty params', () => new Adam([]), TypeError, /^params must be a non-empty Tensor\[\]/],
    [
      'SGD without lr',
      () => new SGD(params(), {} as never),
      TypeError,
      /^options\.lr must be a number >= 0, got undefined$/,
    ],
    [
      'SGD nesterov',
      () => new SGD(params(), { lr: 0.1, nesterov: 1 as never }),
      TypeError,
      /^options\.nesterov must be a boolean/,
    ],
    [
      'StepLR',
      () => new StepLR(new SGD(params(), { lr: 0.1 }), { stepSize: 0 }),
      RangeError,
      /^stepSize must be a positive integer, got 0$/,
    ],
    [
      'CosineAnnealingLR',
      () => new CosineAnnealingLR(new SGD(params(), { lr: 0.1 }), { tMax: 0 }),
      RangeError,
      /^tMax must be a finite number > 0, got 0$/,
    ],
    [
      'LinearLR',
      () => new LinearLR(new SGD(params(), { lr: 0.1 }), { startFactor: 0 }),
      RangeError,
      /^startFactor must be a finite number in \(0, 1\], got 0$/,
    ],
    [
      'CrossEntropyLoss',
      () => new CrossEntropyLoss({ labelSmoothing: 1.5 }),
      RangeError,
      /^labelSmoothing must be a finite number in \[0, 1\], got 1\.5$/,
    ],
    ['manualSeed', () => manualSeed(-1), RangeError, /^seed must be a non-negative integer, got -1$/],
    ['manualSeed type', () => manualSeed('1' as never), TypeError, /^seed must be a non-negative integer, got "1"$/],
    ['setNumThreads', () => setNumThreads(0), RangeError, /^threads must be a positive integer, got 0$/],
    [
      'setRngState',
      () => setRngState(new Uint8Array(4) as never),
      TypeError,
      /^state must be a Tensor, got a Uint8Array$/,
    ],
    ['Tensor.from', () => Tensor.from([1, 2] as never), TypeError, /^data must be a TypedArray, got an array of 2$/],
    [
      'Tensor.from kind',
      () => Tensor.from(new Uint32Array(2) as never),
      TypeError,
      /^data must be a Float32Array, .*got a Uint32Array$/,
    ],
    ['resnet', () => resnet18({ numClasses: 0 }), RangeError, /^numClasses must be a positive integer, got 0$/],
  ] as [string, () => unknown, typeof Error, RegExp][])('%s', (_name, fn, Kind, re) => {
    const err = fault(fn);
    expect(err).toBeInstanceOf(Kind);
    expect(err.message).toMatch(re);
  });

  it('trainStep and Trainer.fit check their arguments before any native call', async () => {
    const model = resnet18({ numClasses: 2 });
    const opt = new Adam(model.parameters());
    await expect(async () => trainStep(model, opt, { images: 1 } as never)).rejects.toThrow(
      /^batch must be \{ images: Tensor, labels: Tensor \}, got an object$/,
    );
    const batch = { images: Tensor.zeros([1, 3, 32, 32]), labels: Tensor.from(new BigInt64Array([0n])) };
    await expect(async () => trainStep(model, opt, batch, { amp: 'fp8' as never })).rejects.toThrow(RangeError);
    await expect(async () => trainStep(model, opt, batch, { clipGradNorm: 0 })).rejects.toThrow(
      /clipGradNorm must be a finite number > 0/,
    );
    await expect(new Trainer().fit({ model, optimizer: opt, train: [], epochs: 0 } as never)).rejects.toThrow(
      /^epochs must be a positive integer, got 0$/,
    );
  });
});
