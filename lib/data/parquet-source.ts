// Byte access to Parquet part files, local or on GCS, and the Parquet library
// itself. hyparquet (pure JS, with hyparquet-compressors for snappy, gzip,
// zstd, brotli and lz4) does the parsing; all I/O is ours: one footer read per
// file and one byte-range read per row group, retried as lib/storage retries.
import * as fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { Storage } from '@google-cloud/storage';
import type { AsyncBuffer, Compressors, FileMetaData } from 'hyparquet';
import { toStorageError } from '../storage/client';
import { openMedia } from '../storage/http';
import { withRetries } from '../storage/retry';

export type { FileMetaData };

export interface ParquetLib {
  parquetMetadataAsync: typeof import('hyparquet').parquetMetadataAsync;
  parquetRead: typeof import('hyparquet').parquetRead;
  compressors: Compressors;
}

// hyparquet is ESM-only and this package compiles to CommonJS. Node >= 20.19
// require()s ES modules; older Node 20 needs a real dynamic import, which tsc
// would turn into require() if written as import(): hence the Function.
const esmImport = new Function('url', 'return import(url)') as (url: string) => Promise<any>;
async function loadEsm(name: string): Promise<any> {
  try {
    return require(name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw err;
    return esmImport(pathToFileURL(require.resolve(name)).href);
  }
}
let lib: Promise<ParquetLib> | undefined;

export function parquetLib(): Promise<ParquetLib> {
  lib ??= (async () => {
    const [hp, hc] = await Promise.all([loadEsm('hyparquet'), loadEsm('hyparquet-compressors')]);
    return { parquetMetadataAsync: hp.parquetMetadataAsync, parquetRead: hp.parquetRead, compressors: hc.compressors };
  })();
  return lib;
}

/** Where a part file's bytes are: a local path or a GCS object. */
export interface ByteSource {
  /** `gs://bucket/object` or `file:///abs/path`. */
  readonly uri: string;
  readonly size: number;
  /** Bytes [start, end) of the file. */
  read(start: number, end: number): Promise<Uint8Array>;
}

export function localSource(file: string, size: number, uri: string): ByteSource {
  return {
    uri,
    size,
    async read(start, end) {
      const fh = await fs.promises.open(file, 'r');
      try {
        const buf = Buffer.allocUnsafe(end - start);
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
          if (bytesRead === 0)
            throw new Error(`${file}: file ended at ${start + got}, expected ${end} bytes (changed while reading?)`);
          got += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
}

export interface GcsSourceOptions {
  storage: Storage;
  /** Retries after the first attempt (default 6, as lib/storage's withRetries). */
  maxRetries?: number;
  /** Pins the object generation listed, so a rewrite mid-epoch fails instead of mixing versions. */
  generation?: string;
}

export function gcsSource(bucket: string, name: string, size: number, opts: GcsSourceOptions): ByteSource {
  const uri = `gs://${bucket}/${name}`;
  return {
    uri,
    size,
    async read(start, end) {
      try {
        return await withRetries(
          async () => {
            const { res } = await openMedia(opts.storage, {
              bucket,
              name,
              generation: opts.generation,
              start,
              end: end - 1,
            });
            const chunks: Buffer[] = [];
            for await (const c of res) chunks.push(c as Buffer);
            if (!res.complete)
              throw Object.assign(new Error('connection closed before the body ended'), { code: 'ECONNRESET' });
            let buf = Buffer.concat(chunks);
            // A server that ignores Range sends the whole object: keep the asked-for slice.
            if (res.statusCode === 200) buf = buf.subarray(start, end);
            // A cut-short body that still ended cleanly: retry it like a reset.
            if (buf.length !== end - start)
              throw Object.assign(new Error(`short read: ${buf.length} of ${end - start} bytes`), {
                code: 'ECONNRESET',
              });
            return buf;
          },
          { maxRetries: opts.maxRetries ?? 6 },
        );
      } catch (err) {
        throw toStorageError(err, `reading bytes ${start}-${end - 1} of ${uri}`);
      }
    },
  };
}

function toArrayBuffer(u: Uint8Array): ArrayBuffer {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength && u.buffer instanceof ArrayBuffer
    ? u.buffer
    : (u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer);
}

/** The whole file as hyparquet's AsyncBuffer (footer reads). */
export function asyncBufferOf(src: ByteSource): AsyncBuffer {
  return {
    byteLength: src.size,
    slice: async (s: number, e?: number) => toArrayBuffer(await src.read(s, e ?? src.size)),
  };
}

/**
 * An AsyncBuffer over one range already in memory: hyparquet's reads of a
 * row group's column chunks are served from it with no further I/O.
 */
export function rangeBuffer(src: ByteSource, start: number, bytes: Uint8Array): AsyncBuffer {
  const ab = toArrayBuffer(bytes);
  return {
    byteLength: src.size,
    slice(s: number, e?: number) {
      const end = e ?? src.size;
      if (s < start || end > start + bytes.length) {
        // Outside what the footer said the row group spans: read it rather than fail.
        return src.read(s, end).then(toArrayBuffer);
      }
      return ab.slice(s - start, end - start);
    },
  };
}

/** Reads and parses a part file's footer (one read of its last 64 KiB, a second only for larger footers). */
export async function readFooter(src: ByteSource): Promise<FileMetaData> {
  if (src.size < 12) throw new Error(`${src.uri} is not a Parquet file (${src.size} bytes)`);
  const { parquetMetadataAsync } = await parquetLib();
  try {
    return await parquetMetadataAsync(asyncBufferOf(src), { initialFetchSize: Math.min(src.size, 64 * 1024) });
  } catch (err) {
    const msg = (err as Error).message;
    if (/PAR1/.test(msg)) throw new Error(`${src.uri} is not a Parquet file (no PAR1 magic at its end)`);
    throw new Error(`${src.uri}: cannot read the Parquet footer: ${msg}`);
  }
}
