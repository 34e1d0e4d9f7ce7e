// One optimisation or evaluation step on a batch, run natively on the model's
// own thread; resolves with plain numbers.
import { resolvePrecision, type Precision } from './precision';
import * as is from '../is';
import { binding } from '../native';
import { Tensor } from '../tensor';
import type { Module } from '../models/module';
import type { Optimizer } from '../optim/optimizer';

/** nn.CrossEntropyLoss (mean reduction) with optional label smoothing. */
export class CrossEntropyLoss {
  readonly labelSmoothing: number;
  constructor(options: { labelSmoothing?: number } = {}) {
    is.options('options', options);
    const ls = options.labelSmoothing ?? 0;
    is.number('labelSmoothing', ls, { min: 0, max: 1 });
    this.labelSmoothing = ls;
  }
}

export interface Batch {
  /** float32 [N, 3, H, W], normalised. */
  images: Tensor;
  /** int64 [N] class indices. */
  labels: Tensor;
}

export interface StepOptions {
  lossFn?: CrossEntropyLoss;
  /** Clip the gradients' total L2 norm to this value (torch.nn.utils.clip_grad_norm_). */
  clipGradNorm?: number;
  /** Mixed precision: 'fp16' (CUDA, with dynamic loss scaling) or 'bf16'. Overrides `precision`. */
  amp?: 'fp16' | 'bf16' | false;
  /**
   * 'auto' | 'fp32' | 'bf16' | 'fp16', resolved for the model's device and the batch's image size
   * (resolvePrecision). Without it (and without amp) a step runs in fp32. channels_last is the model's own
   * setting (model.channelsLast()).
   */
  precision?: Precision;
}

export interface StepResult {
  /** Mean loss over the batch. */
  loss: number;
  correct1: number;
  correct5: number;
  n: number;
  /** Total gradient norm before clipping (when clipGradNorm is set). */
  gradNorm?: number;
  /** false when fp16 loss scaling found inf/nan gradients and skipped the update. */
  stepped: boolean;
}

export interface EvalResult extends StepResult {
  /** Top-1 class per sample. */
  predictions: Int32Array;
}

/** The images' short side (NCHW or NHWC-strided NCHW: the last two dimensions), for precision 'auto'. */
export function imageSizeOf(images: Tensor): number | undefined {
  const s = images.shape;
  return s.length === 4 ? Math.min(s[2], s[3]) : undefined;
}

function nativeOptions(model: Module, o: StepOptions, batch: Batch): object {
  is.options('options', o);
  if (o.clipGradNorm !== undefined) is.number('clipGradNorm', o.clipGradNorm, { min: 0, minExclusive: true });
  if (o.amp !== undefined && o.amp !== false) is.oneOf('amp', o.amp, ['fp16', 'bf16']);
  const amp =
    o.amp ??
    (o.precision ? resolvePrecision(o.precision, model.device, { imageSize: imageSizeOf(batch.images) }).amp : false);
  return { labelSmoothing: o.lossFn?.labelSmoothing ?? 0, clipGradNorm: o.clipGradNorm ?? 0, amp: amp || 'off' };
}

function checkBatch(batch: Batch): void {
  if (!batch || !(batch.images instanceof Tensor) || !(batch.labels instanceof Tensor)) {
    is.typeError('batch', '{ images: Tensor, labels: Tensor }', batch);
  }
}

/**
 * zero_grad -> forward -> loss -> backward -> (clip) -> optimizer.step, off the JS thread.
 * A non-finite loss rejects with an Error whose code is 'ERR_NONFINITE_LOSS'; the weights are untouched.
 */
export function trainStep(
  model: Module,
  optimizer: Optimizer,
  batch: Batch,
  options: StepOptions = {},
): Promise<StepResult> {
  checkBatch(batch);
  return binding.trainStep(
    model.handle,
    optimizer.handle,
    batch.images.handle,
    batch.labels.handle,
    nativeOptions(model, options, batch),
  );
}

/** Forward and loss without gradients; the model's train/eval mode is left as it is (call eval() first). */
export function evalStep(
  model: Module,
  batch: Batch,
  options: Omit<StepOptions, 'clipGradNorm'> = {},
): Promise<EvalResult> {
  checkBatch(batch);
  return binding.evalStep(model.handle, batch.images.handle, batch.labels.handle, nativeOptions(model, options, batch));
}

export const backends = {
  cudnn: {
    /** cudnn.benchmark: pick the fastest convolution algorithms for fixed input sizes. */
    setBenchmark(enabled: boolean): void {
      binding.setCudnnBenchmark(enabled);
    },
  },
};
