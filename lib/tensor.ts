// A handle to a tensor that lives in native memory. Few users hold one:
// trainStep/evalStep take batches and return numbers. Handles are freed by
// dispose() or, failing that, when the GC collects the Tensor.
import * as is from './is';
import { binding } from './native';
import { Device, DeviceLike } from './device';

export type DType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'uint8'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'bool';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array;

/** The TypedArray each dtype reads and writes (float16/bfloat16 as raw 16-bit words). */
const ARRAY_OF: Record<DType, new (b: ArrayBuffer) => TypedArray> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
};

function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint16Array) {
    throw new TypeError('a Uint16Array is ambiguous: pass { dtype: "float16" } or { dtype: "bfloat16" }');
  }
  return is.typeError('data', 'a Float32Array, Float64Array, Int8/16/32Array, BigInt64Array or Uint8Array', data);
}

// Frees the native tensor as soon as its JS owner is collected, one GC cycle
// earlier than the native handle's own finalizer would.
const registry = new FinalizationRegistry<{ dispose(): void }>((handle) => handle.dispose());

export class Tensor {
  /** @internal The native handle; native functions accept a Tensor or its handle. */
  readonly handle: any;

  /** @internal Wraps a native handle (use the static constructors). */
  constructor(handle: any) {
    if (!(handle instanceof binding.TensorHandle))
      throw new TypeError('new Tensor() takes a native handle; use Tensor.from()');
    this.handle = handle;
    registry.register(this, handle, this);
  }

  /** Copies a TypedArray into a new CPU tensor; `shape` defaults to 1-D. */
  static from(data: TypedArray, shape?: readonly number[], options: { dtype?: DType } = {}): Tensor {
    if (!ArrayBuffer.isView(data)) is.typeError('data', 'a TypedArray', data);
    is.options('options', options);
    const dtype = options.dtype ?? dtypeOf(data);
    return new Tensor(new binding.TensorHandle(data, shape ? [...shape] : [data.length], dtype));
  }

  static full(shape: readonly number[], value: number, options: { dtype?: DType; device?: DeviceLike } = {}): Tensor {
    const device = Device.parse(options.device ?? 'cpu').toString();
    return new Tensor(binding.full([...shape], value, options.dtype ?? 'float32', device));
  }

  static zeros(shape: readonly number[], options: { dtype?: DType; device?: DeviceLike } = {}): Tensor {
    return Tensor.full(shape, 0, options);
  }

  static ones(shape: readonly number[], options: { dtype?: DType; device?: DeviceLike } = {}): Tensor {
    return Tensor.full(shape, 1, options);
  }

  /** Standard normal samples from LibTorch's seeded generator (see manualSeed). */
  static randn(shape: readonly number[], options: { dtype?: DType; device?: DeviceLike } = {}): Tensor {
    const device = Device.parse(options.device ?? 'cpu').toString();
    return new Tensor(binding.randn([...shape], options.dtype ?? 'float32', device));
  }

  get shape(): number[] {
    return this.handle.shape();
  }

  get dtype(): DType {
    return this.handle.dtype();
  }

  get device(): Device {
    return Device.parse(this.handle.device());
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Bytes of the elements (not of the whole storage). */
  get nbytes(): number {
    return this.handle.nbytes();
  }

  /** Whether autograd tracks this tensor (true for trainable parameters). */
  get requiresGrad(): boolean {
    return this.handle.requiresGrad();
  }

  get disposed(): boolean {
    return this.handle.disposed();
  }

  /** A copy of the elements, row-major, in the TypedArray of the dtype. */
  toTypedArray(): TypedArray {
    const Ctor = ARRAY_OF[this.dtype];
    return new Ctor(this.handle.toArrayBuffer());
  }

  /** The elements as plain numbers (int64 converted; precision above 2^53 is lost). */
  toArray(): number[] {
    const a = this.toTypedArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }

  /** The value of a one-element tensor. */
  item(): number {
    return this.handle.item();
  }

  /** A copy on another device (the same tensor back when it is already there, as in torch). */
  to(device: DeviceLike, options: { nonBlocking?: boolean } = {}): Tensor {
    return new Tensor(this.handle.to(Device.parse(device).toString(), options.nonBlocking ?? false));
  }

  matmul(other: Tensor): Tensor {
    return new Tensor(binding.matmul(this.handle, other.handle));
  }

  /**
   * matmul on torchline's native step thread; the JS thread stays free.
   * `repeat` runs it several times (for throughput measurements).
   */
  async matmulAsync(other: Tensor, options: { repeat?: number } = {}): Promise<Tensor> {
    return new Tensor(await binding.matmulAsync(this.handle, other.handle, options.repeat ?? 1));
  }

  /** Frees the native memory now. Using the tensor afterwards throws. Idempotent. */
  dispose(): void {
    registry.unregister(this);
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return this.disposed
      ? 'Tensor(disposed)'
      : `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device})`;
  }
}
