export { Module } from './module';
export type { StateDict, LoadResult } from './module';
export { ResNet, resnet18, resnet34, resnet50, resnet101, resnet152 } from './resnet';
export type { ResNetOptions } from './resnet';
export { RESNET_DEPTHS, resnetDepthOf } from './architectures';
export type { ResNetDepth } from './architectures';
export type { ResNetBuilder, ResNetBuilderOptions } from './resnet';
export {
  ResNet18_Weights,
  ResNet34_Weights,
  ResNet50_Weights,
  ResNet101_Weights,
  ResNet152_Weights,
} from './resnet_weights';
export { WeightsEntry, getModelWeights, getWeight, listModelWeights } from './weights';
export type {
  WeightsEnum,
  WeightsEnumBase,
  WeightsLike,
  WeightsMeta,
  WeightsEntryInit,
  WeightsLoadOptions,
  ImageClassificationPreset,
} from './weights';
export { IMAGENET_CATEGORIES } from './imagenet_categories';
export * as hub from './hub';
export { WeightsError } from './hub';
