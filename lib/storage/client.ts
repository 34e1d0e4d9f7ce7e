// The @google-cloud/storage client, configured once: standard credentials
// (GOOGLE_APPLICATION_CREDENTIALS, application-default, metadata server),
// STORAGE_EMULATOR_HOST for a local server. torchline uses it for its
// configuration, auth headers and CRC32C only: the requests themselves go
// through http.ts (see there why), with retries decided in retry.ts, so the
// library's own retry settings would change nothing and are not offered.
// Errors that leave this module carry a status code and a message with any
// credential material removed.
import { Storage } from '@google-cloud/storage';
import type { StorageOptions } from '@google-cloud/storage';

export interface StorageClientOptions {
  /** GCP project (optional for object reads and writes). */
  projectId?: string;
  /** Service-account key file; default: GOOGLE_APPLICATION_CREDENTIALS / application-default. */
  keyFilename?: string;
  /** `http://host:port` of a GCS emulator; default: STORAGE_EMULATOR_HOST. */
  emulatorHost?: string;
  /**
   * Extra options passed through to `new Storage()`: those that shape requests
   * (apiEndpoint, authClient, credentials, userProject, useAuthWithCustomEndpoint)
   * apply; retryOptions do not (each torchline call takes its own retry options).
   */
  storageOptions?: StorageOptions;
}

export { Storage };

/** A Storage client; every torchline storage API takes one as `storage`, or creates one with this. */
export function createStorage(opts: StorageClientOptions = {}): Storage {
  const emulator = opts.emulatorHost ?? process.env.STORAGE_EMULATOR_HOST;
  const so: StorageOptions = {
    ...(opts.projectId ? { projectId: opts.projectId } : {}),
    ...(opts.keyFilename ? { keyFilename: opts.keyFilename } : {}),
    ...opts.storageOptions,
  };
  if (opts.emulatorHost && opts.emulatorHost !== process.env.STORAGE_EMULATOR_HOST) {
    // The client derives its download/upload URLs from STORAGE_EMULATOR_HOST at
    // construction; set it for the constructor only.
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = normaliseEmulatorHost(opts.emulatorHost);
    try {
      return new Storage({ projectId: 'torchline-emulator', ...so });
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  }
  if (emulator) return new Storage({ projectId: 'torchline-emulator', ...so });
  return new Storage(so);
}

function normaliseEmulatorHost(h: string): string {
  return /^https?:\/\//.test(h) ? h.replace(/\/+$/, '') : `http://${h.replace(/\/+$/, '')}`;
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'ECONNABORTED',
]);

/** The status code of a client error, or undefined. */
export function statusOf(err: unknown): number | undefined {
  const e = err as any;
  for (const v of [e?.code, e?.status, e?.response?.status, e?.statusCode]) {
    const n = typeof v === 'string' && /^\d{3}$/.test(v) ? Number(v) : v;
    if (typeof n === 'number' && n >= 100 && n < 600) return n;
  }
  return undefined;
}

/** 408/429/5xx, connection resets, timeouts and truncated bodies (not refused connections or unknown hosts: those fail fast). */
export function isRetryableError(err: unknown): boolean {
  if (!err) return false;
  const e = err as any;
  if ((e as any).retryable === true) return true;
  const status = statusOf(err);
  if (status !== undefined) return RETRYABLE_STATUS.has(status);
  for (const c of [e.code, e.errno, e.cause?.code]) {
    if (typeof c === 'string' && RETRYABLE_CODES.has(c.toUpperCase())) return true;
  }
  const msg = String(e.message ?? '').toLowerCase();
  if (
    /socket hang up|econnreset|premature close|unexpected connection closure|aborted|network|timed? ?out|terminated|other side closed/.test(
      msg,
    )
  ) {
    return true;
  }
  if (Array.isArray(e.errors)) return e.errors.some((x: unknown) => x !== err && isRetryableError(x));
  return false;
}

/** Removes bearer tokens, keys and token-bearing query parameters from a message. */
export function redact(text: string): string {
  return text
    .replace(/(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 [redacted]')
    .replace(
      /(access_token|refresh_token|id_token|client_secret|private_key(?:_id)?|X-Goog-Signature|sig|key)=([^&\s"']+)/gi,
      '$1=[redacted]',
    )
    .replace(
      /("(?:private_key|client_secret|refresh_token|access_token|private_key_id)"\s*:\s*)"[^"]*"/gi,
      '$1"[redacted]"',
    )
    .replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, '[redacted private key]');
}

/** A storage failure: what, where, the HTTP status or system code, never credentials. */
export class StorageError extends Error {
  readonly status?: number;
  readonly code?: string;
  constructor(message: string, opts: { status?: number; code?: string } = {}) {
    super(redact(message));
    this.name = 'StorageError';
    this.status = opts.status;
    this.code = opts.code;
  }
}

/** Converts any client error into a StorageError naming the operation and the object. */
export function toStorageError(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const e = err as any;
  const status = statusOf(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const detail = String(e?.message ?? err).split('\n')[0];
  return new StorageError(`${what}: ${status ? `HTTP ${status}: ` : ''}${detail}`, { status, code });
}
