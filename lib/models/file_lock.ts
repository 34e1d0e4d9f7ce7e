// A lock file beside a cache entry, so that the processes of one job (the
// ranks on a host, or hosts sharing a cache over NFS) download a weights file
// once: the first creates `<file>.lock` with O_EXCL and downloads, the others
// wait for the lock to go and then find the file in place. The holder touches
// the lock every few seconds; a lock whose holder died (same host, pid gone)
// or that has not been touched for `staleMs` is broken. Breaking a stale lock
// can race with another waiter doing the same, and then two processes may
// both download: harmless, as each writes its own temp file and the final
// rename is atomic.
import * as fs from 'node:fs';
import * as os from 'node:os';

export interface LockHolder {
  pid: number;
  host: string;
  /** When the holder took the lock (ms since the epoch). */
  since: number;
}

export interface FileLockOptions {
  /** A lock untouched for this long is taken as abandoned (ms, default 60,000). */
  staleMs?: number;
  /** How often a waiter looks again (ms, default 200). */
  pollMs?: number;
  /** Called once when the lock is held by another process and this one starts waiting. */
  onWait?: (holder: LockHolder | undefined) => void;
  signal?: AbortSignal;
}

export interface HeldLock {
  readonly path: string;
  release(): Promise<void>;
}

function readHolder(lockPath: string): LockHolder | undefined {
  try {
    const h = JSON.parse(fs.readFileSync(lockPath, 'utf8'));
    return typeof h?.pid === 'number' && typeof h?.host === 'string' ? h : undefined;
  } catch {
    // Gone, or not yet written by its creator.
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isStale(st: fs.Stats, holder: LockHolder | undefined, staleMs: number): boolean {
  if (Date.now() - st.mtimeMs > staleMs) return true;
  return !!holder && holder.host === os.hostname() && holder.pid !== process.pid && !pidAlive(holder.pid);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(t);
      reject(signal!.reason ?? new Error('aborted'));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Takes the lock at `lockPath`, waiting while another live process holds it. */
export async function acquireFileLock(lockPath: string, options: FileLockOptions = {}): Promise<HeldLock> {
  const staleMs = options.staleMs ?? 60_000;
  const pollMs = options.pollMs ?? 200;
  let told = false;
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    let fd: number | undefined;
    try {
      fd = fs.openSync(lockPath, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fd !== undefined) {
      try {
        fs.writeSync(
          fd,
          JSON.stringify({ pid: process.pid, host: os.hostname(), since: Date.now() } satisfies LockHolder),
        );
      } finally {
        fs.closeSync(fd);
      }
      const ino = fs.statSync(lockPath).ino;
      const beat = setInterval(
        () => {
          const now = new Date();
          fs.utimes(lockPath, now, now, () => {});
        },
        Math.max(50, Math.floor(staleMs / 6)),
      );
      beat.unref();
      return {
        path: lockPath,
        async release() {
          clearInterval(beat);
          // Only our own lock: a waiter may have judged it stale and replaced it.
          const st = await fs.promises.stat(lockPath).catch(() => undefined);
          if (st && st.ino === ino) await fs.promises.rm(lockPath, { force: true });
        },
      };
    }
    const st = await fs.promises.stat(lockPath).catch(() => undefined);
    if (!st) continue;
    const holder = readHolder(lockPath);
    if (isStale(st, holder, staleMs)) {
      // Move it aside first, so that of several waiters only one removes it.
      const aside = `${lockPath}.stale-${process.pid}-${Math.floor(Math.random() * 0xffffffff).toString(16)}`;
      try {
        fs.renameSync(lockPath, aside);
        fs.rmSync(aside, { force: true });
      } catch {
        // Someone else moved it first.
      }
      continue;
    }
    if (!told) {
      told = true;
      options.onWait?.(holder);
    }
    await sleep(pollMs, options.signal);
  }
}
