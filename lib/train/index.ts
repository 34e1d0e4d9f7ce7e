export { trainStep, evalStep, CrossEntropyLoss, backends } from './step';
export type { Batch, StepOptions, StepResult, EvalResult } from './step';
export { Trainer } from './trainer';
export type { FitOptions, FitResult, EvalMetrics, Loader, UploadSink, TrainerEvents } from './trainer';
export { SummaryWriter, readEvents } from './tensorboard';
export type { DecodedEvent } from './tensorboard';
export { renderReport, writeReport } from './report';
export type { EpochRecord, ReportInput } from './report';
export { Progress } from './progress';
