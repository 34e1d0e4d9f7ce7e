// torchvision's ResNet family (v1.5) with torchvision's parameter names.
import { binding } from '../native';
import { Module } from './module';

export interface ResNetOptions {
  /** Output classes of the `fc` head (default 1000, ImageNet). */
  numClasses?: number;
  /** Zero-init the last BN of each residual block (torchvision's zero_init_residual). */
  zeroInitResidual?: boolean;
}

export type ResNetDepth = 18 | 34 | 50 | 101 | 152;

export class ResNet extends Module {
  readonly depth: ResNetDepth;

  constructor(depth: ResNetDepth, options: ResNetOptions = {}) {
    if (![18, 34, 50, 101, 152].includes(depth)) {
      throw new RangeError(`ResNet depth must be 18, 34, 50, 101 or 152, got ${depth}`);
    }
    const numClasses = options.numClasses ?? 1000;
    if (!Number.isInteger(numClasses) || numClasses < 1) {
      throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
    }
    super(new binding.ModelHandle('resnet', { depth, numClasses, zeroInitResidual: options.zeroInitResidual ?? false }));
    this.depth = depth;
  }

  get numClasses(): number {
    return this.handle.numClasses();
  }

  /** Replaces `fc` with a new, freshly initialised Linear (the seed's `model.fc = nn.Linear(in, n)`). */
  replaceHead(numClasses: number): this {
    if (!Number.isInteger(numClasses) || numClasses < 1) {
      throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
    }
    this.handle.replaceHead(numClasses);
    return this;
  }
}

export class ResNet18 extends ResNet {
  constructor(options: ResNetOptions = {}) {
    super(18, options);
  }
}
export class ResNet34 extends ResNet {
  constructor(options: ResNetOptions = {}) {
    super(34, options);
  }
}
export class ResNet50 extends ResNet {
  constructor(options: ResNetOptions = {}) {
    super(50, options);
  }
}
export class ResNet101 extends ResNet {
  constructor(options: ResNetOptions = {}) {
    super(101, options);
  }
}
export class ResNet152 extends ResNet {
  constructor(options: ResNetOptions = {}) {
    super(152, options);
  }
}

/** torchvision.models.resnet18(...) */
export const resnet18 = (options: ResNetOptions = {}): ResNet => new ResNet18(options);
export const resnet34 = (options: ResNetOptions = {}): ResNet => new ResNet34(options);
export const resnet50 = (options: ResNetOptions = {}): ResNet => new ResNet50(options);
export const resnet101 = (options: ResNetOptions = {}): ResNet => new ResNet101(options);
export const resnet152 = (options: ResNetOptions = {}): ResNet => new ResNet152(options);
