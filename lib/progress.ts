// The one progress reporter, for transfers and training epochs alike: a line
// redrawn in place on a TTY, or plain lines at most every `plainEveryMs` when
// the output is a file or a CI log, so both stay readable.

export interface ProgressLineOptions {
  /** Default: process.stderr. */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Without a TTY, the least time between two lines (default 0: every call prints). */
  plainEveryMs?: number;
}

export class ProgressLine {
  readonly tty: boolean;
  private readonly out: NodeJS.WritableStream;
  private readonly plainEveryMs: number;
  private lastPlain = Number.NEGATIVE_INFINITY;

  constructor(options: ProgressLineOptions = {}) {
    const out = options.out ?? process.stderr;
    this.out = out;
    this.tty = Boolean(out.isTTY);
    this.plainEveryMs = options.plainEveryMs ?? 0;
  }

  /** Shows `text`; on a TTY with a bar in front when `fraction` (0..1) is given. */
  show(text: string, fraction?: number): void {
    if (this.tty) {
      const width = 24;
      const filled = fraction === undefined ? 0 : Math.round(Math.min(Math.max(fraction, 0), 1) * width);
      const bar = fraction === undefined ? '' : `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] `;
      this.out.write(`\r${bar}${text}\x1b[K`);
    } else if (Date.now() - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = Date.now();
      this.out.write(text + '\n');
    }
  }

  /** Ends the live line; `line` (a summary) is printed on its own line, TTY or not. */
  end(line?: string): void {
    if (this.tty) this.out.write('\r\x1b[K');
    if (line !== undefined) this.out.write(line + '\n');
  }
}
