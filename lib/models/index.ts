export { Module } from './module';
export type { StateDict, LoadResult } from './module';
export { ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, resnet18, resnet34, resnet50, resnet101, resnet152 } from './resnet';
export type { ResNetOptions, ResNetDepth } from './resnet';
