export { Optimizer, Adam, AdamW, SGD } from './optimizer';
export type { AdamOptions, SGDOptions, ParamGroup, GroupState, OptimizerStateDict, OptimizerKind } from './optimizer';
export { LRScheduler, StepLR, MultiStepLR, CosineAnnealingLR, LinearLR, OneCycleLR } from './lr_scheduler';
export type { OneCycleOptions } from './lr_scheduler';
