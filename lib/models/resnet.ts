// torchvision's ResNet family (v1.5) with torchvision's parameter names: one
// class, and a factory per depth as torchvision.models spells them.
import * as is from '../is';
import { binding } from '../native';
import { RESNET_DEPTHS, type ResNetDepth } from './architectures';
import { Module } from './module';

export interface ResNetOptions {
  /** Output classes of the `fc` head (default 1000, ImageNet). */
  numClasses?: number;
  /** Zero-init the last BN of each residual block (torchvision's zero_init_residual). */
  zeroInitResidual?: boolean;
}

export class ResNet extends Module {
  readonly depth: ResNetDepth;

  constructor(depth: ResNetDepth, options: ResNetOptions = {}) {
    is.oneOf('ResNet depth', depth, RESNET_DEPTHS);
    is.options('ResNet options', options);
    const numClasses = options.numClasses ?? 1000;
    is.integer('numClasses', numClasses, { min: 1 });
    const zeroInitResidual = options.zeroInitResidual ?? false;
    is.boolean('zeroInitResidual', zeroInitResidual);
    super(new binding.ModelHandle('resnet', { depth, numClasses, zeroInitResidual }));
    this.depth = depth;
  }

  get numClasses(): number {
    return this.handle.numClasses();
  }

  /** Replaces `fc` with a new, freshly initialised Linear (PyTorch's `model.fc = nn.Linear(in, n)`). */
  replaceHead(numClasses: number): this {
    is.integer('numClasses', numClasses, { min: 1 });
    this.handle.replaceHead(numClasses);
    return this;
  }
}

/** torchvision.models.resnet18(...) */
export const resnet18 = (options: ResNetOptions = {}): ResNet => new ResNet(18, options);
export const resnet34 = (options: ResNetOptions = {}): ResNet => new ResNet(34, options);
export const resnet50 = (options: ResNetOptions = {}): ResNet => new ResNet(50, options);
export const resnet101 = (options: ResNetOptions = {}): ResNet => new ResNet(101, options);
export const resnet152 = (options: ResNetOptions = {}): ResNet => new ResNet(152, options);
