// Content checks against GCS object metadata. MD5 (native, ~600 MB/s) is used
// when the object has one; composite objects only carry CRC32C (JS, ~110 MB/s).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { CRC32C } from '@google-cloud/storage';

export interface ExpectedHashes {
  md5Hash?: string;
  crc32c?: string;
}

export class ContentHasher {
  readonly algorithm: 'md5' | 'crc32c' | 'none';
  private md5?: crypto.Hash;
  private crc?: CRC32C;
  bytes = 0;
  constructor(
    readonly expected: ExpectedHashes,
    prefer?: 'md5' | 'crc32c',
  ) {
    const useCrc = prefer === 'crc32c' ? !!expected.crc32c : !expected.md5Hash && !!expected.crc32c;
    this.algorithm = useCrc ? 'crc32c' : expected.md5Hash ? 'md5' : 'none';
    if (this.algorithm === 'md5') this.md5 = crypto.createHash('md5');
    if (this.algorithm === 'crc32c') this.crc = new CRC32C();
  }
  update(buf: Uint8Array): void {
    this.bytes += buf.length;
    this.md5?.update(buf);
    this.crc?.update(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  }
  /** The base64 digest computed so far (empty for 'none'). */
  digest(): string {
    if (this.md5) return this.md5.digest('base64');
    if (this.crc) return this.crc.toString();
    return '';
  }
  /** True when the digest equals the expected one (always true for 'none'). */
  matches(): boolean {
    if (this.algorithm === 'none') return true;
    const want = this.algorithm === 'md5' ? this.expected.md5Hash : this.expected.crc32c;
    return this.digest() === want;
  }
}

/** Hashes a local file (or its first `length` bytes) into a ContentHasher. */
export async function hashFile(file: string, hasher: ContentHasher, length = Infinity): Promise<ContentHasher> {
  if (length <= 0) return hasher;
  const stream = fs.createReadStream(file, length === Infinity ? {} : { start: 0, end: length - 1 });
  for await (const chunk of stream) hasher.update(chunk as Buffer);
  return hasher;
}

/** MD5 and CRC32C (both base64) of a local file, in one read. */
export async function fileDigests(file: string): Promise<{ md5Hash: string; crc32c: string; size: number }> {
  const md5 = crypto.createHash('md5');
  const crc = new CRC32C();
  let size = 0;
  for await (const chunk of fs.createReadStream(file)) {
    md5.update(chunk as Buffer);
    crc.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { md5Hash: md5.digest('base64'), crc32c: crc.toString(), size };
}
