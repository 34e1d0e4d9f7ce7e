// torch.save / torch.load compatible files: a zip holding `<name>/data.pkl`
// (the object graph, pickle protocol 2), `<name>/data/<key>` (raw storages)
// and `<name>/version`; and, for reading, the legacy pre-1.6 format.
//
// Loading is always "weights only": the restricted unpickler (pickle.ts)
// accepts tensors, storages, OrderedDict and plain containers and refuses
// every other global, so a malicious .pth cannot run code. Tensors are
// created on the CPU whatever device they were saved from.
import { Tensor, DType } from '../tensor';
import { CheckpointError } from './errors';
import { Pickler, PickledTensor, pyGlobal, PyGlobal, Unpickler, markTensorLike } from './pickle';
import * as os from 'node:os';
import { binding } from '../native';
import {
  ByteSource,
  bufferSource,
  fileSource,
  ZipReader,
  ZipWriter,
  ZipEntry,
  ByteSink,
  memorySink,
  chunkSink,
} from './zip';
import { allocStorage, viewOf, bytesOf } from './native-io';
import { atomicWriteWith, atomicWriteChunks } from './atomic';

/** A model's parameters and buffers by name, in order (PyTorch's state_dict). */
export type StateDict = Map<string, Tensor>;

interface StorageKind {
  dtype: DType;
  size: number;
}

/** torch's legacy typed-storage names (still what torch.save writes) -> dtype. */
const STORAGES: Record<string, StorageKind> = {
  FloatStorage: { dtype: 'float32', size: 4 },
  DoubleStorage: { dtype: 'float64', size: 8 },
  HalfStorage: { dtype: 'float16', size: 2 },
  BFloat16Storage: { dtype: 'bfloat16', size: 2 },
  LongStorage: { dtype: 'int64', size: 8 },
  IntStorage: { dtype: 'int32', size: 4 },
  ShortStorage: { dtype: 'int16', size: 2 },
  CharStorage: { dtype: 'int8', size: 1 },
  ByteStorage: { dtype: 'uint8', size: 1 },
  BoolStorage: { dtype: 'bool', size: 1 },
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
  if (!(storage instanceof StorageRef))
    throw new CheckpointError('corrupt tensor: its storage is not a storage persistent id');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
    throw new CheckpointError('corrupt tensor: bad storage offset');
  const sz = intList(size, 'size');
  const st = intList(stride, 'stride');
  if (sz.length !== st.length)
    throw new CheckpointError(`corrupt tensor: size ${sz} and stride ${st} differ in length`);
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
    if (args.length > 0 && Array.isArray(args[0]))
      for (const kv of args[0]) if (Array.isArray(kv) && kv.length === 2) m.set(kv[0], kv[1]);
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
const STORAGE_GLOBALS = new Map<PyGlobal, StorageKind>(
  Object.entries(STORAGES).map(([n, k]) => [GLOBALS.get(`torch.${n}`)!, k]),
);

export interface LoadOptions {
  /** Check each entry's CRC-32 (default true; catches bit rot and truncation). */
  verifyCrc?: boolean;
}

interface Parsed {
  up: Unpickler;
  root: unknown;
  /** Each storage with its entry and the tensors viewing it, in file order. */
  storages: { ref: StorageRef; entry: ZipEntry; views: TensorRef[] }[];
  prefix: string;
}

/**
 * A value from a (hostile) pickle, for an error message. Never throws:
 * JSON.stringify throws on a bigint or a cycle, String() on a null-prototype object.
 */
function show(v: unknown): string {
  if (typeof v === 'bigint') return `${v}`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** Everything but the storage bytes: the pickle, checked against the archive. */
/** The persistent-id hook: validates ids and collects the storages they name. */
function storageCollector(name: string) {
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    // zip format: ('storage', type, key, location, numel); legacy adds view_metadata (None)
    if (!Array.isArray(pid) || (pid.length !== 5 && pid.length !== 6) || pid[0] !== 'storage')
      throw new CheckpointError(`${name}: only storage persistent ids are allowed`, { file: name });
    const [, type, key, location, numel] = pid;
    if (pid.length === 6 && pid[5] !== null)
      throw new CheckpointError(`${name}: legacy storage views (pre-0.4 files) are not supported`, { file: name });
    const kind = STORAGE_GLOBALS.get(type as PyGlobal);
    if (!kind) {
      const tn =
        typeof type === 'object' && type && 'name' in type
          ? `${(type as PyGlobal).module}.${(type as PyGlobal).name}`
          : String(type);
      throw new CheckpointError(`${name}: storage type '${tn}' is not supported (complex/quantized dtypes are not)`, {
        file: name,
      });
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(key) || key.includes('..'))
      throw new CheckpointError(`${name}: bad storage key ${show(key)}`, { file: name });
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0)
      throw new CheckpointError(`${name}: bad storage size for key ${key}`, { file: name });
    const seen = storages.get(key);
    if (seen) {
      if (seen.kind !== kind || seen.numel !== numel)
        throw new CheckpointError(`${name}: storage ${key} is named with two different types`, { file: name });
      return seen;
    }
    const ref = new StorageRef(key, kind, numel, String(location));
    storages.set(key, ref);
    return ref;
  };
  return { storages, persistentLoad };
}

/** The tensors actually reachable from the result, grouped by storage (iterative: hostile nesting). */
function tensorsByStorage(root: unknown): Map<StorageRef, TensorRef[]> {
  const byStorage = new Map<StorageRef, TensorRef[]>();
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
  return byStorage;
}

/** Everything but the storage bytes: the pickle, checked against the archive. */
function parseArchive(zip: ZipReader, options: LoadOptions): Parsed {
  const name = zip.source.name;
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1)
    throw new CheckpointError(
      `${name}: not a torch.save checkpoint (${pkls.length ? 'several' : 'no'} <name>/data.pkl entr${pkls.length ? 'ies' : 'y'})`,
      { file: name },
    );
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const { storages, persistentLoad } = storageCollector(name);
  const pkl = zip.read(zip.get(pkls[0]), options);
  const up = new Unpickler(pkl, { globals: GLOBALS, persistentLoad, name: `${name}: ${pkls[0]}` });
  const root = up.load();
  for (const [key, ref] of storages) {
    const entry = zip.entries.get(`${prefix}data/${key}`);
    if (!entry)
      throw new CheckpointError(`${name}: storage ${key} is missing from the archive (truncated?)`, { file: name });
    if (entry.size !== ref.numel * ref.kind.size)
      throw new CheckpointError(
        `${name}: storage ${key} has ${entry.size} bytes, expected ${ref.numel} x ${ref.kind.size}`,
        { file: name },
      );
  }
  const list = [...tensorsByStorage(root)].map(([ref, views]) => ({
    ref,
    entry: zip.get(`${prefix}data/${ref.key}`),
    views,
  }));
  list.sort((a, b) => a.entry.dataOffset - b.entry.dataOffset); // sequential reads
  return { up, root, storages: list, prefix };
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/**
 * The pre-1.6 torch.save format (still what `_use_new_zipfile_serialization=False`
 * writes, and what many published weights are): five pickles in a row (magic
 * number, protocol 1001, sys_info, the object, the storage keys), then each
 * storage as an int64 element count and its raw bytes, in key order.
 */
function parseLegacy(src: ByteSource): Parsed {
  const name = src.name;
  const fail = (msg: string): never => {
    throw new CheckpointError(`${name}: legacy torch.save file: ${msg}`, { file: name });
  };
  // The pickles are small and at the start: read a window, grow it if they run past.
  for (let window = Math.min(src.size, 1 << 20); ; window = Math.min(src.size, window * 4)) {
    const head = src.read(0, window);
    try {
      const next = (
        start: number,
        persistentLoad: (pid: unknown) => unknown = () => fail('unexpected persistent id'),
      ) => {
        const up = new Unpickler(head, {
          globals: GLOBALS,
          persistentLoad,
          name: `${name}: legacy torch.save file`,
          start,
        });
        const v = up.load();
        return { up, v, end: up.position };
      };
      const magic = next(0);
      // BigInt() throws on anything but an integer: check the type first.
      const m = magic.v;
      if (!((typeof m === 'number' && Number.isSafeInteger(m)) || typeof m === 'bigint') || BigInt(m) !== LEGACY_MAGIC)
        fail('bad magic number');
      const proto = next(magic.end);
      if (proto.v !== 1001) fail(`protocol ${show(proto.v)} is not supported`);
      const sys = next(proto.end);
      const info = sys.up.finalize(sys.v, (x) => x) as Record<string, unknown>;
      if (!info || info.little_endian !== true) fail('big-endian files are not supported');
      const { storages, persistentLoad } = storageCollector(name);
      const main = next(sys.end, persistentLoad);
      const keysPkl = next(main.end);
      const keys = keysPkl.up.finalize(keysPkl.v, (x) => x);
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) fail('bad storage key list');
      // Walk the data region: the sizes come from the file, so check each against the pickle.
      const entries = new Map<string, ZipEntry>();
      let pos = keysPkl.end;
      for (const key of keys as string[]) {
        const ref = storages.get(key) ?? fail(`storage ${key} is listed but never used`);
        if (entries.has(key)) fail(`storage ${key} is listed twice`);
        if (pos + 8 > src.size) fail(`truncated (storage ${key} is missing)`);
        const numel = src.read(pos, 8).readBigInt64LE(0);
        if (numel !== BigInt(ref.numel)) fail(`storage ${key} has ${numel} elements, the pickle says ${ref.numel}`);
        const size = ref.numel * ref.kind.size;
        if (pos + 8 + size > src.size) fail(`truncated (storage ${key} runs past the end)`);
        entries.set(key, {
          name: `storage ${key}`,
          method: 0,
          crc32: 0,
          compressedSize: size,
          size,
          localHeaderOffset: pos,
          dataOffset: pos + 8,
        });
        pos += 8 + size;
      }
      for (const key of storages.keys()) if (!entries.has(key)) fail(`storage ${key} is missing`);
      const list = [...tensorsByStorage(main.v)].map(([ref, views]) => ({ ref, entry: entries.get(ref.key)!, views }));
      list.sort((a, b) => a.entry.dataOffset - b.entry.dataOffset);
      return { up: main.up, root: main.v, storages: list, prefix: '' };
    } catch (err) {
      if (window < src.size && err instanceof CheckpointError && /truncated pickle/.test(err.message)) continue;
      throw err;
    }
  }
}

/** Reads the storages of a legacy file through JS (no CRCs exist to check). */
function readLegacy(src: ByteSource & { fd?: number }, p: Parsed): unknown {
  if (src.fd !== undefined) {
    const args = nativeArgs(p, src.fd, src.name, { verifyCrc: false });
    return nativeResult(p, src.name, binding.checkpointReadStorages(...args), args);
  }
  const handles: { dispose(): void }[] = [];
  try {
    for (const s of p.storages) {
      const { handle, bytes } = allocStorage(s.ref.numel, s.ref.kind.dtype);
      handles.push(handle as { dispose(): void });
      src.readInto(s.entry.dataOffset, bytes);
    }
  } catch (err) {
    for (const h of handles) h.dispose();
    throw err;
  }
  return finish(p, views(p, handles));
}

function isLegacy(src: ByteSource): boolean {
  if (src.size < 2) return false;
  const b = src.read(0, 2);
  return b[0] === 0x80 && b[1] >= 2 && b[1] <= 5;
}

function finish(p: Parsed, tensors: Map<TensorRef, Tensor>): unknown {
  return p.up.finalize(p.root, (v) => (v instanceof TensorRef ? tensors.get(v) : v));
}

/** A storage's only tensor, when it is the whole storage, contiguous: created in its final shape. */
function wholeShape(s: Parsed['storages'][number]): number[] | null {
  if (s.views.length !== 1) return null;
  const t = s.views[0];
  const numel = t.size.reduce((a, b) => a * b, 1);
  if (t.offset !== 0 || numel !== s.ref.numel) return null;
  for (let i = t.size.length - 1, expect = 1; i >= 0; i--) {
    if (t.size[i] !== 1 && t.stride[i] !== expect) return null;
    expect *= t.size[i];
  }
  return t.size;
}

/** Views of each storage (handles in p.storages order), as PyTorch shares them. */
function views(p: Parsed, handles: unknown[], shaped: (number[] | null)[] = []): Map<TensorRef, Tensor> {
  const tensors = new Map<TensorRef, Tensor>();
  p.storages.forEach((s, i) => {
    if (shaped[i]) tensors.set(s.views[0], new Tensor(handles[i]));
    else for (const t of s.views) tensors.set(t, viewOf(handles[i], t.size, t.stride, t.offset));
  });
  return tensors;
}

const READ_THREADS =
  Number(process.env.TORCHLINE_CKPT_THREADS) ||
  Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));

/** Native batch read (file sources, stored entries): file -> tensor memory on a few threads. */
function nativeArgs(p: Parsed, fd: number, name: string, options: LoadOptions): unknown[] {
  const st = p.storages;
  return [
    fd,
    st.map((s) => s.entry.dataOffset),
    st.map((s) => s.entry.size),
    st.map((s) => s.ref.kind.dtype),
    options.verifyCrc === false ? null : st.map((s) => s.entry.crc32),
    READ_THREADS,
    name,
    st.map(wholeShape),
  ];
}

function nativeResult(p: Parsed, name: string, r: { handles: unknown[]; badCrc: number }, args: unknown[]): unknown {
  if (r.badCrc >= 0) {
    for (const h of r.handles) (h as { dispose(): void }).dispose();
    const e = p.storages[r.badCrc].entry;
    throw new CheckpointError(`${name}: corrupt zip: CRC-32 mismatch in '${e.name}'; the file is damaged`, {
      file: name,
    });
  }
  return finish(p, views(p, r.handles, args[7] as (number[] | null)[]));
}

function readArchive(zip: ZipReader, options: LoadOptions, fd?: number, parsed?: Parsed): unknown {
  const p = parsed ?? parseArchive(zip, options);
  if (fd !== undefined && p.storages.every((s) => s.entry.method === 0)) {
    const args = nativeArgs(p, fd, zip.source.name, options);
    return nativeResult(p, zip.source.name, binding.checkpointReadStorages(...args), args);
  }
  // Buffers and deflated entries: one storage at a time through JS.
  const handles: { dispose(): void }[] = [];
  try {
    for (const s of p.storages) {
      const { handle, bytes } = allocStorage(s.ref.numel, s.ref.kind.dtype);
      handles.push(handle as { dispose(): void });
      zip.readInto(s.entry, bytes, options);
    }
  } catch (err) {
    for (const h of handles) h.dispose();
    throw err;
  }
  return finish(p, views(p, handles));
}

/** Names the file in a CheckpointError that does not yet. */
function attachFile(err: unknown, file: string): void {
  if (!(err instanceof CheckpointError)) return;
  if (!err.message.startsWith(file)) err.message = `${file}: ${err.message}`;
  err.file ??= file;
}

/**
 * Reads a torch.save file (path or bytes). Tensors load on the CPU as
 * torchline Tensors; OrderedDicts (state_dicts) become Maps, dicts with
 * string keys plain objects, tuples frozen arrays.
 */
export function load(file: string | Uint8Array, options: LoadOptions = {}): any {
  const source: ByteSource & { fd?: number } = typeof file === 'string' ? fileSource(file) : bufferSource(file);
  try {
    if (isLegacy(source)) return readLegacy(source, parseLegacy(source));
    return readArchive(new ZipReader(source), options, source.fd);
  } catch (err) {
    if (typeof file === 'string') attachFile(err, file);
    throw err;
  } finally {
    source.close();
  }
}

/**
 * load() with the storage reads (and CRC-32 checks) on a native I/O thread,
 * so the JS thread stays free while a big checkpoint loads.
 */
export async function loadAsync(file: string, options: LoadOptions = {}): Promise<any> {
  const source = fileSource(file);
  try {
    if (isLegacy(source)) return readLegacy(source, parseLegacy(source));
    const zip = new ZipReader(source);
    const p = parseArchive(zip, options);
    if (!p.storages.every((s) => s.entry.method === 0)) return readArchive(zip, options, undefined, p);
    const args = nativeArgs(p, source.fd, file, options);
    return nativeResult(p, file, await binding.checkpointReadStoragesAsync(...args), args);
  } catch (err) {
    attachFile(err, file);
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
  /** fsync the file and its folder (default true); see atomicWriteWith. */
  durable?: boolean;
}

/** The pickle of `value` and the tensors it names, in storage-key order. */
function pickleValue(value: unknown, options: SaveOptions): { prefix: string; pkl: Buffer; order: Tensor[] } {
  const prefix = `${options.archiveName ?? 'archive'}/`;
  if (!/^[A-Za-z0-9_.-]+\/$/.test(prefix) || prefix.startsWith('.'))
    throw new TypeError(`bad archiveName ${options.archiveName}`);
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
  return { prefix, pkl: pickler.dump(value), order };
}

/** The zip around a pickle; `data(i)` gives tensor i's bytes (and CRC-32 when known). */
function assemble(
  sink: ByteSink,
  { prefix, pkl, order }: { prefix: string; pkl: Buffer; order: Tensor[] },
  options: SaveOptions,
  data: (i: number) => { bytes: Uint8Array; crc?: number },
): void {
  const zip = new ZipWriter(sink, { zip64: options.zip64 });
  zip.add(`${prefix}data.pkl`, pkl);
  zip.add(`${prefix}byteorder`, Buffer.from('little'));
  for (let i = 0; i < order.length; i++) {
    const { bytes, crc } = data(i);
    if (crc === undefined) zip.add(`${prefix}data/${i}`, bytes);
    else zip.addWithCrc(`${prefix}data/${i}`, crc, [bytes]);
  }
  zip.add(`${prefix}version`, Buffer.from('3\n'));
  zip.finish();
}

function writeArchive(sink: ByteSink, value: unknown, options: SaveOptions): void {
  const p = pickleValue(value, options);
  // Written from each tensor's own memory (no copy for contiguous CPU tensors).
  assemble(sink, p, options, (i) => ({ bytes: bytesOf(p.order[i]) }));
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
  atomicWriteWith(path, (sink) => writeArchive(sink, value, options), { durable: options.durable });
}

/**
 * save() that keeps the JS thread free: the tensors are copied (with their
 * CRC-32s) on torchline's step executor, so the copy sees every step queued
 * before the call and none queued after it; the file is then written on
 * libuv's pool. Non-tensor values are taken at the call. The copies cost the
 * tensors' memory until the write completes.
 */
export async function saveAsync(path: string, value: unknown, options: SaveOptions = {}): Promise<void> {
  await atomicWriteChunks(path, await snapshotArchive(value, options), { durable: options.durable });
}

/** The file's bytes as chunks, from a snapshot of the tensors (saveAsync without the write). */
export async function snapshotArchive(value: unknown, options: SaveOptions = {}): Promise<Uint8Array[]> {
  const p = pickleValue(value, options);
  const snaps: [ArrayBuffer, number][] = await binding.checkpointSnapshotAsync(p.order.map((t) => t.handle));
  const sink = chunkSink();
  assemble(sink, p, options, (i) => ({ bytes: new Uint8Array(snaps[i][0]), crc: snaps[i][1] }));
  return sink.chunks;
}
