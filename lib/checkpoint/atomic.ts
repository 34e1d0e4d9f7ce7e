// Crash-safe checkpoint files: write to a temp file in the same folder, fsync
// it, rename it over the final name, fsync the folder. A reader (or a resumed
// run after a kill or power cut) sees either the previous file or the complete
// new one. Temp names start with '.' and hold '.tmp-<pid>-', so no listing
// mistakes one for a checkpoint, and the ones left by dead processes are
// swept.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ByteSink, fdSink } from './zip';

const TEMP_RE = /^\..+\.tmp-(\d+)-[0-9a-f]+$/;

function tempName(file: string): string {
  const rand = Math.floor(Math.random() * 0xffffffff).toString(16);
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${rand}`);
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    // Some filesystems (and Windows) cannot fsync a directory; the rename is still atomic.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EACCES') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes `file` atomically; `write` streams the content into the sink.
 * `durable: false` skips the two fsyncs: still atomic for a crashed process,
 * but a power cut may then leave the old file or an empty one.
 */
export function atomicWriteWith(file: string, write: (sink: ByteSink) => void, options: { durable?: boolean } = {}): void {
  const durable = options.durable ?? true;
  const tmp = tempName(file);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  let ok = false;
  try {
    write(fdSink(fd));
    if (durable) fs.fsyncSync(fd);
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  if (durable) fsyncDir(path.dirname(path.resolve(file)));
}

export function atomicWriteFile(file: string, data: Uint8Array | string): void {
  atomicWriteWith(file, (sink) => sink.write(typeof data === 'string' ? Buffer.from(data) : data));
}

/** Whether `name` is a temp file of atomicWriteWith. */
export function isTempName(name: string): boolean {
  return TEMP_RE.test(name);
}

/** Removes temp files in `dir` whose writing process no longer exists. */
export function sweepTempFiles(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = TEMP_RE.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (alive) continue;
    fs.rmSync(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}
