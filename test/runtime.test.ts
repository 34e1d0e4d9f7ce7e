import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { Device, cuda, defaultDevice, getNumThreads, manualSeed, setNumThreads, version, Tensor } from '../lib';

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
    const out = execFileSync(process.execPath, [path.join(root, 'dist/cli.js'), 'doctor', '--json'], { encoding: 'utf8' });
    const facts = JSON.parse(out);
    expect(facts.libtorch).toBe(version().libtorch);
    expect(facts.cudaStatus).toMatch(/usable/);
  });
});

describe('Device', () => {
  it('parses torch device strings', () => {
    expect(Device.parse('cpu').toString()).toBe('cpu');
    expect(Device.parse('cuda').index).toBeNull();
    expect(Device.parse('cuda:1')).toEqual(new Device('cuda', 1));
    expect(Device.parse('cuda:1').equals('cuda:1')).toBe(true);
  });

  it.each(['gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:1.5', ' cpu', 'cpu:x', ''])('refuses %j with a clear error', (s) => {
    expect(() => Device.parse(s)).toThrow(/invalid device .*expected "cpu", "cuda" or "cuda:<index>"/);
  });

  it('refuses non-strings with a TypeError', () => {
    expect(() => Device.parse(3 as unknown as string)).toThrow(TypeError);
  });

  it('picks CUDA only when available (the seed\'s get_device)', () => {
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
    const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, TORCHLINE_NUM_THREADS: '1' }, encoding: 'utf8' });
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
