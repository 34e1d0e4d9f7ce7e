import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { Tensor } from '../../lib';
import { isTuple } from '../../lib/checkpoint';

import { PYTHON } from '../support/peer';

export { PYTHON };
export const PEER = path.join(__dirname, 'peer.py');

/** Runs peer.py; returns its last stdout line parsed as JSON. */
export function runPeer(cmd: string, dir: string): any {
  const r = spawnSync(PYTHON, [PEER, cmd, dir], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`peer.py ${cmd} failed (${r.status}):\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

// One temporary-folder helper for every test (test/support/peer.ts).
export { tempDir as tmpDir } from '../support/peer';

export interface TensorDesc {
  shape: number[];
  dtype: string;
  sha256: string;
}

/** The same description peer.py computes: shape, dtype, sha256 of the row-major bytes. */
export function describeTensor(t: Tensor): TensorDesc {
  const a = t.toTypedArray();
  const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return { shape: t.shape, dtype: t.dtype, sha256: createHash('sha256').update(bytes).digest('hex') };
}

export function manifest(sd: ReadonlyMap<string, Tensor>): [string, TensorDesc][] {
  return [...sd].map(([k, t]) => [k, describeTensor(t)]);
}

/** A JS value in peer.py's `jsonable` shape, to compare with what Python loaded. */
export function jsonable(v: unknown): unknown {
  if (v instanceof Tensor) return { tensor: describeTensor(v) };
  if (v instanceof Map) return { odict: [...v].map(([k, x]) => [jsonable(k), jsonable(x)]) };
  if (isTuple(v)) return { tuple: v.map(jsonable) };
  if (Array.isArray(v)) return v.map(jsonable);
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') return Number.isSafeInteger(v) ? { int: String(v) } : { float: v };
  if (v && typeof v === 'object') return { dict: Object.entries(v).map(([k, x]) => [k, jsonable(x)]) };
  return v ?? null;
}
