// Which precision and memory layout a step runs in. 'auto' picks the fastest path that keeps accuracy on the
// hardware at hand (measured: bench/README.md), and says why.
import * as is from '../is';
import { binding } from '../native';
import { Device, type DeviceLike } from '../device';

export type Precision = 'auto' | 'fp32' | 'bf16' | 'fp16';
export type Amp = 'fp16' | 'bf16' | false;

export interface ResolvedPrecision {
  precision: Exclude<Precision, 'auto'>;
  /** The autocast dtype trainStep/evalStep take (`amp`). */
  amp: Amp;
  /** NHWC activations: oneDNN's and cuDNN's fast layout for convolutions in reduced precision. */
  channelsLast: boolean;
  reason: string;
}

/** The CPU's native bf16 instructions (AVX512-BF16 or AMX-BF16), as LibTorch's cpuinfo reports them. */
export function cpuHasNativeBf16(): boolean {
  const c = binding.cpuCapabilities();
  return Boolean(c.avx512_bf16 || c.amx_bf16);
}

/**
 * On CPU, below this image size (short side, px) bf16 + channels_last gains nothing over fp32 NCHW: with
 * small feature maps the casts to bf16 and the layout reorders around each convolution cost what the bf16
 * arithmetic saves. Measured train steps, ResNet50 batch 64 on 2 cores (bench/README.md, "bf16 by image
 * size"): 32 px fp32 470 ms vs bf16 481 ms; 48 px 692 vs 599; 64 px 1,183 vs 834; 128 px 3,264 vs 1,996.
 */
export const CPU_BF16_MIN_IMAGE_SIZE = 48;

export interface PrecisionContext {
  /** The input images' short side in pixels, when known: on CPU, 'auto' keeps fp32 below CPU_BF16_MIN_IMAGE_SIZE. */
  imageSize?: number;
}

/**
 * 'auto': on CUDA, fp16 autocast with dynamic loss scaling + channels_last (on an H200 5,844 img/s vs 4,583
 * for bf16, ResNet50); on a CPU with native bf16, bf16 autocast + channels_last (~1.7x fp32 NCHW at 224 px)
 * unless the images are known to be smaller than CPU_BF16_MIN_IMAGE_SIZE; elsewhere fp32. An explicit choice
 * is taken as given ('fp16' needs CUDA).
 */
export function resolvePrecision(
  precision: Precision = 'auto',
  device: DeviceLike = 'cpu',
  context: PrecisionContext = {},
): ResolvedPrecision {
  const d = Device.parse(device);
  is.oneOf('precision', precision, ['auto', 'fp32', 'bf16', 'fp16']);
  is.options('context', context);
  if (context.imageSize !== undefined) is.integer('imageSize', context.imageSize, { min: 1 });
  if (precision === 'fp16' && d.type !== 'cuda')
    throw new RangeError("precision 'fp16' needs a CUDA device; on CPU use 'bf16'");
  if (precision === 'fp32') return { precision, amp: false, channelsLast: false, reason: 'fp32 as asked' };
  if (precision === 'bf16') return { precision, amp: 'bf16', channelsLast: true, reason: 'bf16 autocast as asked' };
  if (precision === 'fp16') return { precision, amp: 'fp16', channelsLast: true, reason: 'fp16 autocast as asked' };
  if (d.type === 'cuda') {
    return {
      precision: 'fp16',
      amp: 'fp16',
      channelsLast: true,
      reason: 'CUDA: fp16 autocast with loss scaling + channels_last',
    };
  }
  if (cpuHasNativeBf16()) {
    const px = context.imageSize;
    if (px !== undefined && px < CPU_BF16_MIN_IMAGE_SIZE) {
      return {
        precision: 'fp32',
        amp: false,
        channelsLast: false,
        reason: `${px} px images: below ${CPU_BF16_MIN_IMAGE_SIZE} px bf16's casts and layout reorders cost as much as bf16 saves on CPU; fp32`,
      };
    }
    return {
      precision: 'bf16',
      amp: 'bf16',
      channelsLast: true,
      reason: 'the CPU has native bf16 (AVX512-BF16/AMX): bf16 autocast + channels_last',
    };
  }
  return {
    precision: 'fp32',
    amp: false,
    channelsLast: false,
    reason: 'no native bf16 on this CPU: fp32 (bf16 would be emulated and slower)',
  };
}
