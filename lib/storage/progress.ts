// Transfer progress: files, bytes, rate and ETA, shown by the shared ProgressLine.
import { ProgressLine } from '../progress';

export interface TransferProgress {
  label: string;
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
  /** Bytes per second since the start. */
  rate: number;
  /** Seconds left at the current rate (Infinity when unknown). */
  eta: number;
  elapsed: number;
}

function fmtBytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatProgress(p: TransferProgress): string {
  return (
    `${p.label}: ${p.files}/${p.totalFiles} files, ${fmtBytes(p.bytes)}/${fmtBytes(p.totalBytes)}, ` +
    `${fmtBytes(p.rate)}/s, ${(p.files / Math.max(p.elapsed, 1e-3)).toFixed(0)} files/s, ETA ${fmtEta(p.eta)}`
  );
}

/** Counts a transfer's files and bytes and reports them through the shared ProgressLine (or a callback). */
export class TransferMeter {
  private files = 0;
  private bytes = 0;
  private readonly t0 = performance.now();
  private timer?: NodeJS.Timeout;
  private sink?: (p: TransferProgress) => void;
  private line?: ProgressLine;

  constructor(
    private readonly label: string,
    private readonly totalFiles: number,
    private readonly totalBytes: number,
    mode: boolean | ((p: TransferProgress) => void) | undefined,
  ) {
    if (typeof mode === 'function') this.sink = mode;
    // Redrawn in place on a TTY unless turned off; without a TTY (logs) only when asked for.
    else if (mode === true || (mode !== false && process.stderr.isTTY)) {
      const line = new ProgressLine();
      this.line = line;
      this.sink = (p) => line.show(formatProgress(p));
    }
    if (this.sink) {
      this.timer = setInterval(() => this.emit(), this.line && !this.line.tty ? 5000 : 250);
      this.timer.unref();
    }
  }

  add(files: number, bytes: number): void {
    this.files += files;
    this.bytes += bytes;
  }

  snapshot(): TransferProgress {
    const elapsed = (performance.now() - this.t0) / 1000;
    const rate = this.bytes / Math.max(elapsed, 1e-3);
    const left = this.totalBytes - this.bytes;
    const eta = left <= 0 ? 0 : rate > 0 ? left / rate : Infinity;
    return {
      label: this.label,
      files: this.files,
      totalFiles: this.totalFiles,
      bytes: this.bytes,
      totalBytes: this.totalBytes,
      rate,
      eta,
      elapsed,
    };
  }

  private emit(): void {
    this.sink?.(this.snapshot());
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.line) this.line.end(formatProgress(this.snapshot()));
    else this.emit();
    this.sink = undefined;
  }
}
