import { describe, expect, it } from 'vitest';
import { Tensor, DType, TypedArray } from '../lib';
import { binding } from '../lib/native';

const cases: [DType, TypedArray][] = [
  ['float32', new Float32Array([1.5, -2, 3.25, 0, Infinity, -0.5])],
  ['float64', new Float64Array([1e-300, -2, 3.25, Math.PI, NaN, 1e300])],
  ['float16', new Uint16Array([0x3c00, 0xc000, 0x7bff, 0, 0x0001, 0x3555])],
  ['bfloat16', new Uint16Array([0x3f80, 0xc000, 0x7f7f, 0, 0x0001, 0x4049])],
  ['uint8', new Uint8Array([0, 1, 127, 128, 254, 255])],
  ['int8', new Int8Array([-128, -1, 0, 1, 126, 127])],
  ['int16', new Int16Array([-32768, -1, 0, 1, 12345, 32767])],
  ['int32', new Int32Array([-(2 ** 31), -1, 0, 1, 123456789, 2 ** 31 - 1])],
  ['int64', new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n])],
  ['bool', new Uint8Array([0, 1, 1, 0, 0, 1])],
];

describe('Tensor round trips', () => {
  it.each(cases)('%s keeps every bit', (dtype, data) => {
    const t = Tensor.from(data, [2, 3], { dtype });
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe(dtype);
    expect(t.device.toString()).toBe('cpu');
    expect(t.numel).toBe(6);
    const back = t.toTypedArray();
    expect(back.constructor).toBe(data.constructor);
    expect(Buffer.from(back.buffer).equals(Buffer.from(data.buffer))).toBe(true);
    t.dispose();
  });

  it('infers the dtype from the TypedArray and copies (not aliases) the data', () => {
    const src = new Float32Array([1, 2, 3]);
    const t = Tensor.from(src);
    src[0] = 99;
    expect(t.dtype).toBe('float32');
    expect(t.toArray()).toEqual([1, 2, 3]);
  });

  it('handles views at an offset and empty tensors', () => {
    const big = new Int32Array([9, 9, 1, 2, 3, 4]);
    expect(Tensor.from(big.subarray(2), [2, 2]).toArray()).toEqual([1, 2, 3, 4]);
    const empty = Tensor.from(new Float32Array(0), [0, 3]);
    expect(empty.shape).toEqual([0, 3]);
    expect(empty.toArray()).toEqual([]);
  });

  it('to(device) copies and keeps the values', () => {
    const t = Tensor.from(new Float64Array([1, 2]));
    const u = t.to('cpu');
    expect(u.toArray()).toEqual([1, 2]);
    expect(() => t.to('tpu')).toThrow(/invalid device/);
  });

  it('item() reads one element and refuses more', () => {
    expect(Tensor.full([1], 7).item()).toBe(7);
    expect(() => Tensor.zeros([2]).item()).toThrow(/one element.*\[2\]/);
  });

  it('refuses bad input with clear errors', () => {
    expect(() => Tensor.from([1, 2] as unknown as Float32Array)).toThrow(TypeError);
    expect(() => Tensor.from(new Uint16Array(2))).toThrow(/ambiguous/);
    expect(() => Tensor.from(new Float32Array(5), [2, 3])).toThrow(/5 elements but shape \[2, 3\] needs 6/);
    expect(() => Tensor.from(new Float32Array(4), [2, 2], { dtype: 'int64' })).toThrow(
      /a Float32Array cannot hold dtype int64/,
    );
    expect(() => Tensor.from(new Float32Array(4), [2, 2], { dtype: 'complex' as DType })).toThrow(
      /unknown dtype 'complex'/,
    );
    expect(() => Tensor.from(new Float32Array(4), [2, -2])).toThrow(TypeError);
  });

  it('takes only the TypedArray kinds it lists, each for its own dtypes (no guessed element size)', () => {
    const make = (data: unknown, dtype: string) => new binding.TensorHandle(data, [4], dtype);
    // Same width, wrong kind: the bits would be reinterpreted.
    expect(() => make(new Float32Array(4), 'int32')).toThrow(/a Float32Array cannot hold dtype int32/);
    expect(() => make(new Int32Array(4), 'float32')).toThrow(/an? Int32Array cannot hold dtype float32/);
    expect(() => make(new Float64Array(4), 'int64')).toThrow(/cannot hold dtype int64/);
    // Kinds with no dtype of their own, and kinds newer than the list (Float16Array on Node >= 22).
    for (const data of [new Uint32Array(4), new BigUint64Array(4)])
      expect(() => make(data, 'int32'), data.constructor.name).toThrow(/Tensor data must be an Int8Array/);
    const F16 = (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;
    if (F16)
      for (const dtype of ['float16', 'float64', 'int64'])
        expect(() => make(new F16(4), dtype)).toThrow(/Tensor data must be an Int8Array/);
    // Not TypedArrays at all.
    expect(() => make(new DataView(new ArrayBuffer(16)), 'float32')).toThrow(/must be a TypedArray/);
    expect(() => make({ length: 4, buffer: new ArrayBuffer(16) }, 'float32')).toThrow(/must be a TypedArray/);
    expect(() => Tensor.from(new DataView(new ArrayBuffer(16)) as unknown as Float32Array)).toThrow(TypeError);
    // The listed ones still work.
    expect(Tensor.from(new Uint8ClampedArray([1, 2, 255, 0]), [4], { dtype: 'uint8' }).toArray()).toEqual([
      1, 2, 255, 0,
    ]);
  });

  it('dispose() frees at once and later use throws', () => {
    const t = Tensor.ones([4]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(/disposed/);
    expect(String(t)).toBe('Tensor(disposed)');
  });
});

describe('native errors become JS errors', () => {
  it('a shape mismatch names the shapes', () => {
    const a = Tensor.zeros([2, 3]);
    const b = Tensor.zeros([4, 5]);
    let err: unknown;
    try {
      a.matmul(b);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/2x3 and 4x5/);
    expect((err as Error).message).not.toMatch(/Exception raised from|frame #/);
  });

  it('wrong argument types are TypeErrors', () => {
    expect(() => Tensor.zeros([2, 2]).matmul({} as Tensor)).toThrow(TypeError);
  });

  it('an async failure rejects the promise with the message', async () => {
    await expect(Tensor.zeros([2, 3]).matmulAsync(Tensor.zeros([2, 3]))).rejects.toThrow(/2x3 and 2x3/);
  });
});

describe('steps run off the event loop', () => {
  it('timers keep firing while native work runs', async () => {
    const a = Tensor.randn([512, 512]);
    await a.matmulAsync(a, { repeat: 2 }); // warm-up
    // Grow the work until it takes at least 300 ms, whatever the machine's speed and load.
    let repeat = 8;
    let elapsed = 0;
    let ticks = 0;
    for (;;) {
      ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const t0 = performance.now();
      const r = await a.matmulAsync(a, { repeat });
      elapsed = performance.now() - t0;
      clearInterval(timer);
      expect(r.shape).toEqual([512, 512]);
      if (elapsed >= 300 || repeat > 1e5) break;
      repeat *= 4;
    }
    expect(elapsed).toBeGreaterThan(300);
    // A blocked loop would see 0 or 1 ticks; a free one ~elapsed/10.
    expect(ticks).toBeGreaterThan(elapsed / 10 / 4);
  });
});
