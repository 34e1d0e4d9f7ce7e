// CRC-32 of the zip format. The addon's (carry-less multiply folding, ~6 GB/s
// here) when it is there, else Node's zlib.crc32 (~2 GB/s).
import * as zlib from 'node:zlib';
import { binding } from '../native';

export const crc32: (data: Uint8Array, prev?: number) => number =
  typeof binding.checkpointCrc32 === 'function'
    ? (data, prev = 0) => binding.checkpointCrc32(data, prev)
    : (data, prev = 0) => zlib.crc32(data, prev) >>> 0;
