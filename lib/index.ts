// torchline: image classifiers on LibTorch from Node.js. This file only
// re-exports; each concern lives in its own module.
export { Device } from './device';
export type { DeviceLike, DeviceType } from './device';
export { Tensor } from './tensor';
export type { DType, TypedArray } from './tensor';
export {
  version,
  buildConfig,
  cuda,
  defaultDevice,
  manualSeed,
  setNumThreads,
  getNumThreads,
} from './runtime';
export type { VersionInfo } from './runtime';
export * as data from './data';
export { DataLoader, ImageFolder, ImageFiles, ManifestDataset, DistributedSampler, transforms } from './data';
export type { Batch, Dataset, DataLoaderOptions } from './data';
