// The torch hub checkpoint cache, shared with Python: a file torchvision
// already downloaded is used as is, and what torchline downloads is where
// torch.hub.load_state_dict_from_url looks for it. The folder follows
// torch.hub.get_dir(): $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
// ~/.cache/torch/hub; files live in its `checkpoints` folder under the URL's
// file name.
//
// A download goes to a temp file beside its final name, is checked against
// the SHA-256 prefix in that name (torchvision's naming: resnet50-11ad3fa6.pth
// starts with 11ad3fa6), fsynced and renamed into place, so the cache never
// holds a partial or unverified file. A lock file makes concurrent processes
// download it once (see file_lock.ts).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Storage } from '@google-cloud/storage';
import type { Tensor } from '../tensor';
import { TransferMeter, type TransferProgress } from '../storage/progress';
import { acquireFileLock } from './file_lock';
import { HttpFetchError, httpFetchToFile } from './http_fetch';

/** torch.hub's HASH_REGEX: the hex after the last '-' before a '.' in a file name. */
const HASH_RE = /-([a-f0-9]*)\./;

/** The SHA-256 prefix a file name carries by torchvision's convention, or undefined. */
export function hashPrefixOf(fileName: string): string | undefined {
  const m = HASH_RE.exec(fileName);
  return m && m[1].length > 0 ? m[1] : undefined;
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** torch.hub.get_dir(): $TORCH_HOME/hub, $XDG_CACHE_HOME/torch/hub or ~/.cache/torch/hub. */
export function hubDir(): string {
  const env = process.env;
  const torchHome = env.TORCH_HOME
    ? expandHome(env.TORCH_HOME)
    : path.join(env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'torch');
  return path.resolve(torchHome, 'hub');
}

/** Where downloaded weights are cached: `<hubDir()>/checkpoints`. */
export function checkpointsDir(): string {
  return path.join(hubDir(), 'checkpoints');
}

/** A weights file that could not be found, fetched or verified. */
export class WeightsError extends Error {
  /** 'EOFFLINE' (source unreachable), 'EHASH' (content differs), 'ENOENT', 'EDOWNLOAD' (other fetch failure). */
  readonly code: 'EOFFLINE' | 'EHASH' | 'ENOENT' | 'EDOWNLOAD';
  /** Where it was fetched from, when it was. */
  readonly url?: string;
  /** Where it was (or would be) cached. */
  readonly cachePath?: string;
  constructor(
    message: string,
    opts: { code: WeightsError['code']; url?: string; cachePath?: string; cause?: unknown },
  ) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'WeightsError';
    this.code = opts.code;
    this.url = opts.url;
    this.cachePath = opts.cachePath;
  }
}

export interface HubFetchOptions {
  /** Cache folder (torch's model_dir); default checkpointsDir(). */
  modelDir?: string;
  /** File name in the cache; default the URL's last path segment. */
  fileName?: string;
  /**
   * Progress on stderr while downloading (default true, as torchvision): redrawn on a TTY, a line every 5 s
   * otherwise; false for silence, or a callback.
   */
  progress?: boolean | ((p: TransferProgress) => void);
  /** Storage client for gs:// URLs (default: createStorage()). */
  storage?: Storage;
  signal?: AbortSignal;
  /** A lock untouched for this long is taken as abandoned (ms, default 60,000). */
  lockStaleMs?: number;
}

/** SHA-256 (hex) of a file. */
export async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const c of fs.createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Throws WeightsError EHASH unless the file's SHA-256 starts with `prefix`. */
export async function verifyHashPrefix(file: string, prefix: string, what: string): Promise<void> {
  const digest = await sha256File(file);
  if (!digest.startsWith(prefix)) {
    throw new WeightsError(
      `${what}: ${file} has SHA-256 ${digest}, which does not start with the expected ${prefix}; the file is corrupt or not ` +
        'these weights (delete it to download it again, or pass checkHash: false to use it anyway)',
      { code: 'EHASH', cachePath: file },
    );
  }
}

function isUrl(s: string): boolean {
  return /^(https?|gs):\/\//i.test(s);
}

function urlBaseName(url: string): string {
  if (/^gs:\/\//i.test(url)) return url.replace(/\/+$/, '').split('/').pop() ?? '';
  return decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
}

/** Our temp names beside `final`: `.<name>.tmp-<pid>-<hex>`, as lib/checkpoint's atomic writes. */
function tempPath(final: string): string {
  const rand = Math.floor(Math.random() * 0xffffffff).toString(16);
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${process.pid}-${rand}`);
}

/** Temp files and folders left for `final` by interrupted downloads (only called while holding its lock). */
function sweepTemps(final: string): void {
  const prefix = `.${path.basename(final)}.tmp-`;
  for (const name of fs.readdirSync(path.dirname(final))) {
    if (name.startsWith(prefix)) fs.rmSync(path.join(path.dirname(final), name), { recursive: true, force: true });
  }
}

function fsyncPath(p: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Folders cannot be fsynced everywhere; the rename is atomic regardless.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Fetches a gs:// object into `dir` through lib/storage (verified against the object's MD5/CRC32C). */
async function gsFetchToDir(url: string, dir: string, options: HubFetchOptions): Promise<string> {
  const { Location } = await import('../storage/location');
  const { createStorage } = await import('../storage/client');
  const { listPage } = await import('../storage/listing');
  const { download } = await import('../storage/download');
  const loc = Location.parse(url);
  if (!loc.path || loc.path.endsWith('/')) throw new TypeError(`${url} names a folder, not a weights file`);
  const storage = options.storage ?? createStorage();
  const page = await listPage(storage, loc.bucket, { prefix: loc.path, maxResults: 10 });
  const item = page.items.find((it) => it.name === loc.path);
  if (!item) throw Object.assign(new Error(`no object ${url}`), { code: 'ENOENT' });
  const parent = loc.path.includes('/') ? loc.path.slice(0, loc.path.lastIndexOf('/') + 1) : '';
  const object = {
    name: item.name,
    relPath: item.name.slice(parent.length),
    size: Number(item.size),
    updated: new Date(item.updated),
    generation: item.generation,
    crc32c: item.crc32c,
    md5Hash: item.md5Hash,
  };
  await download(`gs://${loc.bucket}/${parent}`, dir, {
    storage,
    objects: [object],
    progress: options.progress ?? true,
    signal: options.signal,
  });
  return path.join(dir, object.relPath);
}

async function fetchInto(url: string, tmp: string, options: HubFetchOptions): Promise<void> {
  if (/^gs:\/\//i.test(url)) {
    // lib/storage downloads into a folder; ours is the temp path itself.
    fs.mkdirSync(tmp);
    const got = await gsFetchToDir(url, tmp, options);
    const file = `${tmp}.file`;
    fs.renameSync(got, file);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.renameSync(file, tmp);
    return;
  }
  const mode = options.progress ?? true;
  let progress: TransferMeter | undefined;
  let pending = 0;
  const label = `download ${urlBaseName(url)}`;
  try {
    await httpFetchToFile(url, tmp, {
      signal: options.signal,
      onTotal: (total) => {
        progress = new TransferMeter(label, 1, total, mode);
        progress.add(0, pending);
      },
      onBytes: (n) => {
        if (progress) progress.add(0, n);
        else pending += n;
      },
    });
    progress?.add(1, 0);
  } finally {
    progress?.done();
  }
}

/**
 * The cached copy of `url` (https://, http:// or gs://), downloading it first
 * when absent: torch.hub.load_state_dict_from_url's file handling. With
 * `hashPrefix`, both a download and a file found in the cache must have a
 * SHA-256 starting with it.
 */
export async function cachedDownload(
  url: string,
  options: HubFetchOptions & { hashPrefix?: string; what?: string } = {},
): Promise<string> {
  if (!isUrl(url)) throw new TypeError(`expected an https://, http:// or gs:// URL, got ${JSON.stringify(url)}`);
  const dir = path.resolve(options.modelDir ?? checkpointsDir());
  const fileName = options.fileName ?? urlBaseName(url);
  if (!fileName || fileName === '.' || fileName === '..' || /[/\\]/.test(fileName))
    throw new TypeError(`cannot derive a file name from ${url}`);
  const final = path.join(dir, fileName);
  const what = options.what ?? fileName;
  const verify = (file: string) =>
    options.hashPrefix ? verifyHashPrefix(file, options.hashPrefix, what) : Promise.resolve();
  if (fs.existsSync(final)) {
    await verify(final);
    return final;
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new WeightsError(`${what}: cannot create the cache folder ${dir}: ${(err as Error).message}`, {
      code: 'EDOWNLOAD',
      url,
      cachePath: final,
      cause: err,
    });
  }
  const say = (msg: string) => {
    if (options.progress !== false && typeof options.progress !== 'function') process.stderr.write(msg + '\n');
  };
  const lock = await acquireFileLock(`${final}.lock`, {
    staleMs: options.lockStaleMs,
    signal: options.signal,
    onWait: (h) =>
      say(
        `waiting for ${h ? `process ${h.pid} on ${h.host}` : 'another process'} to download ${fileName} (lock ${final}.lock)`,
      ),
  });
  try {
    // Another process may have finished it while we waited.
    if (fs.existsSync(final)) {
      await verify(final);
      return final;
    }
    sweepTemps(final);
    const tmp = tempPath(final);
    say(`Downloading: "${url}" to ${final}`);
    try {
      await fetchInto(url, tmp, options);
      if (options.hashPrefix) {
        const digest = await sha256File(tmp);
        if (!digest.startsWith(options.hashPrefix)) {
          throw new WeightsError(
            `${what}: the file downloaded from ${url} has SHA-256 ${digest}, which does not start with the expected ` +
              `${options.hashPrefix}; it was not saved (a proxy, a mirror or the network changed it)`,
            { code: 'EHASH', url, cachePath: final },
          );
        }
      }
      fsyncPath(tmp);
      fs.renameSync(tmp, final);
      fsyncPath(dir);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.rmSync(`${tmp}.file`, { force: true });
      throw toWeightsError(err, url, final, what);
    }
    return final;
  } finally {
    await lock.release();
  }
}

function toWeightsError(err: unknown, url: string, final: string, what: string): Error {
  if (err instanceof WeightsError || (err as Error)?.name === 'AbortError') return err as Error;
  const e = err as Error & { code?: string; status?: number; opts?: { unreachable?: boolean } };
  const offline =
    (err instanceof HttpFetchError && e.opts?.unreachable) ||
    ['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH'].includes(String(e.code ?? ''));
  const detail = String(e.message ?? err).split('\n')[0];
  if (offline) {
    return new WeightsError(
      `${what}: cannot download ${url} (${detail}). Offline? Put the file at ${final} ` +
        '(copy it from a machine that has it, e.g. from its ~/.cache/torch/hub/checkpoints) or pass its path.',
      { code: 'EOFFLINE', url, cachePath: final, cause: err },
    );
  }
  return new WeightsError(`${what}: downloading ${url} failed: ${detail} (nothing was saved to ${final})`, {
    code:
      e.code === 'ENOENT' || (err instanceof HttpFetchError && e.opts && (err as HttpFetchError).opts.status === 404)
        ? 'ENOENT'
        : 'EDOWNLOAD',
    url,
    cachePath: final,
    cause: err,
  });
}

/**
 * torch.hub.load_state_dict_from_url: the state dict in the file at `url`,
 * downloaded into the hub cache once. `checkHash` (default false, as torch)
 * verifies the SHA-256 prefix the file name carries.
 */
export async function loadStateDictFromUrl(
  url: string,
  options: HubFetchOptions & { checkHash?: boolean } = {},
): Promise<Map<string, Tensor>> {
  const fileName = options.fileName ?? urlBaseName(url);
  const hashPrefix = options.checkHash ? hashPrefixOf(fileName) : undefined;
  const file = await cachedDownload(url, { ...options, fileName, hashPrefix });
  return readStateDict(file);
}

/** The state dict in a .pth (torch.save) or .safetensors file. */
export async function readStateDict(file: string): Promise<Map<string, Tensor>> {
  const ckpt = await import('../checkpoint');
  if (file.endsWith('.safetensors')) return ckpt.safetensors.load(file);
  return ckpt.extractStateDict(await ckpt.loadAsync(file));
}
