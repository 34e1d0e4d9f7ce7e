// TensorBoard scalars without TensorFlow: Event protos (hand-encoded, the
// handful of fields scalars need) in TFRecord framing with masked CRC32C.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CRC32C } from '@google-cloud/storage';

function crc32c(data: Buffer): number {
  const c = new CRC32C();
  c.update(data);
  return c.valueOf() >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15, add a constant. */
export function maskedCrc32c(data: Buffer): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint): Buffer {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}

const field = (num: number, wire: number) => varint((num << 3) | wire);
const lengthDelimited = (num: number, body: Buffer) => Buffer.concat([field(num, 2), varint(body.length), body]);

function encodeEvent(e: {
  wallTime: number;
  step?: number;
  fileVersion?: string;
  scalars?: [string, number][];
}): Buffer {
  const parts: Buffer[] = [];
  const wt = Buffer.alloc(8);
  wt.writeDoubleLE(e.wallTime);
  parts.push(field(1, 1), wt);
  if (e.step !== undefined) parts.push(field(2, 0), varint(e.step));
  if (e.fileVersion) parts.push(lengthDelimited(3, Buffer.from(e.fileVersion)));
  if (e.scalars) {
    const values = e.scalars.map(([tag, value]) => {
      const f = Buffer.alloc(4);
      f.writeFloatLE(value);
      return lengthDelimited(1, Buffer.concat([lengthDelimited(1, Buffer.from(tag)), field(2, 5), f]));
    });
    parts.push(lengthDelimited(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

function frame(data: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  const c1 = Buffer.alloc(4);
  c1.writeUInt32LE(maskedCrc32c(len));
  const c2 = Buffer.alloc(4);
  c2.writeUInt32LE(maskedCrc32c(data));
  return Buffer.concat([len, c1, data, c2]);
}

/** torch.utils.tensorboard.SummaryWriter's scalar half. */
export class SummaryWriter {
  readonly file: string;
  private fd: number | null;

  constructor(logDir: string) {
    fs.mkdirSync(logDir, { recursive: true });
    this.file = path.join(
      logDir,
      `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${os.hostname()}.${process.pid}`,
    );
    this.fd = fs.openSync(this.file, 'a');
    this.write(encodeEvent({ wallTime: Date.now() / 1000, fileVersion: 'brain.Event:2' }));
  }

  addScalar(tag: string, value: number, step: number): void {
    this.addScalars({ [tag]: value }, step);
  }

  /** Several scalars in one event (tags as given, e.g. 'train/loss'). */
  addScalars(values: Record<string, number>, step: number): void {
    const scalars = Object.entries(values).filter(([, v]) => Number.isFinite(v));
    if (scalars.length) this.write(encodeEvent({ wallTime: Date.now() / 1000, step, scalars }));
  }

  private write(event: Buffer): void {
    if (this.fd === null) throw new Error('SummaryWriter is closed');
    fs.writeSync(this.fd, frame(event));
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

export interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Record<string, number>;
}

/** Reads an event file back, checking both CRCs of every record. */
export function readEvents(file: string): DecodedEvent[] {
  const buf = fs.readFileSync(file);
  const events: DecodedEvent[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error(`${file}: truncated record header at ${off}`);
    const lenBuf = buf.subarray(off, off + 8);
    if (buf.readUInt32LE(off + 8) !== maskedCrc32c(lenBuf)) throw new Error(`${file}: bad length CRC at ${off}`);
    const len = Number(lenBuf.readBigUInt64LE());
    const data = buf.subarray(off + 12, off + 12 + len);
    if (data.length !== len || off + 16 + len > buf.length) throw new Error(`${file}: truncated record at ${off}`);
    if (buf.readUInt32LE(off + 12 + len) !== maskedCrc32c(data)) throw new Error(`${file}: bad data CRC at ${off}`);
    events.push(decodeEvent(data));
    off += 16 + len;
  }
  return events;
}

function readVarint(b: Buffer, pos: { i: number }): bigint {
  let shift = 0n;
  let v = 0n;
  for (;;) {
    const byte = b[pos.i++];
    v |= BigInt(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return v;
    shift += 7n;
  }
}

function fields(b: Buffer, on: (num: number, wire: number, value: Buffer | bigint) => void): void {
  const pos = { i: 0 };
  while (pos.i < b.length) {
    const key = Number(readVarint(b, pos));
    const num = key >> 3;
    const wire = key & 7;
    if (wire === 0) on(num, wire, readVarint(b, pos));
    else if (wire === 1) {
      on(num, wire, b.subarray(pos.i, pos.i + 8));
      pos.i += 8;
    } else if (wire === 5) {
      on(num, wire, b.subarray(pos.i, pos.i + 4));
      pos.i += 4;
    } else if (wire === 2) {
      const len = Number(readVarint(b, pos));
      on(num, wire, b.subarray(pos.i, pos.i + len));
      pos.i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

function decodeEvent(b: Buffer): DecodedEvent {
  const e: DecodedEvent = { wallTime: 0, step: 0, scalars: {} };
  fields(b, (num, _w, v) => {
    if (num === 1) e.wallTime = (v as Buffer).readDoubleLE();
    else if (num === 2) e.step = Number(v);
    else if (num === 3) e.fileVersion = (v as Buffer).toString();
    else if (num === 5)
      fields(v as Buffer, (n2, _w2, val) => {
        if (n2 !== 1) return;
        let tag = '';
        let value = NaN;
        fields(val as Buffer, (n3, _w3, x) => {
          if (n3 === 1) tag = (x as Buffer).toString();
          if (n3 === 2) value = (x as Buffer).readFloatLE();
        });
        e.scalars[tag] = value;
      });
  });
  return e;
}
