// Checkpoints PyTorch can read: torch.save/torch.load files, safetensors,
// crash-safe saving and a folder manager that keeps the last K plus the best.
export { load, loadAsync, save, saveAsync, serialize } from './torch-save';
export type { StateDict, LoadOptions, SaveOptions } from './torch-save';
export * as safetensors from './safetensors';
export { CheckpointError, UnsafePickleError } from './errors';
export { atomicWriteFile, atomicWriteWith, atomicWriteChunks, sweepTempFiles, isTempName } from './atomic';
export { CheckpointManager } from './manager';
export type { CheckpointInfo, CheckpointManagerOptions } from './manager';
export { filterStateDict, extractStateDict, loadPretrained } from './state-dict';
export type { FilterResult, ShapeLike, StateDictModule, PretrainedReport } from './state-dict';
export { PY_STATE, isTuple } from './pickle';
