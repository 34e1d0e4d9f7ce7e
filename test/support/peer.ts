// Runs the Python peer (the project venv's torch / torchvision, same LibTorch as the addon) on a script.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PYTHON: string = require('../../scripts/peer-python.js').PYTHON;

/** Runs `script` with args; returns stdout. Threads match torchline's default (all cores). */
export function runPython(script: string, args: string[] = [], options: { timeoutMs?: number } = {}): string {
  return execFileSync(PYTHON, [script, ...args], {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, OMP_NUM_THREADS: String(os.availableParallelism()) },
  });
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `torchline-${prefix}-`));
}
