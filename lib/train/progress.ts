// Progress for a training epoch: a live bar on a TTY, plain periodic log lines
// otherwise (CI logs, files), so output stays readable in both.
export interface ProgressState {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number;
  imgPerSec: number;
}

const fmtTime = (s: number) => (Number.isFinite(s) ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : '?');

export class Progress {
  private lastPlain = 0;
  private readonly tty: boolean;

  /** `plainEveryMs`: how often a non-TTY gets a line (default 10 s, or TORCHLINE_PROGRESS_MS). */
  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly plainEveryMs = Number(process.env.TORCHLINE_PROGRESS_MS ?? 10_000),
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(s: ProgressState): void {
    const elapsed = (Date.now() - this.epochStart) / 1000;
    const remaining = s.batch > 0 && s.batches > 0 ? ((s.batches - s.batch) * elapsed) / s.batch : NaN;
    const text = `epoch ${s.epoch + 1}/${s.epochs} ${s.batch}/${s.batches || '?'} loss ${s.loss.toFixed(4)} ${s.imgPerSec.toFixed(1)} img/s ETA ${fmtTime(remaining)}`;
    if (this.tty) {
      const width = 24;
      const filled = s.batches ? Math.round((s.batch / s.batches) * width) : 0;
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
    } else if (Date.now() - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = Date.now();
      this.out.write(text + '\n');
    }
  }

  private epochStart = Date.now();

  /** Call at the start of each epoch: the ETA is measured from here. */
  startEpoch(): void {
    this.epochStart = Date.now();
  }

  /** Ends the live line; prints `line` (an epoch summary) on its own line. */
  done(line: string): void {
    if (this.tty) this.out.write('\r\x1b[K');
    this.out.write(line + '\n');
  }
}
