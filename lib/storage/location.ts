// One location type for every storage-facing API and CLI flag:
// `gs://bucket/prefix` for Google Cloud Storage, and `file:///abs/path` or a
// plain (relative or absolute) path for the local file system.
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export type LocationLike = string | Location;

// GCS bucket names: 3-63 chars (up to 222 with dots), lowercase letters,
// digits, `-`, `_`, `.`, starting and ending with a letter or digit.
const BUCKET_RE = /^[a-z0-9](?:[a-z0-9._-]{1,220})[a-z0-9]$/;

export class Location {
  private constructor(
    /** 'gs' for Cloud Storage, 'file' for the local file system. */
    readonly scheme: 'gs' | 'file',
    /** Bucket name (gs only; '' for file). */
    readonly bucket: string,
    /** gs: object name or prefix, no leading slash ('' = whole bucket). file: absolute path. */
    readonly path: string,
  ) {}

  static parse(value: LocationLike): Location {
    if (value instanceof Location) return value;
    if (typeof value !== 'string' || value.length === 0) {
      throw new TypeError(
        `expected a location (gs://bucket/prefix, file:///path or a path), got ${JSON.stringify(value)}`,
      );
    }
    if (/^gs:/i.test(value)) {
      const m = /^gs:\/\/([^/]*)(?:\/(.*))?$/i.exec(value);
      if (!m || !m[1])
        throw new TypeError(`invalid GCS location ${JSON.stringify(value)}: expected gs://bucket[/prefix]`);
      const bucket = m[1];
      if (!BUCKET_RE.test(bucket) || bucket.includes('..') || (!bucket.includes('.') && bucket.length > 63)) {
        throw new TypeError(`invalid GCS bucket name ${JSON.stringify(bucket)} in ${JSON.stringify(value)}`);
      }
      const object = m[2] ?? '';
      if (object.startsWith('/')) {
        throw new TypeError(`invalid GCS location ${JSON.stringify(value)}: object names never start with "/"`);
      }
      if (/[\r\n\0]/.test(object))
        throw new TypeError(`invalid GCS location ${JSON.stringify(value)}: control characters`);
      return new Location('gs', bucket, object);
    }
    if (/^file:/i.test(value)) {
      let p: string;
      try {
        p = fileURLToPath(value);
      } catch (e) {
        throw new TypeError(`invalid file URL ${JSON.stringify(value)}: ${(e as Error).message}`);
      }
      return new Location('file', '', path.resolve(p));
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
      throw new TypeError(`unsupported location scheme in ${JSON.stringify(value)}: use gs://, file:// or a path`);
    }
    return new Location('file', '', path.resolve(value));
  }

  static gcs(bucket: string, object = ''): Location {
    return Location.parse(`gs://${bucket}/${object}`);
  }

  get isGcs(): boolean {
    return this.scheme === 'gs';
  }

  get isLocal(): boolean {
    return this.scheme === 'file';
  }

  /** The prefix to list "inside" this location: ends with '/' unless empty. */
  get dirPrefix(): string {
    if (this.scheme === 'file') return this.path.endsWith(path.sep) ? this.path : this.path + path.sep;
    return this.path === '' || this.path.endsWith('/') ? this.path : this.path + '/';
  }

  /** Last path segment ('' for a bucket root). */
  get basename(): string {
    const p = this.scheme === 'gs' ? this.path.replace(/\/+$/, '') : this.path;
    return this.scheme === 'gs' ? p.slice(p.lastIndexOf('/') + 1) : path.basename(p);
  }

  /** A location below this one; parts are joined with '/'. */
  join(...parts: string[]): Location {
    if (this.scheme === 'file') return new Location('file', '', path.resolve(this.path, ...parts));
    const rel = parts.filter((p) => p !== '').join('/');
    return new Location('gs', this.bucket, this.dirPrefix + rel.replace(/^\/+/, ''));
  }

  /** `gs://bucket/object` or `file:///abs/path`: the form rows and logs carry. */
  get uri(): string {
    return this.scheme === 'gs' ? `gs://${this.bucket}/${this.path}` : pathToFileURL(this.path).href;
  }

  toString(): string {
    return this.scheme === 'gs' ? this.uri : this.path;
  }

  toJSON(): string {
    return this.toString();
  }
}
