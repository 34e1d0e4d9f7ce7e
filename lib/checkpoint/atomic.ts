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
export function atomicWriteWith(
  file: string,
  write: (sink: ByteSink) => void,
  options: { durable?: boolean } = {},
): void {
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

/** atomicWriteWith's asynchronous twin for data already in memory (libuv's pool does the I/O). */
export async function atomicWriteChunks(
  file: string,
  chunks: Uint8Array[],
  options: { durable?: boolean } = {},
): Promise<void> {
  const durable = options.durable ?? true;
  const tmp = tempName(file);
  const fh = await fs.promises.open(tmp, 'wx', 0o644);
  let ok = false;
  try {
    // Small chunks (zip headers) are merged so the pool does few big writes.
    let small: Uint8Array[] = [];
    const writeAll = async (c: Uint8Array) => {
      for (let off = 0; off < c.byteLength; ) off += (await fh.write(c, off, c.byteLength - off)).bytesWritten;
    };
    const flush = async () => {
      if (small.length) await writeAll(Buffer.concat(small));
      small = [];
    };
    for (const c of chunks) {
      if (c.byteLength < 1 << 16) small.push(c);
      else {
        await flush();
        await writeAll(c);
      }
    }
    await flush();
    if (durable) await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await fs.promises.rm(tmp, { force: true });
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  if (durable) fsyncDir(path.dirname(path.resolve(file)));
}
