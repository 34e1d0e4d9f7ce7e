// How the CLI reports a failure. Faults of the user's input, data or network
// (exit 2) get one line and no stack trace; anything else is torchline's own
// fault (exit 1): one line too, with the stack behind --verbose.
import { ARGUMENT_ERROR_CODES } from '../is';

/** A usage, data or network error: printed as one line, exit code 2. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

// Node's codes for system faults the user can act on (missing paths, permissions, the network),
// and a native addon that does not load here (LibTorch not found: an installation step).
const SYSTEM_FAULT = /^(E[A-Z]+|ERR_SOCKET_.*|ERR_INVALID_URL|UND_ERR_.*|ERR_TORCHLINE_ADDON)$/;
// Library error classes that always describe the input, named rather than imported so that
// printing an error never loads the addon.
const INPUT_FAULT_CLASSES = new Set([
  'StorageError',
  'UploadError',
  'DownloadError',
  'UnsafeObjectNameError',
  'CheckpointError',
  'UnsafePickleError',
]);

/** True when `err` describes the user's input, data or network rather than a torchline bug. */
export function isUserFault(err: unknown): boolean {
  if (err instanceof CliError) return true;
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && (ARGUMENT_ERROR_CODES.has(code) || SYSTEM_FAULT.test(code))) return true;
  for (
    let proto = Object.getPrototypeOf(err);
    proto && proto !== Error.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    if (INPUT_FAULT_CLASSES.has(proto.constructor?.name)) return true;
  }
  return false;
}

/** Runs `fn`; a failure becomes a CliError `${what}: ${message}` (exit 2). For steps that only read user input. */
export async function inputStep<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const line = firstLine(err);
    throw new CliError(line.includes(what) ? line : `${what}: ${line}`, { cause: err });
  }
}

export function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].replace(/^torchline: /, '');
}

/** The line(s) to print for an error and the exit code. */
export function report(err: unknown, verbose: boolean): { text: string; code: number } {
  const stack = err instanceof Error && err.stack ? err.stack : String(err);
  if (isUserFault(err)) return { text: `torchline: ${verbose ? stack : firstLine(err)}`, code: 2 };
  return {
    text: verbose
      ? `torchline: internal error: ${stack}`
      : `torchline: internal error: ${firstLine(err)} (--verbose for details)`,
    code: 1,
  };
}
