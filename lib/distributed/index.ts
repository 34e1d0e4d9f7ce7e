// torch.distributed for torchline: c10d process groups (Gloo on CPU, NCCL on
// CUDA) joined the way torchrun, Kubeflow's PyTorchJob and Slurm+torchrun
// expect (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and data
// parallel training in the style of DistributedDataParallel.
import { binding } from '../native';
import { Device } from '../device';
import { cuda } from '../runtime';
import { Tensor } from '../tensor';
import type { Module } from '../models/module';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';

export interface InitOptions {
  /** 'auto' (default): NCCL when CUDA is usable, else Gloo. */
  backend?: Backend | 'auto';
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Milliseconds before a rendezvous or collective gives up (default 30 minutes, as torch). */
  timeout?: number;
  /**
   * When every rank runs on this host (default true): all-reduces of CPU tensors (allReduce, and the
   * gradients of distributedDataParallel) go through one shared-memory segment instead of Gloo's TCP
   * ring over loopback. float32/64, bfloat16, float16, int32 and int64; other types and every other
   * collective still use Gloo. Ranks on several hosts, or where /dev/shm cannot be mapped by all of them,
   * use Gloo throughout (see `sharedMemoryReason`).
   */
  sharedMemory?: boolean;
}

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name}=${v} is not a non-negative integer`);
  return n;
}

export class ProcessGroup {
  /** @internal */
  readonly handle: any;
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: Backend;
  /** Whether CPU all-reduces go through shared memory (see InitOptions.sharedMemory). */
  readonly sharedMemory: boolean;
  /** Why they do not ('' when they do): 'sharedMemory: false', 'rank 1: cannot open ...'. */
  readonly sharedMemoryReason: string;
  /** @internal models attached with distributedDataParallel: the group keeps them alive until destroy(). */
  readonly attached = new Set<Module>();

  /** @internal use initProcessGroup() */
  constructor(handle: any, rank: number, worldSize: number, backend: Backend) {
    this.handle = handle;
    this.rank = rank;
    this.worldSize = worldSize;
    this.backend = backend;
    const shm = handle.sharedMemory();
    this.sharedMemory = shm.used;
    this.sharedMemoryReason = shm.reason;
  }

  /** In place, across every rank. 'avg' needs a floating-point tensor. */
  allReduce(tensor: Tensor, op: ReduceOp = 'sum'): Promise<void> {
    return this.handle.allReduce(tensor.handle, op);
  }

  /** In place: every rank ends with `src`'s values. */
  broadcast(tensor: Tensor, src = 0): Promise<void> {
    return this.handle.broadcast(tensor.handle, src);
  }

  /** Resolves when every rank has reached it (rejects after the timeout if one never does). */
  barrier(): Promise<void> {
    return this.handle.barrier();
  }

  /** Sums plain numbers across ranks (metrics for logging). */
  async reduceNumbers(values: number[], op: ReduceOp = 'sum'): Promise<number[]> {
    const t = Tensor.from(Float64Array.from(values));
    await this.allReduce(t, op);
    const out = t.toArray();
    t.dispose();
    return out;
  }

  destroy(): void {
    this.handle.destroy();
    this.attached.clear();
    if (defaultGroup === this) defaultGroup = null;
  }
}

let defaultGroup: ProcessGroup | null = null;
// Groups this process has joined: every rank counts alike, so each group gets keys of its own in a store that
// outlives it (torchrun's agent store), instead of reading the last group's.
let groupsJoined = 0;

/**
 * Joins the default process group (torch.distributed.init_process_group with env://).
 * Every option defaults to what torchrun / PyTorchJob put in the environment.
 */
export async function initProcessGroup(options: InitOptions = {}): Promise<ProcessGroup> {
  if (defaultGroup) throw new Error('the default process group is already initialised');
  const rank = options.rank ?? envInt('RANK');
  const worldSize = options.worldSize ?? envInt('WORLD_SIZE');
  const masterAddr = options.masterAddr ?? process.env.MASTER_ADDR;
  const masterPort = options.masterPort ?? envInt('MASTER_PORT');
  const missing = [
    rank === undefined && 'rank (RANK)',
    worldSize === undefined && 'worldSize (WORLD_SIZE)',
    !masterAddr && 'masterAddr (MASTER_ADDR)',
    masterPort === undefined && 'masterPort (MASTER_PORT)',
  ].filter(Boolean);
  if (missing.length)
    throw new Error(`initProcessGroup: missing ${missing.join(', ')}; launch with torchrun or pass them`);
  if (!(worldSize! >= 1) || !(rank! >= 0 && rank! < worldSize!))
    throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
  if (!(masterPort! > 0 && masterPort! < 65536)) throw new RangeError(`masterPort ${masterPort} is not a TCP port`);
  const backend: Backend =
    !options.backend || options.backend === 'auto' ? (cuda.isAvailable() ? 'nccl' : 'gloo') : options.backend;
  const agentStore = process.env.TORCHELASTIC_USE_AGENT_STORE === 'True';
  const handle = new binding.ProcessGroupHandle({
    backend,
    rank,
    worldSize,
    masterAddr,
    masterPort,
    timeoutMs: options.timeout ?? 30 * 60 * 1000,
    agentStore,
    // torchrun restarts workers with a new attempt number: keys of old attempts must not be reused.
    storePrefix: `/torchline/attempt_${process.env.TORCHELASTIC_RESTART_COUNT ?? 0}/group_${groupsJoined++}/`,
    sharedMemory: options.sharedMemory ?? true,
  });
  await handle.connect();
  defaultGroup = new ProcessGroup(handle, rank!, worldSize!, backend);
  return defaultGroup;
}

export function isInitialized(): boolean {
  return defaultGroup !== null;
}

function group(g?: ProcessGroup): ProcessGroup {
  const pg = g ?? defaultGroup;
  if (!pg) throw new Error('no process group: call initProcessGroup() first');
  return pg;
}

export const getRank = (g?: ProcessGroup): number => (g ?? defaultGroup)?.rank ?? 0;
export const getWorldSize = (g?: ProcessGroup): number => (g ?? defaultGroup)?.worldSize ?? 1;
export const allReduce = (t: Tensor, op: ReduceOp = 'sum', g?: ProcessGroup) => group(g).allReduce(t, op);
export const broadcast = (t: Tensor, src = 0, g?: ProcessGroup) => group(g).broadcast(t, src);
export const barrier = (g?: ProcessGroup) => group(g).barrier();
export function destroyProcessGroup(g?: ProcessGroup): void {
  group(g).destroy();
}

/** This process's device: cuda:LOCAL_RANK when CUDA is usable, else cpu. */
export function localDevice(): Device {
  return cuda.isAvailable() ? new Device('cuda', envInt('LOCAL_RANK') ?? 0) : new Device('cpu');
}

export interface DataParallelOptions {
  group?: ProcessGroup;
  /** Start each forward from rank 0's BatchNorm statistics (default true), as DDP's broadcast_buffers. */
  broadcastBuffers?: boolean;
  /**
   * Search the graph each step for parameters that get no gradient (DDP's find_unused_parameters;
   * default false). Without it such a parameter makes the step fail with an error that says so.
   */
  findUnusedParameters?: boolean;
  /** Gradients as views into the all-reduce buckets (DDP's gradient_as_bucket_view; default true). */
  gradientAsBucketView?: boolean;
  /**
   * BatchNorm in training mode normalises with the mean and variance of every rank's batch together
   * (torch.nn.SyncBatchNorm.convert_sync_batchnorm; default false). Any forward in training mode then
   * runs collectives, so every rank must run it.
   */
  syncBatchNorm?: boolean;
}

/** DDP's runtime statistics of the last sampled step (the first ten, then one in a hundred). */
export interface DataParallelStats {
  /** Bytes of each gradient bucket, in the order they are all-reduced. */
  bucketBytes: number[];
  /** The step the timings below come from (counted from 1). */
  iteration: number;
  /** True once the buckets were regrouped in the order gradients became ready (after the first step). */
  rebuiltBuckets: boolean;
  forwardComputeNs: number;
  backwardComputeNs: number;
  backwardCommNs: number;
  /** How long all-reduce and backward compute ran at the same time. */
  backwardOverlapNs: number;
  /** From backward's start: the first bucket's all-reduce starting, compute ending, the last all-reduce done. */
  backwardCommStartNs: number;
  backwardComputeEndNs: number;
  backwardCommEndNs: number;
}

/**
 * Makes `model` data parallel over the group, as torch's DistributedDataParallel:
 * rank 0's parameters and buffers are broadcast now; from then on trainStep
 * averages gradients across ranks with c10d's Reducer (gradient buckets
 * all-reduced while backward runs) and, with broadcastBuffers (default),
 * starts each forward from rank 0's BatchNorm statistics. The group keeps the
 * model alive until it is destroyed; a model is attached to one live group at
 * a time. Changing the parameters later (to(), channelsLast, replaceHead,
 * freezing) is picked up at the next step: every rank must make the same change.
 */
export async function distributedDataParallel<M extends Module>(
  model: M,
  options: DataParallelOptions = {},
): Promise<M> {
  const pg = group(options.group);
  await pg.handle.attachModel(model.handle, {
    broadcastBuffers: options.broadcastBuffers ?? true,
    findUnusedParameters: options.findUnusedParameters ?? false,
    gradientAsBucketView: options.gradientAsBucketView ?? true,
    syncBatchNorm: options.syncBatchNorm ?? false,
  });
  pg.attached.add(model);
  return model;
}

/** The data-parallel statistics of a model attached with distributedDataParallel (DDP's logging data). */
export function dataParallelStats(model: Module): Promise<DataParallelStats> {
  return binding.dataParallelStats(model.handle);
}
