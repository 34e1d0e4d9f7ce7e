// Process-wide facts and settings: versions, CUDA, threads, seeds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as is from './is';
import { binding } from './native';
import { packageRoot } from './paths';
import { Device } from './device';
import { Tensor } from './tensor';

export interface VersionInfo {
  torchline: string;
  libtorch: string;
  /** How the build found LibTorch (one of the four ways in the README). */
  libtorchSource: string;
  cxx11Abi: boolean;
  /** The C++ standard the addon was compiled with (LibTorch 2.x needs 20). */
  cxxStandard: number;
  /** Whether the NCCL backend was compiled in (a CUDA LibTorch with nccl.h found). */
  nccl: boolean;
  cuda: { compiled: boolean; available: boolean; deviceCount: number; runtime: string | null; cudnn: string | null };
  blas: { compiled: string; loaded: string | null };
  mkldnn: boolean;
  openmp: boolean;
  threads: { intraOp: number; cores: number };
}

function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8'));
  return pkg.version;
}

/** What this build of torchline runs on. */
export function version(): VersionInfo {
  const b = binding.buildInfo();
  return {
    torchline: packageVersion(),
    libtorch: b.libtorch,
    libtorchSource: b.libtorchSource,
    cxx11Abi: b.cxx11Abi,
    cxxStandard: b.cxxStandard,
    nccl: b.ncclCompiled,
    cuda: {
      compiled: b.cudaCompiled,
      available: cuda.isAvailable(),
      deviceCount: cuda.deviceCount(),
      runtime: b.cudaRuntime || null,
      cudnn: b.cudnn || null,
    },
    blas: { compiled: b.blasCompiled, loaded: b.blasLoaded || null },
    mkldnn: b.mkldnn,
    openmp: b.openmp,
    threads: { intraOp: getNumThreads(), cores: binding.availableCores() },
  };
}

/** LibTorch's full build configuration (at::show_config()). */
export function buildConfig(): string {
  return binding.buildInfo().config;
}

export const cuda = {
  /** True when this LibTorch has CUDA and a GPU is usable. */
  isAvailable(): boolean {
    return binding.cudaIsAvailable();
  },
  deviceCount(): number {
    return binding.cudaDeviceCount();
  },
  /** Why CUDA is or is not usable, in words (what `torchline doctor` prints). */
  explain(): string {
    const b = binding.buildInfo();
    if (!b.cudaCompiled) {
      return 'not usable: this torchline was built against a CPU-only LibTorch; rebuild against a CUDA LibTorch (see README "Using a GPU")';
    }
    const n = binding.cudaDeviceCount();
    if (n === 0) return 'not usable: LibTorch has CUDA but sees no GPU (no device, or the NVIDIA driver is missing)';
    return `usable: ${n} device(s), CUDA runtime ${b.cudaRuntime || '?'}, cuDNN ${b.cudnn || 'none'}`;
  },
  /** Waits for all queued work on a GPU (default: this process's), as torch.cuda.synchronize. */
  synchronize(device?: number): void {
    binding.cudaSynchronize(device);
  },
  /**
   * The GPU that a bare `'cuda'` means in this process, as torch.cuda.set_device. Defaults to
   * LOCAL_RANK (torchrun gives each rank its own GPU), else 0.
   */
  setDevice(device: number): void {
    binding.cudaSetDevice(device);
  },
  currentDevice(): number {
    return binding.cudaCurrentDevice();
  },
};

/** CUDA when available (this process's GPU: LOCAL_RANK under torchrun), else CPU. */
export function defaultDevice(): Device {
  return cuda.isAvailable() ? new Device('cuda', cuda.currentDevice()) : new Device('cpu');
}

/** Seeds LibTorch's generators (CPU and every GPU), as torch.manual_seed. */
export function manualSeed(seed: number | bigint): void {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 2n ** 64n) is.rangeError('seed', 'a non-negative integer below 2^64', seed);
  } else is.integer('seed', seed, { min: 0 });
  binding.manualSeed(seed);
}

/** The CPU generator's state (torch.get_rng_state()), a uint8 Tensor. */
export function getRngState(): Tensor {
  return new Tensor(binding.getRngState());
}

/** Restores what getRngState() returned (torch.set_rng_state()). */
export function setRngState(state: Tensor): void {
  is.instance('state', state, Tensor);
  binding.setRngState(state.handle);
}

/**
 * LibTorch intra-op threads. The default is the number of cores this process
 * may use (LibTorch itself defaults to 1 on many Linux machines), unless
 * TORCHLINE_NUM_THREADS or OMP_NUM_THREADS is set.
 */
export function setNumThreads(n: number): void {
  is.integer('threads', n, { min: 1 });
  binding.setNumThreads(n);
}

export function getNumThreads(): number {
  return binding.getNumThreads();
}

/**
 * The decode threads a DataLoader starts when `numWorkers` is not given: every core this process may use,
 * from one thread budget with the intra-op threads (getNumThreads(), also every core). With CUDA the GPU
 * does the arithmetic and decoding is the CPU's work; on CPU, decoding comes in bursts between the step's
 * parallel regions, and measured on 2 cores (ResNet50 at 224 px, bf16, one epoch of 192 JPEGs:
 * bench/README.md, "thread budget") 2 workers beside 2 intra-op threads took 12.1 s against 14.8 s for 1.
 */
export function defaultNumWorkers(): number {
  return binding.availableCores();
}

/**
 * Returns the CPU tensor cache's idle blocks to the system (torch.cuda.empty_cache's counterpart for the
 * caching CPU allocator torchline installs; TORCHLINE_CPU_ALLOCATOR=system leaves LibTorch's own).
 */
export function emptyCache(): void {
  binding.emptyCache();
}

export interface MemoryStats {
  /** Whether the caching CPU allocator is installed. */
  installed: boolean;
  /** Bytes in blocks of 1 MiB+ held by the cache (in use + idle), and their peak. */
  heldBytes: number;
  peakHeldBytes: number;
  idleBytes: number;
  /** Idle bytes kept at most (TORCHLINE_CPU_CACHE_LIMIT, default a quarter of physical memory). */
  limitBytes: number;
  hits: number;
  misses: number;
}

export function memoryStats(): MemoryStats {
  return binding.memoryStats();
}
