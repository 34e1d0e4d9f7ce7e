// torchvision's ResNet family (v1.5) with torchvision's parameter names: one
// class, and a factory per depth as torchvision.models spells them.
import * as is from '../is';
import { binding } from '../native';
import { RESNET_DEPTHS, type ResNetDepth } from './architectures';
import { Module } from './module';
import {
  ResNet18_Weights,
  ResNet34_Weights,
  ResNet50_Weights,
  ResNet101_Weights,
  ResNet152_Weights,
} from './resnet_weights';
import type { WeightsEnumBase, WeightsLike, WeightsLoadOptions } from './weights';

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

export interface ResNetBuilderOptions extends ResNetOptions, WeightsLoadOptions {
  /**
   * Pretrained weights: an entry (`ResNet50_Weights.IMAGENET1K_V2`) or its name ('IMAGENET1K_V2',
   * 'DEFAULT'). The builder then returns a Promise, since the file may have to be downloaded first.
   */
  weights?: WeightsLike | null;
}

/**
 * A torchvision-style builder: without weights it returns the model, with weights a Promise of it
 * (`await` works on both). Like torchvision, weights fix numClasses to the weights' categories: fine-tune
 * with `(await resnet50({ weights: 'DEFAULT' })).replaceHead(n)`.
 */
export interface ResNetBuilder {
  (options: ResNetBuilderOptions & { weights: WeightsLike }): Promise<ResNet>;
  (options?: ResNetOptions & { weights?: null }): ResNet;
  (options: ResNetBuilderOptions): ResNet | Promise<ResNet>;
}

function builder(depth: ResNetDepth, weightsEnum: WeightsEnumBase): ResNetBuilder {
  return ((options: ResNetBuilderOptions = {}) => {
    const { weights, numClasses, zeroInitResidual, ...load } = options;
    if (weights === undefined || weights === null) return new ResNet(depth, { numClasses, zeroInitResidual });
    return (async () => {
      const entry = weightsEnum.verify(weights)!;
      const n = entry.meta.categories.length;
      if (numClasses !== undefined && numClasses !== n) {
        throw new RangeError(
          `${entry} has ${n} classes, numClasses ${numClasses} differs: load the weights, then replaceHead(${numClasses}) to fine-tune`,
        );
      }
      const sd = await entry.getStateDict(load);
      try {
        const model = new ResNet(depth, { numClasses: n, zeroInitResidual });
        model.loadStateDict(sd);
        return model;
      } finally {
        for (const t of sd.values()) t.dispose();
      }
    })();
  }) as ResNetBuilder;
}

/** torchvision.models.resnet18(weights=...) */
export const resnet18 = builder(18, ResNet18_Weights);
export const resnet34 = builder(34, ResNet34_Weights);
export const resnet50 = builder(50, ResNet50_Weights);
export const resnet101 = builder(101, ResNet101_Weights);
export const resnet152 = builder(152, ResNet152_Weights);
