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
export * as checkpoint from './checkpoint';
export { load, loadAsync, save, saveAsync, safetensors, CheckpointManager, CheckpointError, UnsafePickleError } from './checkpoint';
export type { StateDict } from './checkpoint';
