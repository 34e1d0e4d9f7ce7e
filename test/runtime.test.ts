import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Device,
  cuda,
  defaultDevice,
  emptyCache,
  getNumThreads,
  manualSeed,
  memoryStats,
  resolvePrecision,
  cpuHasNativeBf16,
  CPU_BF16_MIN_IMAGE_SIZE,
  DataLoader,
  defaultNumWorkers,
  transforms,
  setNumThreads,
  version,
  Tensor,
} from '../lib';
import { PYTHON } from './support/peer';

const root = path.resolve(__dirname, '..');

describe('loading and version', () => {
  it('reports LibTorch, ABI, BLAS and threads', () => {
    const v = version();
    expect(v.torchline).toMatch(/^\d+\.\d+\.\d+/);
    expect(v.libtorch).toMatch(/^\d+\.\d+/);
    expect(v.libtorchSource).toMatch(/^[1-4]\. /);
    expect(typeof v.cxx11Abi).toBe('boolean');
    expect(v.cuda.available).toBe(cuda.isAvailable());
    expect(v.threads.cores).toBeGreaterThan(0);
  });

  it('the doctor CLI prints what was found', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'dist/cli.js'), 'doctor', '--json'], {
      encoding: 'utf8',
    });
    const facts = JSON.parse(out);
    expect(facts.libtorch).toBe(version().libtorch);
    expect(facts.cudaStatus).toMatch(/usable/);
    expect(facts.cxxStandard).toBeGreaterThanOrEqual(20);
    expect(facts.precisionAuto.precision).toBe(resolvePrecision('auto', defaultDevice()).precision);
    expect(facts.cpuAllocator).toBe('caching');
  });
});

describe('Device', () => {
  it('parses torch device strings', () => {
    expect(Device.parse('cpu').toString()).toBe('cpu');
    expect(Device.parse('cuda').index).toBeNull();
    expect(Device.parse('cuda:1')).toEqual(new Device('cuda', 1));
    expect(Device.parse('cuda:1').equals('cuda:1')).toBe(true);
  });

  it.each(['gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:1.5', ' cpu', 'cpu:x', ''])(
    'refuses %j with a clear error',
    (s) => {
      expect(() => Device.parse(s)).toThrow(/invalid device .*expected "cpu", "cuda" or "cuda:<index>"/);
    },
  );

  it('refuses non-strings with a TypeError', () => {
    expect(() => Device.parse(3 as unknown as string)).toThrow(TypeError);
  });

  it("picks CUDA only when available (the seed's get_device)", () => {
    expect(defaultDevice().type).toBe(cuda.isAvailable() ? 'cuda' : 'cpu');
  });
});

describe('threads and seeds', () => {
  it('defaults intra-op threads to the available cores', () => {
    if (process.env.OMP_NUM_THREADS || process.env.TORCHLINE_NUM_THREADS) return;
    expect(getNumThreads()).toBe(os.availableParallelism());
  });

  it('honours TORCHLINE_NUM_THREADS and setNumThreads', () => {
    const script = `const t=require(${JSON.stringify(path.join(root, 'dist'))}); console.log(t.getNumThreads())`;
    const out = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, TORCHLINE_NUM_THREADS: '1' },
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('1');
    const before = getNumThreads();
    setNumThreads(1);
    expect(getNumThreads()).toBe(1);
    setNumThreads(before);
    expect(() => setNumThreads(0)).toThrow(/positive/);
  });

  it('manualSeed makes randn reproducible', () => {
    manualSeed(42);
    const a = Tensor.randn([5]).toArray();
    manualSeed(42);
    const b = Tensor.randn([5]).toArray();
    expect(a).toEqual(b);
    expect(() => manualSeed(-1)).toThrow(RangeError);
  });
});

describe('LibTorch 2.x with the CUDA build', () => {
  const peer = JSON.parse(
    execFileSync(
      PYTHON,
      ['-c', 'import json, torch; print(json.dumps({"v": torch.__version__, "cuda": torch.version.cuda}))'],
      { encoding: 'utf8' },
    ),
  );

  it('is built against the same LibTorch as the Python peer, in C++20', () => {
    const v = version();
    expect(peer.v.startsWith(v.libtorch)).toBe(true);
    expect(Number(v.libtorch.split('.')[0])).toBeGreaterThanOrEqual(2);
    expect(v.cxxStandard).toBeGreaterThanOrEqual(20);
  });

  it('compiles the CUDA and NCCL paths whenever the LibTorch has CUDA (a CPU machine included)', () => {
    const v = version();
    expect(v.cuda.compiled).toBe(peer.cuda !== null);
    expect(v.nccl).toBe(peer.cuda !== null);
    if (!v.cuda.available) expect(() => cuda.synchronize()).toThrow(/no CUDA device/);
  });

  it("precision 'auto' follows the CPU's native bf16 (from /proc/cpuinfo)", () => {
    const flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const native = /\b(avx512_bf16|amx_bf16)\b/.test(flags);
    const r = resolvePrecision('auto', 'cpu');
    expect(r.precision).toBe(native ? 'bf16' : 'fp32');
    expect(r.channelsLast).toBe(native);
    expect(() => resolvePrecision('fp16', 'cpu')).toThrow(/needs a CUDA device/);
    expect(() => resolvePrecision('half' as never, 'cpu')).toThrow(RangeError);
  });

  it("precision 'auto' on CPU keeps fp32 for images below CPU_BF16_MIN_IMAGE_SIZE; explicit choices ignore the size", () => {
    const native = cpuHasNativeBf16();
    const small = resolvePrecision('auto', 'cpu', { imageSize: CPU_BF16_MIN_IMAGE_SIZE - 1 });
    expect(small.precision).toBe('fp32');
    expect(small.channelsLast).toBe(false);
    if (native) expect(small.reason).toMatch(new RegExp(`${CPU_BF16_MIN_IMAGE_SIZE - 1} px`));
    expect(resolvePrecision('auto', 'cpu', { imageSize: CPU_BF16_MIN_IMAGE_SIZE }).precision).toBe(
      native ? 'bf16' : 'fp32',
    );
    expect(resolvePrecision('bf16', 'cpu', { imageSize: 8 }).amp).toBe('bf16');
    expect(() => resolvePrecision('auto', 'cpu', { imageSize: 0 })).toThrow(RangeError);
    expect(() => resolvePrecision('auto', 'cpu', { imageSize: 31.5 })).toThrow(RangeError);
  });
});

describe('thread budget', () => {
  it('decode workers default to the cores this process may use, as the intra-op threads do', () => {
    const cores = version().threads.cores;
    expect(cores).toBeLessThanOrEqual(os.availableParallelism());
    expect(defaultNumWorkers()).toBe(cores);
    const ds = { length: 1, getItem: () => ({ bytes: Buffer.alloc(0), label: 0 }) };
    const transform = [transforms.Resize([8, 8])];
    expect(new DataLoader(ds as never, { transform }).numWorkers).toBe(cores);
    expect(new DataLoader(ds as never, { transform, numWorkers: 3 }).numWorkers).toBe(3);
  });
});

describe('caching CPU allocator', () => {
  it('reuses freed blocks of 1 MiB+ by size and gives them back on emptyCache()', () => {
    expect(memoryStats().installed).toBe(true);
    const before = memoryStats();
    const data = new Float32Array(1 << 20); // 4 MiB
    for (let i = 0; i < 100; i++) Tensor.from(data).dispose();
    const after = memoryStats();
    expect(after.misses - before.misses).toBeLessThanOrEqual(2);
    expect(after.hits - before.hits).toBeGreaterThanOrEqual(98);
    expect(after.idleBytes).toBeGreaterThan(0);
    emptyCache();
    expect(memoryStats().idleBytes).toBe(0);
  });
});
