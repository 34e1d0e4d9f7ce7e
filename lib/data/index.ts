// torchline.data: datasets, transforms, samplers and the DataLoader.
export { DataLoader, DEFAULT_MAX_PIXELS, normalize } from './loader';
export type { Batch, DataLoaderOptions, SkippedSample } from './loader';
export {
  ImageFolder,
  ImageFiles,
  ManifestDataset,
  readLabelMap,
  IMG_EXTENSIONS,
} from './datasets';
export type {
  Dataset,
  DataItem,
  EpochReader,
  ImageFolderOptions,
  LabelMap,
  LabelRule,
  ManifestRow,
  RawImage,
} from './datasets';
export { ParquetImageDataset } from './parquet-dataset';
export type { ParquetDatasetOptions } from './parquet-dataset';
export { RowGroupSampler, planRanks } from './parquet-sampler';
export type { RowGroupSamplerOptions } from './parquet-sampler';
export { openParquetTable, describeTable } from './parquet-table';
export type { ParquetTable, ParquetPartFile, RowGroupInfo, TableKind } from './parquet-table';
export { DistributedSampler, RandomSampler, SequentialSampler, TorchGenerator, randperm } from './sampler';
export type { Sampler, DistributedSamplerOptions } from './sampler';
export { decodeWithSharp } from './decode';
export {
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_DIR,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  readFashionMnist,
  writeFashionMnistFolder,
} from './fashion-mnist';
export type { FashionMnistSplit } from './fashion-mnist';
import * as transforms from './transforms';
export { transforms };
