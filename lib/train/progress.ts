// Progress for a training epoch, drawn by the shared ProgressLine.
import { ProgressLine } from '../progress';

export interface ProgressState {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number;
  imgPerSec: number;
}

const fmtTime = (s: number) =>
  Number.isFinite(s) ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : '?';

/** Training progress (Trainer.fit's `progress` option): a bar with loss, throughput and ETA. */
export class Progress {
  private readonly line: ProgressLine;
  private epochStart = Date.now();

  /** `plainEveryMs`: how often a non-TTY gets a line (default 10 s, or TORCHLINE_PROGRESS_MS). */
  constructor(
    out: NodeJS.WriteStream = process.stderr,
    plainEveryMs = Number(process.env.TORCHLINE_PROGRESS_MS ?? 10_000),
  ) {
    this.line = new ProgressLine({ out, plainEveryMs });
  }

  update(s: ProgressState): void {
    const elapsed = (Date.now() - this.epochStart) / 1000;
    const remaining = s.batch > 0 && s.batches > 0 ? ((s.batches - s.batch) * elapsed) / s.batch : NaN;
    const text = `epoch ${s.epoch + 1}/${s.epochs} ${s.batch}/${s.batches || '?'} loss ${s.loss.toFixed(4)} ${s.imgPerSec.toFixed(1)} img/s ETA ${fmtTime(remaining)}`;
    this.line.show(text, s.batches ? s.batch / s.batches : 0);
  }

  /** Call at the start of each epoch: the ETA is measured from here. */
  startEpoch(): void {
    this.epochStart = Date.now();
  }

  /** Ends the live line; prints `line` (an epoch summary) on its own line. */
  done(line: string): void {
    this.line.end(line);
  }
}
