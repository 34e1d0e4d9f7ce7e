// Storage: locations, the GCS client, Spark-style partitioned listing,
// verified parallel download, verified upload and a background upload queue.
export { Location } from './location';
export type { LocationLike } from './location';
export { createStorage, isRetryableError, redact, StorageError } from './client';
export type { StorageClientOptions } from './client';
export { listPartitioned, listFiles, listFlat, listAll, assignPartitions } from './listing';
export type { ListOptions, ListedObject, FileRow, FilePartition, PartitionedListing } from './listing';
export {
  isHiddenName,
  isDataFileName,
  globToRegExp,
  inferPartitionType,
  widerPartitionType,
  castPartitionValue,
  parsePartitionPath,
  resolvePartitions,
  maxSplitBytes,
  packFilePartitions,
  DEFAULT_PARTITION_NAME,
} from './spark';
export type { PartitionType, PartitionValue, PartitionColumn } from './spark';
export { parseImageHeader, OCV_MODES } from './image-header';
export type { ImageSchemaRow } from './image-header';
export {
  download,
  unsafeNameReason,
  findNameCollisions,
  UnsafeObjectNameError,
  NameCollisionError,
  DownloadError,
  PARTIAL_DIR,
} from './download';
export type { DownloadOptions, DownloadResult, DownloadedFile, NameCollision } from './download';
export { upload, uploadOne, UploadQueue, UploadError, PreconditionFailedError } from './upload';
export type { UploadOptions, UploadResult, UploadedFile } from './upload';
export type { TransferProgress } from './progress';
export { withRetries, backoffDelay } from './retry';
export type { RetryOptions } from './retry';
export { startGcsEmulator } from './emulator';
export type { GcsEmulator, GcsEmulatorOptions } from './emulator';
