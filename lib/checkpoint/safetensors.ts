// safetensors (Hugging Face): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?},
// then the raw little-endian data. No code paths at all, but the header is
// still hostile input: every offset, size and overlap is checked before a
// byte is read, as the reference implementation does.
import { Tensor, DType } from '../tensor';
import { allocStorage, viewOf, bytesOf } from './native-io';
import { CheckpointError } from './errors';
import { ByteSource, bufferSource, fileSource, memorySink, ByteSink } from './zip';
import { atomicWriteWith } from './atomic';
import type { StateDict } from './torch-save';

const MAX_HEADER = 100 * 1024 * 1024;

const KINDS: Record<string, { dtype: DType; size: number }> = {
  F32: { dtype: 'float32', size: 4 },
  F64: { dtype: 'float64', size: 8 },
  F16: { dtype: 'float16', size: 2 },
  BF16: { dtype: 'bfloat16', size: 2 },
  I64: { dtype: 'int64', size: 8 },
  I32: { dtype: 'int32', size: 4 },
  I16: { dtype: 'int16', size: 2 },
  I8: { dtype: 'int8', size: 1 },
  U8: { dtype: 'uint8', size: 1 },
  BOOL: { dtype: 'bool', size: 1 },
};
const CODE_OF = new Map<DType, string>(Object.entries(KINDS).map(([c, k]) => [k.dtype, c]));

interface Entry {
  name: string;
  code: string;
  shape: number[];
  begin: number;
  end: number;
}

function parseHeader(src: ByteSource): { entries: Entry[]; metadata: Record<string, string>; dataStart: number } {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${src.name}: ${msg}`, { file: src.name });
  };
  if (src.size < 8) fail('not a safetensors file (shorter than 8 bytes)');
  const n = src.read(0, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER)) fail(`safetensors header length ${n} is too large (corrupt or not safetensors)`);
  const hlen = Number(n);
  if (8 + hlen > src.size) fail(`truncated safetensors file: header of ${hlen} bytes, file of ${src.size}`);
  const text = src.read(8, hlen).toString('utf8');
  if (!text.startsWith('{')) fail('safetensors header is not a JSON object');
  let header: any;
  try {
    header = JSON.parse(text);
  } catch (err) {
    fail(`safetensors header is not valid JSON: ${(err as Error).message}`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) fail('safetensors header is not a JSON object');
  const dataStart = 8 + hlen;
  const dataLen = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, v] of Object.entries<any>(header)) {
    if (name === '__metadata__') {
      if (!v || typeof v !== 'object' || Array.isArray(v)) fail('__metadata__ must be an object of strings');
      for (const [k, x] of Object.entries(v)) {
        if (typeof x !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = x as string;
      }
      continue;
    }
    if (!v || typeof v !== 'object') fail(`tensor '${name}': bad header entry`);
    const kind = KINDS[v.dtype];
    if (!kind) fail(`tensor '${name}': dtype ${JSON.stringify(v.dtype)} is not supported`);
    if (!Array.isArray(v.shape) || !v.shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0))
      fail(`tensor '${name}': bad shape ${JSON.stringify(v.shape)}`);
    const off = v.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0) ||
      off[0] > off[1]
    )
      fail(`tensor '${name}': bad data_offsets ${JSON.stringify(off)}`);
    if (off[1] > dataLen)
      fail(`truncated or corrupt safetensors: tensor '${name}' ends at ${off[1]}, past the ${dataLen} data bytes`);
    let numel = 1;
    for (const d of v.shape) numel *= d;
    if (!Number.isSafeInteger(numel) || numel * kind.size !== off[1] - off[0])
      fail(
        `tensor '${name}': shape [${v.shape}] of ${v.dtype} needs ${numel * kind.size} bytes, data_offsets give ${off[1] - off[0]}`,
      );
    entries.push({ name, code: v.dtype, shape: v.shape, begin: off[0], end: off[1] });
  }
  // The data must be covered exactly once: no overlap (aliasing), no hidden bytes.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at)
      fail(
        e.begin < at
          ? `tensor '${e.name}' overlaps another tensor's data`
          : `a gap of ${e.begin - at} bytes before tensor '${e.name}'`,
      );
    at = e.end;
  }
  if (at !== dataLen) fail(`${dataLen - at} bytes after the last tensor (corrupt safetensors)`);
  return { entries, metadata, dataStart };
}

/** Reads a safetensors file or bytes: the tensors in header order, and `__metadata__`. */
export function loadWithMetadata(file: string | Uint8Array): { tensors: StateDict; metadata: Record<string, string> } {
  const src = typeof file === 'string' ? fileSource(file) : bufferSource(file);
  const tensors: StateDict = new Map();
  try {
    const { entries, metadata, dataStart } = parseHeader(src);
    for (const e of entries) {
      const kind = KINDS[e.code];
      const numel = (e.end - e.begin) / kind.size;
      // Read straight into the tensor's memory.
      const { handle, bytes } = allocStorage(numel, kind.dtype);
      src.readInto(dataStart + e.begin, bytes);
      const stride = new Array<number>(e.shape.length);
      for (let i = e.shape.length - 1, st = 1; i >= 0; i--) (stride[i] = st), (st *= e.shape[i]);
      tensors.set(e.name, viewOf(handle, e.shape, stride, 0));
    }
    return { tensors, metadata };
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    src.close();
  }
}

export function load(file: string | Uint8Array): StateDict {
  return loadWithMetadata(file).tensors;
}

function write(
  sink: ByteSink,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw new TypeError(`metadata.${k} must be a string`);
    header.__metadata__ = metadata;
  }
  let at = 0;
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new TypeError("'__metadata__' cannot name a tensor");
    if (seen.has(name)) throw new TypeError(`duplicate tensor name '${name}'`);
    seen.add(name);
    if (!(t instanceof Tensor)) throw new TypeError(`'${name}' is not a Tensor`);
    const code = CODE_OF.get(t.dtype);
    if (!code) throw new TypeError(`'${name}': dtype ${t.dtype} cannot be saved as safetensors`);
    const nbytes = t.nbytes;
    header[name] = { dtype: code, shape: t.shape, data_offsets: [at, at + nbytes] };
    at += nbytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned (as the reference writer does).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const h = Buffer.alloc(8);
  h.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  sink.write(h);
  sink.write(Buffer.from(json, 'utf8'));
  for (const [, t] of list) sink.write(bytesOf(t));
}

export function serialize(
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Buffer {
  const sink = memorySink();
  write(sink, tensors, metadata);
  return sink.toBuffer();
}

/** Writes tensors as a safetensors file, atomically. */
export function save(
  path: string,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  atomicWriteWith(path, (sink) => write(sink, tensors, metadata));
}
