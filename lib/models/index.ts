export { Module } from './module';
export type { StateDict, LoadResult } from './module';
export { ResNet, resnet18, resnet34, resnet50, resnet101, resnet152 } from './resnet';
export type { ResNetOptions } from './resnet';
export { RESNET_DEPTHS, resnetDepthOf } from './architectures';
export type { ResNetDepth } from './architectures';
