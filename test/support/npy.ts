// NumPy .npy files: how tests hand tensors to and from the Python peer
// without depending on torchline's own checkpoint code.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, Tensor, TypedArray } from '../../lib';

const DESCR: Record<string, DType> = {
  '<f4': 'float32',
  '<f8': 'float64',
  '<i8': 'int64',
  '<i4': 'int32',
  '|u1': 'uint8',
  '|b1': 'bool',
};
const DESCR_OF: Partial<Record<DType, string>> = Object.fromEntries(Object.entries(DESCR).map(([k, v]) => [v, k]));

export function writeNpy(file: string, t: Tensor): void {
  const descr = DESCR_OF[t.dtype];
  if (!descr) throw new Error(`npy: unsupported dtype ${t.dtype}`);
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const data = t.toTypedArray();
  fs.writeFileSync(
    file,
    Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]),
  );
}

export function readNpy(file: string): Tensor {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not an npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr': '([^']+)'/.exec(header)![1];
  const dtype = DESCR[descr];
  if (!dtype) throw new Error(`npy: unsupported descr ${descr}`);
  if (/'fortran_order': True/.test(header)) throw new Error('npy: fortran order not supported');
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const body = buf.subarray(start + hlen);
  const copy = new Uint8Array(body.length);
  copy.set(body);
  const Ctor: Record<DType, new (b: ArrayBuffer) => TypedArray> = {
    float32: Float32Array,
    float64: Float64Array,
    int64: BigInt64Array,
    int32: Int32Array,
    uint8: Uint8Array,
    bool: Uint8Array,
    float16: Uint16Array,
    bfloat16: Uint16Array,
    int8: Int8Array,
    int16: Int16Array,
  };
  return Tensor.from(new Ctor[dtype](copy.buffer), shape, { dtype });
}

/** A folder of name.npy files plus index.json (ordered names). */
export function writeTensorDir(dir: string, tensors: Map<string, Tensor>): void {
  fs.mkdirSync(dir, { recursive: true });
  const names = [...tensors.keys()];
  names.forEach((n, i) => writeNpy(path.join(dir, `${i}.npy`), tensors.get(n)!));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify(names));
}

export function readTensorDir(dir: string): Map<string, Tensor> {
  const names: string[] = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  return new Map(names.map((n, i) => [n, readNpy(path.join(dir, `${i}.npy`))]));
}
