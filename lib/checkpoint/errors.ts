// One error class for everything a checkpoint file can get wrong, so callers
// can tell "this file is bad" from a bug or an I/O failure.

export class CheckpointError extends Error {
  /** The file (or '<buffer>') the problem was found in, when known. */
  file?: string;
  constructor(message: string, options?: { cause?: unknown; file?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CheckpointError';
    if (options?.file) this.file = options.file;
  }
}

/** Thrown when a pickle names a global outside the allowlist; nothing it names is run. */
export class UnsafePickleError extends CheckpointError {
  readonly global: string;
  constructor(global: string) {
    super(
      `refusing to load: the pickle asks for the global '${global}', which is not a tensor, storage or plain ` +
        'container; torchline never runs code from a checkpoint (this file may be malicious)',
    );
    this.name = 'UnsafePickleError';
    this.global = global;
  }
}
