// A folder of epoch checkpoints: names them, keeps the last K plus the best
// by a metric, and hands each new file to a hook (the storage upload queue).
//
// The file list is the folder itself (names are `<prefix>-epoch-NNNN.pth`);
// metrics live in a small JSON index written atomically next to them. A crash
// between the two writes leaves a checkpoint without a metric, never an index
// entry without its file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteChunks, atomicWriteFile, isTempName, sweepTempFiles } from './atomic';
import { save as torchSave, snapshotArchive, SaveOptions } from './torch-save';

export interface CheckpointInfo {
  epoch: number;
  path: string;
  /** The metric given to save(), if any. */
  metric?: number;
}

export interface CheckpointManagerOptions {
  dir: string;
  /** Keep the newest K checkpoints (default 2; Infinity keeps all). */
  keepLast?: number;
  /** Also keep the best N by metric (default 1). */
  keepBest?: number;
  /** 'max' (accuracy, the default) or 'min' (loss). */
  mode?: 'max' | 'min';
  /** File name prefix (default 'checkpoint'). */
  prefix?: string;
  /**
   * Called with each saved file once it is complete and renamed into place,
   * e.g. `(p) => uploadQueue.add(p)`. A returned promise is tracked: idle()
   * waits for it. Pruning may later delete the file; an uploader should open
   * it at once (an open file survives its deletion on POSIX).
   */
  onSaved?: (path: string, info: CheckpointInfo) => void | Promise<void>;
}

const INDEX = 'checkpoints.json';

export class CheckpointManager {
  readonly dir: string;
  readonly keepLast: number;
  readonly keepBest: number;
  readonly mode: 'max' | 'min';
  readonly prefix: string;
  private readonly onSaved?: CheckpointManagerOptions['onSaved'];
  private readonly pending = new Set<Promise<void>>();
  private readonly errors: unknown[] = [];
  private readonly re: RegExp;

  constructor(options: CheckpointManagerOptions) {
    this.dir = options.dir;
    this.keepLast = options.keepLast ?? 2;
    this.keepBest = options.keepBest ?? 1;
    this.mode = options.mode ?? 'max';
    this.prefix = options.prefix ?? 'checkpoint';
    this.onSaved = options.onSaved;
    if (!(this.keepLast >= 1)) throw new RangeError('keepLast must be >= 1 (the newest checkpoint is always kept)');
    if (!(this.keepBest >= 0)) throw new RangeError('keepBest must be >= 0');
    if (!/^[A-Za-z0-9_.-]+$/.test(this.prefix) || this.prefix.startsWith('.'))
      throw new TypeError(`bad prefix '${this.prefix}'`);
    this.re = new RegExp(`^${this.prefix.replace(/[.]/g, '\\.')}-epoch-(\\d+)\\.pth$`);
    fs.mkdirSync(this.dir, { recursive: true });
    sweepTempFiles(this.dir);
  }

  /** The file name for an epoch. */
  pathFor(epoch: number): string {
    return path.join(this.dir, `${this.prefix}-epoch-${String(epoch).padStart(4, '0')}.pth`);
  }

  private readIndex(): Record<string, number> {
    try {
      const v = JSON.parse(fs.readFileSync(path.join(this.dir, INDEX), 'utf8'));
      return v && typeof v === 'object' && v.metrics && typeof v.metrics === 'object' ? v.metrics : {};
    } catch {
      return {};
    }
  }

  /** Complete checkpoints in the folder, oldest epoch first. */
  list(): CheckpointInfo[] {
    const metrics = this.readIndex();
    const out: CheckpointInfo[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      if (isTempName(name)) continue;
      const m = this.re.exec(name);
      if (!m) continue;
      const info: CheckpointInfo = { epoch: Number(m[1]), path: path.join(this.dir, name) };
      if (typeof metrics[name] === 'number') info.metric = metrics[name];
      out.push(info);
    }
    return out.sort((a, b) => a.epoch - b.epoch);
  }

  /** The newest checkpoint, or undefined. */
  latest(): CheckpointInfo | undefined {
    const all = this.list();
    return all[all.length - 1];
  }

  /** The best checkpoint by metric, or undefined when none has one. */
  best(): CheckpointInfo | undefined {
    return this.ranked(this.list())[0];
  }

  private ranked(all: CheckpointInfo[]): CheckpointInfo[] {
    const sign = this.mode === 'max' ? -1 : 1;
    return all
      .filter((c) => c.metric !== undefined && !Number.isNaN(c.metric))
      .sort((a, b) => sign * (a.metric! - b.metric!) || b.epoch - a.epoch);
  }

  /**
   * Saves `value` (torch.save format) as the checkpoint of `epoch`, records
   * `metric`, prunes, then calls onSaved. Returns the file's info.
   */
  save(epoch: number, value: unknown, options: { metric?: number } & SaveOptions = {}): CheckpointInfo {
    const file = this.checkEpoch(epoch);
    torchSave(file, value, options);
    return this.saved(epoch, file, options.metric);
  }

  /**
   * save() off the JS thread (see checkpoint.saveAsync: tensors are copied on
   * the step executor, in order with queued steps). Saves of one manager
   * complete in call order.
   */
  saveAsync(epoch: number, value: unknown, options: { metric?: number } & SaveOptions = {}): Promise<CheckpointInfo> {
    const file = this.checkEpoch(epoch);
    const chunks = snapshotArchive(value, options); // queued on the step executor now
    // Serialized: a later epoch is never renamed into place (and pruned against) before an earlier one.
    const done = this.chain.then(async () => {
      await atomicWriteChunks(file, await chunks, { durable: options.durable });
      return this.saved(epoch, file, options.metric);
    });
    this.chain = done.then(
      () => undefined,
      () => undefined,
    );
    return done;
  }
  private chain: Promise<void> = Promise.resolve();

  private checkEpoch(epoch: number): string {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError('epoch must be a non-negative integer');
    return this.pathFor(epoch);
  }

  private saved(epoch: number, file: string, metric: number | undefined): CheckpointInfo {
    const info: CheckpointInfo = { epoch, path: file };
    const metrics = this.readIndex();
    if (metric !== undefined) {
      info.metric = metric;
      metrics[path.basename(file)] = metric;
    } else delete metrics[path.basename(file)];
    this.prune(metrics);
    if (this.onSaved) {
      try {
        const r = this.onSaved(file, info);
        if (r && typeof (r as Promise<void>).then === 'function') {
          const p: Promise<void> = (r as Promise<void>)
            .catch((err) => void this.errors.push(err))
            .finally(() => this.pending.delete(p));
          this.pending.add(p);
        }
      } catch (err) {
        this.errors.push(err);
      }
    }
    return info;
  }

  /** Deletes what neither the last K nor the best N keep; rewrites the index. */
  private prune(metrics: Record<string, number>): void {
    const all = this.list().map((c) => {
      const m = metrics[path.basename(c.path)];
      return typeof m === 'number' ? { ...c, metric: m } : { ...c, metric: undefined };
    });
    const keep = new Set<string>();
    for (const c of all.slice(-this.keepLast)) keep.add(c.path);
    for (const c of this.ranked(all).slice(0, this.keepBest)) keep.add(c.path);
    const kept: Record<string, number> = {};
    for (const c of all) {
      if (keep.has(c.path)) {
        if (c.metric !== undefined) kept[path.basename(c.path)] = c.metric;
      }
    }
    // Index first: a crash before the deletions leaves extra files, not lost metrics.
    atomicWriteFile(path.join(this.dir, INDEX), JSON.stringify({ metrics: kept }, null, 1) + '\n');
    for (const c of all) if (!keep.has(c.path)) fs.rmSync(c.path, { force: true });
  }

  /** Waits for onSaved promises; throws the first error a hook raised. */
  async idle(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.errors.length) {
      const err = this.errors.shift();
      this.errors.length = 0;
      throw err;
    }
  }
}
