// torch.save / torch.load compatible files: a zip holding `<name>/data.pkl`
// (the object graph, pickle protocol 2), `<name>/data/<key>` (raw storages)
// and `<name>/version`.
//
// Loading is always "weights only": the restricted unpickler (pickle.ts)
// accepts tensors, storages, OrderedDict and plain containers and refuses
// every other global, so a malicious .pth cannot run code. Tensors are
// created on the CPU whatever device they were saved from.
import { Tensor, DType, TypedArray } from '../tensor';
import { CheckpointError } from './errors';
import { Pickler, PickledTensor, pyGlobal, PyGlobal, Unpickler, markTensorLike } from './pickle';
import { ByteSource, bufferSource, fileSource, ZipReader, ZipWriter, ByteSink, memorySink } from './zip';
import { atomicWriteWith } from './atomic';

/** A model's parameters and buffers by name, in order (PyTorch's state_dict). */
export type StateDict = Map<string, Tensor>;

interface StorageKind {
  dtype: DType;
  size: number;
  array: new (b: ArrayBuffer, off?: number, len?: number) => TypedArray;
}

/** torch's legacy typed-storage names (still what torch.save writes) -> dtype. */
const STORAGES: Record<string, StorageKind> = {
  FloatStorage: { dtype: 'float32', size: 4, array: Float32Array },
  DoubleStorage: { dtype: 'float64', size: 8, array: Float64Array },
  HalfStorage: { dtype: 'float16', size: 2, array: Uint16Array },
  BFloat16Storage: { dtype: 'bfloat16', size: 2, array: Uint16Array },
  LongStorage: { dtype: 'int64', size: 8, array: BigInt64Array },
  IntStorage: { dtype: 'int32', size: 4, array: Int32Array },
  ShortStorage: { dtype: 'int16', size: 2, array: Int16Array },
  CharStorage: { dtype: 'int8', size: 1, array: Int8Array },
  ByteStorage: { dtype: 'uint8', size: 1, array: Uint8Array },
  BoolStorage: { dtype: 'bool', size: 1, array: Uint8Array },
};
const STORAGE_OF_DTYPE = new Map<DType, string>(Object.entries(STORAGES).map(([name, k]) => [k.dtype, name]));

class StorageRef {
  constructor(
    readonly key: string,
    readonly kind: StorageKind,
    readonly numel: number,
    readonly location: string,
  ) {}
}

/** A tensor named by the pickle, created once its storage is read. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {
    markTensorLike(this);
  }
}

function intList(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0))
    throw new CheckpointError(`corrupt tensor: ${what} must be a tuple of non-negative integers`);
  return v as number[];
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new CheckpointError('corrupt tensor: its storage is not a storage persistent id');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
    throw new CheckpointError('corrupt tensor: bad storage offset');
  const sz = intList(size, 'size');
  const st = intList(stride, 'stride');
  if (sz.length !== st.length) throw new CheckpointError(`corrupt tensor: size ${sz} and stride ${st} differ in length`);
  // Every element the view can reach must lie inside the storage.
  if (!sz.includes(0)) {
    let last = offset;
    for (let i = 0; i < sz.length; i++) last += (sz[i] - 1) * st[i];
    if (last >= storage.numel)
      throw new CheckpointError(
        `corrupt tensor: view (offset ${offset}, size [${sz}], stride [${st}]) reaches past its storage of ${storage.numel} elements`,
      );
  }
  return new TensorRef(storage, offset, sz, st);
}

function makeGlobals(): Map<string, PyGlobal> {
  const g = new Map<string, PyGlobal>();
  const add = (module: string, name: string, call?: (args: unknown[]) => unknown) =>
    g.set(`${module}.${name}`, pyGlobal(module, name, call));
  add('collections', 'OrderedDict', (args) => {
    const m = new Map();
    if (args.length > 0 && Array.isArray(args[0])) for (const kv of args[0]) if (Array.isArray(kv) && kv.length === 2) m.set(kv[0], kv[1]);
    return m;
  });
  add('torch._utils', '_rebuild_tensor_v2', rebuildTensor);
  add('torch._utils', '_rebuild_tensor', rebuildTensor);
  // A Parameter is its data here: requires_grad belongs to the model, not the file.
  const param = (args: unknown[]) => {
    if (!(args[0] instanceof TensorRef)) throw new CheckpointError('corrupt parameter: no tensor inside');
    return args[0];
  };
  add('torch._utils', '_rebuild_parameter', param);
  add('torch._utils', '_rebuild_parameter_with_state', param);
  for (const name of Object.keys(STORAGES)) add('torch', name);
  return g;
}
const GLOBALS = makeGlobals();
const STORAGE_GLOBALS = new Map<PyGlobal, StorageKind>(Object.entries(STORAGES).map(([n, k]) => [GLOBALS.get(`torch.${n}`)!, k]));

export interface LoadOptions {
  /** Check each entry's CRC-32 (default true; catches bit rot and truncation). */
  verifyCrc?: boolean;
  /**
   * Views of one storage become separate tensors here (copies), so a small
   * hostile file could name one big storage a thousand times. Loading stops
   * when the tensors would exceed this many times the storages' bytes
   * (default 4; plus 64 MiB of slack).
   */
  maxExpansion?: number;
}

function isContiguous(size: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expect) return false;
    expect *= size[i];
  }
  return true;
}

/** Copies a strided view out of a storage, row-major. */
function gather(src: TypedArray, t: TensorRef, numel: number): TypedArray {
  const Ctor = src.constructor as new (n: number) => TypedArray;
  const out = new Ctor(numel);
  const nd = t.size.length;
  const idx = new Array(nd).fill(0);
  let p = t.offset;
  for (let i = 0; i < numel; i++) {
    (out as any)[i] = (src as any)[p];
    for (let d = nd - 1; d >= 0; d--) {
      if (++idx[d] < t.size[d]) {
        p += t.stride[d];
        break;
      }
      p -= (t.size[d] - 1) * t.stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

function readArchive(zip: ZipReader, options: LoadOptions): unknown {
  const name = zip.source.name;
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1)
    throw new CheckpointError(
      `${name}: not a torch.save checkpoint (${pkls.length ? 'several' : 'no'} <name>/data.pkl entr${pkls.length ? 'ies' : 'y'})`,
      { file: name },
    );
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage')
      throw new CheckpointError(`${name}: only storage persistent ids are allowed`, { file: name });
    const [, type, key, location, numel] = pid;
    const kind = STORAGE_GLOBALS.get(type as PyGlobal);
    if (!kind) {
      const tn = typeof type === 'object' && type && 'name' in type ? String((type as PyGlobal).name) : String(type);
      throw new CheckpointError(`${name}: storage type '${tn}' is not supported (complex/quantized dtypes are not)`, { file: name });
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(key) || key.includes('..'))
      throw new CheckpointError(`${name}: bad storage key ${JSON.stringify(key)}`, { file: name });
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0)
      throw new CheckpointError(`${name}: bad storage size for key ${key}`, { file: name });
    const seen = storages.get(key);
    if (seen) {
      if (seen.kind !== kind || seen.numel !== numel) throw new CheckpointError(`${name}: storage ${key} is named with two different types`, { file: name });
      return seen;
    }
    const entry = zip.entries.get(`${prefix}data/${key}`);
    if (!entry) throw new CheckpointError(`${name}: storage ${key} is missing from the archive (truncated?)`, { file: name });
    if (entry.size !== numel * kind.size)
      throw new CheckpointError(`${name}: storage ${key} has ${entry.size} bytes, expected ${numel} x ${kind.size}`, { file: name });
    const ref = new StorageRef(key, kind, numel, String(location));
    storages.set(key, ref);
    return ref;
  };
  const pkl = zip.read(zip.get(pkls[0]), options);
  const up = new Unpickler(pkl, { globals: GLOBALS, persistentLoad, name: `${name}: ${pkls[0]}` });
  const root = up.load();

  // Create tensors storage by storage, so only one raw storage is held at a time.
  const byStorage = new Map<StorageRef, TensorRef[]>();
  // Iterative: a hostile pickle may nest deeper than the JS stack.
  const seen = new Set<object>();
  const todo: unknown[] = [root];
  while (todo.length) {
    const v = todo.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof TensorRef) {
      const list = byStorage.get(v.storage) ?? [];
      list.push(v);
      byStorage.set(v.storage, list);
    } else if (Array.isArray(v) || v instanceof Set) for (const x of v) todo.push(x);
    else if (v instanceof Map) for (const [k, x] of v) todo.push(k, x);
  }
  let storageBytes = 0;
  let tensorBytes = 0;
  for (const [s, refs] of byStorage) {
    storageBytes += s.numel * s.kind.size;
    for (const t of refs) tensorBytes += t.size.reduce((a, b) => a * b, 1) * s.kind.size;
  }
  const limit = (options.maxExpansion ?? 4) * storageBytes + 64 * 2 ** 20;
  if (tensorBytes > limit)
    throw new CheckpointError(
      `${name}: the tensors would take ${tensorBytes} bytes from ${storageBytes} bytes of storage ` +
        '(many views of the same storage); refusing (raise options.maxExpansion if the file is trusted)',
      { file: name },
    );
  const tensors = new Map<TensorRef, Tensor>();
  try {
    for (const [s, refs] of byStorage) {
      const entry = zip.get(`${prefix}data/${s.key}`);
      const ab = new ArrayBuffer(entry.size);
      zip.readInto(entry, new Uint8Array(ab), options);
      const all = new s.kind.array(ab);
      for (const t of refs) {
        const numel = t.size.reduce((a, b) => a * b, 1);
        const data = isContiguous(t.size, t.stride) ? all.subarray(t.offset, t.offset + numel) : gather(all, t, numel);
        tensors.set(t, Tensor.from(data, t.size, { dtype: s.kind.dtype }));
      }
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return up.finalize(root, (v) => (v instanceof TensorRef ? tensors.get(v) : v));
}

/**
 * Reads a torch.save file (path or bytes). Tensors load on the CPU as
 * torchline Tensors; OrderedDicts (state_dicts) become Maps, dicts with
 * string keys plain objects, tuples frozen arrays.
 */
export function load(file: string | Uint8Array, options: LoadOptions = {}): any {
  const source: ByteSource = typeof file === 'string' ? fileSource(file) : bufferSource(file);
  try {
    return readArchive(new ZipReader(source), options);
  } catch (err) {
    if (err instanceof CheckpointError && !err.file && typeof file === 'string') {
      err.message = `${file}: ${err.message}`;
      err.file = file;
    }
    throw err;
  } finally {
    source.close();
  }
}

export interface SaveOptions {
  /** Top folder inside the zip (torch uses the file's base name or 'archive'). */
  archiveName?: string;
  /** For tests: write zip64 records even for small files. */
  zip64?: 'auto' | 'always';
}

function writeArchive(sink: ByteSink, value: unknown, options: SaveOptions): void {
  const prefix = `${options.archiveName ?? 'archive'}/`;
  if (!/^[A-Za-z0-9_.-]+\/$/.test(prefix) || prefix.startsWith('.')) throw new TypeError(`bad archiveName ${options.archiveName}`);
  const order: Tensor[] = [];
  const keys = new Map<Tensor, string>();
  const pickler = new Pickler({
    tensor(v): PickledTensor | undefined {
      if (!(v instanceof Tensor)) return undefined;
      const storageType = STORAGE_OF_DTYPE.get(v.dtype);
      if (!storageType) throw new TypeError(`cannot save a ${v.dtype} tensor`);
      let key = keys.get(v);
      if (key === undefined) {
        key = String(order.length);
        keys.set(v, key);
        order.push(v);
      }
      const size = v.shape;
      const stride = new Array<number>(size.length);
      for (let i = size.length - 1, s = 1; i >= 0; i--) (stride[i] = s), (s *= size[i]);
      return { storageType, key, location: 'cpu', numel: v.numel, offset: 0, size, stride };
    },
  });
  const pkl = pickler.dump(value);
  const zip = new ZipWriter(sink, { zip64: options.zip64 });
  zip.add(`${prefix}data.pkl`, pkl);
  zip.add(`${prefix}byteorder`, Buffer.from('little'));
  // One tensor copied out at a time: memory stays near one tensor's size.
  for (const t of order) {
    const a = t.toTypedArray();
    zip.add(`${prefix}data/${keys.get(t)}`, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  zip.add(`${prefix}version`, Buffer.from('3\n'));
  zip.finish();
}

/** torch.save-compatible bytes of `value`. */
export function serialize(value: unknown, options: SaveOptions = {}): Buffer {
  const sink = memorySink();
  writeArchive(sink, value, options);
  return sink.toBuffer();
}

/**
 * Writes `value` as a torch.save file that Python's torch.load reads
 * (state_dicts also with weights_only=True). Atomic: readers see the old
 * file or the complete new one, never a partial one.
 */
export function save(path: string, value: unknown, options: SaveOptions = {}): void {
  atomicWriteWith(path, (sink) => writeArchive(sink, value, options));
}
