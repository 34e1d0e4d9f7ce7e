// The zip container of PyTorch checkpoints (torch.save since 1.6).
//
// Checkpoints come from anywhere (downloads, buckets, colleagues), so every
// file is treated as hostile. Parsing it in TypeScript rather than C++ is
// deliberate: a bad offset here is a thrown error, never a memory corruption.
// Every size and offset is checked against the file before it is used.
//
// Reading: the central directory (zip64 where torch writes it for files over
// 4 GiB), stored and deflated entries, CRC-32 checked. Writing: stored
// entries whose data starts on a 64-byte boundary (as torch's writer does, so
// storages can be mapped aligned), zip64 only when a size or offset needs it.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { CheckpointError } from './errors';
import { crc32 } from './crc';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

/** Random access to the bytes of a checkpoint: a file or an in-memory buffer. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Exactly `len` bytes at `pos` (the caller has checked the bounds). */
  read(pos: number, len: number): Buffer;
  /** Reads into `target` (the whole of it) from `pos`. */
  readInto(pos: number, target: Uint8Array): void;
  close(): void;
}

export function bufferSource(buf: Uint8Array, name = '<buffer>'): ByteSource {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    name,
    size: b.length,
    read: (pos, len) => b.subarray(pos, pos + len),
    readInto: (pos, target) => {
      target.set(b.subarray(pos, pos + target.byteLength));
    },
    close: () => {},
  };
}

export function fileSource(path: string): ByteSource & { readonly fd: number } {
  const fd = fs.openSync(path, 'r');
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  const readInto = (pos: number, target: Uint8Array) => {
    let done = 0;
    while (done < target.byteLength) {
      // One read() is capped near 2 GiB by the OS; loop.
      const n = fs.readSync(fd, target, done, Math.min(target.byteLength - done, 1 << 30), pos + done);
      if (n === 0)
        throw new CheckpointError(`${path}: file shrank while reading (at byte ${pos + done})`, { file: path });
      done += n;
    }
  };
  return {
    name: path,
    fd,
    size,
    read: (pos, len) => {
      const b = Buffer.allocUnsafe(len);
      readInto(pos, b);
      return b;
    },
    readInto,
    close: () => fs.closeSync(fd),
  };
}

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** Where the entry's bytes start (after its local header). */
  dataOffset: number;
}

function u64(buf: Buffer, at: number, what: string, file: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new CheckpointError(`${file}: corrupt zip: ${what} ${v} is impossible`, { file });
  return Number(v);
}

export class ZipReader {
  readonly source: ByteSource;
  readonly entries = new Map<string, ZipEntry>();

  constructor(source: ByteSource) {
    this.source = source;
    this.parse();
  }

  private fail(msg: string): never {
    throw new CheckpointError(`${this.source.name}: ${msg}`, { file: this.source.name });
  }

  private parse(): void {
    const { size } = this.source;
    if (size < EOCD_SIZE) this.fail(`not a zip checkpoint (${size} bytes is too short; truncated?)`);
    // The end-of-central-directory record sits in the last 22 + comment bytes.
    const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
    const tailPos = size - tailLen;
    const tail = this.source.read(tailPos, tailLen);
    let eocd = -1;
    for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      const head = this.source.read(0, Math.min(4, size));
      if (head.length === 4 && head.readUInt32LE(0) === SIG_LOCAL)
        this.fail('truncated or corrupt zip: no end-of-central-directory record (the file was cut short?)');
      this.fail('not a torch.save checkpoint (neither a zip nor a legacy pickle file)');
    }
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0)
      this.fail('multi-disk zips are not supported');
    const eocdPos = tailPos + eocd;
    if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      // zip64: a locator right before the EOCD points at the zip64 EOCD record.
      if (eocdPos < 20) this.fail('corrupt zip64: no zip64 locator');
      const loc = this.source.read(eocdPos - 20, 20);
      if (loc.readUInt32LE(0) !== SIG_EOCD64_LOCATOR)
        this.fail('corrupt zip64: no zip64 end-of-central-directory locator');
      const recPos = u64(loc, 8, 'zip64 record offset', this.source.name);
      if (recPos + 56 > eocdPos - 20) this.fail('corrupt zip64: record offset out of range');
      const rec = this.source.read(recPos, 56);
      if (rec.readUInt32LE(0) !== SIG_EOCD64) this.fail('corrupt zip64: bad end-of-central-directory record');
      count = u64(rec, 32, 'entry count', this.source.name);
      cdSize = u64(rec, 40, 'central directory size', this.source.name);
      cdOffset = u64(rec, 48, 'central directory offset', this.source.name);
    }
    if (cdOffset + cdSize > eocdPos) this.fail('truncated or corrupt zip: the central directory lies outside the file');
    if (count * 46 > cdSize) this.fail('corrupt zip: entry count does not fit the central directory');
    const cd = this.source.read(cdOffset, cdSize);
    let p = 0;
    const spans: [number, number, string][] = [];
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL)
        this.fail(`corrupt zip: central directory entry ${i} is damaged`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cd.length) this.fail(`corrupt zip: central directory entry ${i} runs past the directory`);
      const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
      // zip64 extra: the 64-bit values of exactly the fields saturated above, in order.
      if (size === U32_MAX || compressedSize === U32_MAX || localHeaderOffset === U32_MAX) {
        let q = p + 46 + nameLen;
        const extraEnd = q + extraLen;
        let found = false;
        while (q + 4 <= extraEnd) {
          const id = cd.readUInt16LE(q);
          const len = cd.readUInt16LE(q + 2);
          if (q + 4 + len > extraEnd) break;
          if (id === 0x0001) {
            let r = q + 4;
            const need =
              (size === U32_MAX ? 8 : 0) +
              (compressedSize === U32_MAX ? 8 : 0) +
              (localHeaderOffset === U32_MAX ? 8 : 0);
            if (len < need) this.fail(`corrupt zip64 extra field for '${name}'`);
            if (size === U32_MAX) (size = u64(cd, r, 'size', this.source.name)), (r += 8);
            if (compressedSize === U32_MAX) (compressedSize = u64(cd, r, 'size', this.source.name)), (r += 8);
            if (localHeaderOffset === U32_MAX) localHeaderOffset = u64(cd, r, 'offset', this.source.name);
            found = true;
            break;
          }
          q += 4 + len;
        }
        if (!found) this.fail(`corrupt zip: '${name}' needs a zip64 extra field and has none`);
      }
      if (flags & 0x1) this.fail(`'${name}' is encrypted; encrypted checkpoints are not supported`);
      if (method !== 0 && method !== 8)
        this.fail(`'${name}' uses zip compression method ${method}; only stored and deflated are supported`);
      if (method === 0 && size !== compressedSize)
        this.fail(`corrupt zip: stored entry '${name}' has two different sizes`);
      if (this.entries.has(name)) this.fail(`corrupt zip: entry '${name}' appears twice`);
      if (localHeaderOffset + 30 > cdOffset)
        this.fail(`truncated or corrupt zip: entry '${name}' starts outside the data area`);
      // One read for the local header and its name (which must repeat the central one).
      const local = this.source.read(localHeaderOffset, Math.min(30 + nameLen, cdOffset - localHeaderOffset));
      if (local.readUInt32LE(0) !== SIG_LOCAL) this.fail(`corrupt zip: the local header of '${name}' is damaged`);
      const dataOffset = localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      if (dataOffset + compressedSize > cdOffset)
        this.fail(
          `truncated or corrupt zip: the data of '${name}' (${compressedSize} bytes at ${dataOffset}) runs past the data area`,
        );
      if (
        local.readUInt16LE(26) !== nameLen ||
        local.length !== 30 + nameLen ||
        !local.subarray(30).equals(cd.subarray(p + 46, p + 46 + nameLen))
      )
        this.fail(`corrupt zip: the local header of '${name}' names another entry`);
      this.entries.set(name, { name, method, crc32: crc, compressedSize, size, localHeaderOffset, dataOffset });
      spans.push([localHeaderOffset, dataOffset + compressedSize, name]);
      p = end;
    }
    // Overlapping entries are how zip bombs and parser-confusion files are built.
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++)
      if (spans[i][0] < spans[i - 1][1])
        this.fail(`corrupt zip: entries '${spans[i - 1][2]}' and '${spans[i][2]}' overlap`);
  }

  get(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) this.fail(`missing entry '${name}'`);
    return e;
  }

  /** The entry's bytes, inflated and CRC-checked. */
  read(entry: ZipEntry, options: { verifyCrc?: boolean } = {}): Buffer {
    const raw = this.source.read(entry.dataOffset, entry.compressedSize);
    let data: Buffer;
    if (entry.method === 0) data = raw;
    else {
      try {
        // Never inflate past the declared size: a lying header cannot balloon memory.
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        this.fail(`corrupt deflate data in '${entry.name}': ${(err as Error).message}`);
      }
      if (data.length !== entry.size)
        this.fail(`corrupt zip: '${entry.name}' inflates to ${data.length} bytes, not ${entry.size}`);
    }
    if (options.verifyCrc !== false) this.checkCrc(entry, data);
    return data;
  }

  /** Reads a stored entry straight into `target` (which must be entry.size bytes). */
  readInto(entry: ZipEntry, target: Uint8Array, options: { verifyCrc?: boolean } = {}): void {
    if (target.byteLength !== entry.size)
      throw new RangeError(`target is ${target.byteLength} bytes, '${entry.name}' is ${entry.size}`);
    if (entry.method !== 0) {
      target.set(this.read(entry, options));
      return;
    }
    this.source.readInto(entry.dataOffset, target);
    if (options.verifyCrc !== false) this.checkCrc(entry, target);
  }

  /** Throws when `data` does not match the entry's CRC-32. */
  checkCrc(entry: ZipEntry, data: Uint8Array): void {
    const crc = crc32(data);
    if (crc !== entry.crc32)
      this.fail(
        `corrupt zip: CRC-32 mismatch in '${entry.name}' (0x${crc.toString(16)} != 0x${entry.crc32.toString(16)}); the file is damaged`,
      );
  }

  close(): void {
    this.source.close();
  }
}

/** Where a ZipWriter's bytes go. */
export interface ByteSink {
  write(chunk: Uint8Array): void;
}

export function fdSink(fd: number): ByteSink {
  return {
    write(chunk) {
      let done = 0;
      while (done < chunk.byteLength) done += fs.writeSync(fd, chunk, done, chunk.byteLength - done);
    },
  };
}

/** Keeps references to the chunks (for data that no one will change: snapshots). */
export function chunkSink(): ByteSink & { chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  return { chunks, write: (chunk) => void chunks.push(chunk) };
}

export function memorySink(): ByteSink & { chunks: Uint8Array[]; toBuffer(): Buffer } {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write(chunk) {
      chunks.push(Buffer.from(chunk)); // a copy: callers may reuse their buffer
    },
    toBuffer: () => Buffer.concat(chunks),
  };
}

interface Written {
  name: Buffer;
  utf8: boolean;
  crc32: number;
  size: number;
  offset: number;
}

export interface ZipWriterOptions {
  /** Data alignment in bytes (torch uses 64). */
  align?: number;
  /** 'auto' writes zip64 fields only where a value needs them; 'always' everywhere (for tests). */
  zip64?: 'auto' | 'always';
}

/** Writes stored (uncompressed) entries, streaming; call finish() once. */
export class ZipWriter {
  private readonly sink: ByteSink;
  private readonly align: number;
  private readonly force64: boolean;
  private offset = 0;
  private readonly written: Written[] = [];
  private readonly names = new Set<string>();
  private finished = false;

  constructor(sink: ByteSink, options: ZipWriterOptions = {}) {
    this.sink = sink;
    this.align = options.align ?? 64;
    this.force64 = options.zip64 === 'always';
  }

  private emit(b: Uint8Array): void {
    if (b.byteLength === 0) return;
    this.sink.write(b);
    this.offset += b.byteLength;
  }

  /** Adds one entry; `parts` are concatenated (so a tensor need not be copied into one buffer). */
  add(name: string, ...parts: Uint8Array[]): void {
    let crc = 0;
    for (const p of parts) crc = crc32(p, crc);
    this.addWithCrc(name, crc, parts);
  }

  /** add() with the CRC-32 already known (computed while the data was copied). */
  addWithCrc(name: string, crc: number, parts: Uint8Array[]): void {
    if (this.finished) throw new Error('ZipWriter: add() after finish()');
    if (this.names.has(name)) throw new Error(`ZipWriter: duplicate entry '${name}'`);
    this.names.add(name);
    let size = 0;
    for (const p of parts) size += p.byteLength;
    const utf8 = /[^\x20-\x7e]/.test(name);
    const nameBuf = Buffer.from(name, utf8 ? 'utf8' : 'latin1');
    const big = this.force64 || size >= U32_MAX;
    const zip64Len = big ? 20 : 0;
    let pad = 0;
    const unpadded = this.offset + 30 + nameBuf.length + zip64Len;
    if (this.align > 1 && unpadded % this.align !== 0) {
      pad = (this.align - ((unpadded + 4) % this.align)) % this.align;
    }
    const padLen = unpadded % this.align !== 0 ? 4 + pad : 0;
    const h = Buffer.alloc(30 + nameBuf.length + zip64Len + padLen);
    h.writeUInt32LE(SIG_LOCAL, 0);
    h.writeUInt16LE(big ? 45 : 20, 4);
    h.writeUInt16LE(utf8 ? 0x800 : 0, 6);
    h.writeUInt16LE(0, 8); // stored
    // time/date 0 (as torch): byte-identical output for identical input
    h.writeUInt32LE(crc, 14);
    h.writeUInt32LE(big ? U32_MAX : size, 18);
    h.writeUInt32LE(big ? U32_MAX : size, 22);
    h.writeUInt16LE(nameBuf.length, 26);
    h.writeUInt16LE(zip64Len + padLen, 28);
    nameBuf.copy(h, 30);
    let q = 30 + nameBuf.length;
    if (big) {
      h.writeUInt16LE(0x0001, q);
      h.writeUInt16LE(16, q + 2);
      h.writeBigUInt64LE(BigInt(size), q + 4);
      h.writeBigUInt64LE(BigInt(size), q + 12);
      q += 20;
    }
    if (padLen) {
      h.writeUInt16LE(0x4246, q); // 'FB': torch's padding field id
      h.writeUInt16LE(pad, q + 2);
      h.fill(0x5a, q + 4, q + 4 + pad);
    }
    const offset = this.offset;
    this.emit(h);
    for (const p of parts) this.emit(p);
    this.written.push({ name: nameBuf, utf8, crc32: crc, size, offset });
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const cdOffset = this.offset;
    for (const w of this.written) {
      const bigSize = this.force64 || w.size >= U32_MAX;
      const bigOff = this.force64 || w.offset >= U32_MAX;
      const extraLen = bigSize || bigOff ? 4 + (bigSize ? 16 : 0) + (bigOff ? 8 : 0) : 0;
      const c = Buffer.alloc(46 + w.name.length + extraLen);
      c.writeUInt32LE(SIG_CENTRAL, 0);
      c.writeUInt16LE(extraLen ? 45 : 20, 4); // made by (MS-DOS attrs, 2.0 / 4.5)
      c.writeUInt16LE(extraLen ? 45 : 20, 6);
      c.writeUInt16LE(w.utf8 ? 0x800 : 0, 8);
      c.writeUInt32LE(w.crc32, 16);
      c.writeUInt32LE(bigSize ? U32_MAX : w.size, 20);
      c.writeUInt32LE(bigSize ? U32_MAX : w.size, 24);
      c.writeUInt16LE(w.name.length, 28);
      c.writeUInt16LE(extraLen, 30);
      c.writeUInt32LE(bigOff ? U32_MAX : w.offset, 42);
      w.name.copy(c, 46);
      let q = 46 + w.name.length;
      if (extraLen) {
        c.writeUInt16LE(0x0001, q);
        c.writeUInt16LE(extraLen - 4, q + 2);
        q += 4;
        if (bigSize) {
          c.writeBigUInt64LE(BigInt(w.size), q);
          c.writeBigUInt64LE(BigInt(w.size), q + 8);
          q += 16;
        }
        if (bigOff) c.writeBigUInt64LE(BigInt(w.offset), q);
      }
      this.emit(c);
    }
    const cdSize = this.offset - cdOffset;
    const n = this.written.length;
    const big = this.force64 || n >= U16_MAX || cdSize >= U32_MAX || cdOffset >= U32_MAX;
    if (big) {
      const recPos = this.offset;
      const r = Buffer.alloc(56 + 20);
      r.writeUInt32LE(SIG_EOCD64, 0);
      r.writeBigUInt64LE(44n, 4);
      r.writeUInt16LE(45, 12);
      r.writeUInt16LE(45, 14);
      r.writeBigUInt64LE(BigInt(n), 24);
      r.writeBigUInt64LE(BigInt(n), 32);
      r.writeBigUInt64LE(BigInt(cdSize), 40);
      r.writeBigUInt64LE(BigInt(cdOffset), 48);
      r.writeUInt32LE(SIG_EOCD64_LOCATOR, 56);
      r.writeBigUInt64LE(BigInt(recPos), 64);
      r.writeUInt32LE(1, 72);
      this.emit(r);
    }
    const e = Buffer.alloc(EOCD_SIZE);
    e.writeUInt32LE(SIG_EOCD, 0);
    e.writeUInt16LE(big ? U16_MAX : n, 8);
    e.writeUInt16LE(big ? U16_MAX : n, 10);
    e.writeUInt32LE(big ? U32_MAX : cdSize, 12);
    e.writeUInt32LE(big ? U32_MAX : cdOffset, 16);
    this.emit(e);
  }
}
