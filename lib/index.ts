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
  getRngState,
  setRngState,
  setNumThreads,
  getNumThreads,
  defaultNumWorkers,
  emptyCache,
  memoryStats,
} from './runtime';
export type { MemoryStats } from './runtime';
export type { VersionInfo } from './runtime';
export * from './models';
export * from './optim';
export * from './train';
// Storage (GCS and local): `import { storage } from 'torchline'` or the named exports.
export * as storage from './storage';
export {
  Location,
  createStorage,
  listPartitioned,
  download,
  upload,
  UploadQueue,
  startGcsEmulator,
} from './storage';
export type {
  LocationLike,
  ListOptions,
  FileRow,
  FilePartition,
  PartitionedListing,
  DownloadOptions,
  DownloadResult,
  UploadOptions,
  UploadResult,
  GcsEmulator,
} from './storage';
export * as checkpoint from './checkpoint';
export {
  load,
  loadAsync,
  save,
  saveAsync,
  safetensors,
  CheckpointManager,
  CheckpointError,
  UnsafePickleError,
} from './checkpoint';
export * as data from './data';
export {
  DataLoader,
  ImageFolder,
  ImageFiles,
  ManifestDataset,
  DistributedSampler,
  ParquetImageDataset,
  transforms,
} from './data';
export type { Dataset, DataLoaderOptions } from './data';
export * as distributed from './distributed';
