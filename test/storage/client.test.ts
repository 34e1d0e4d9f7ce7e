// Locations, client configuration (emulator host, standard credentials) and
// that credentials never reach error messages.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { OAuth2Client } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Location, startGcsEmulator, storage as st, type GcsEmulator } from '../../lib';
import { seedObjects } from './helpers';

describe('Location', () => {
  it('parses gs:// locations', () => {
    const l = Location.parse('gs://my-bucket/train/x');
    expect([l.scheme, l.bucket, l.path, l.dirPrefix, l.uri, l.basename]).toEqual([
      'gs',
      'my-bucket',
      'train/x',
      'train/x/',
      'gs://my-bucket/train/x',
      'x',
    ]);
    expect(Location.parse('gs://my-bucket').dirPrefix).toBe('');
    expect(Location.parse('gs://my-bucket/').path).toBe('');
    expect(Location.parse('gs://b.example.com/p/').dirPrefix).toBe('p/');
    expect(Location.parse('gs://bkt/a').join('b', 'c.jpg').toString()).toBe('gs://bkt/a/b/c.jpg');
    expect(Location.gcs('bkt', 'x').toString()).toBe('gs://bkt/x');
  });
  it('parses local paths and file URLs', () => {
    expect(Location.parse('file:///tmp/a%20b').path).toBe('/tmp/a b');
    expect(Location.parse('rel/dir').path).toBe(path.resolve('rel/dir'));
    expect(Location.parse('/tmp/x').uri).toBe('file:///tmp/x');
    expect(Location.parse('/tmp/x').join('y').path).toBe('/tmp/x/y');
    expect(Location.parse(Location.parse('/a')).path).toBe('/a');
  });
  it.each([
    ['gs://', /invalid GCS location/],
    ['gs:///x', /invalid GCS location/],
    ['gs://UPPER/x', /invalid GCS bucket name/],
    ['gs://a/x', /invalid GCS bucket name/],
    ['gs://bkt//x', /never start with/],
    ['s3://bkt/x', /unsupported location scheme/],
    ['', /expected a location/],
  ])('refuses %j', (v, re) => expect(() => Location.parse(v)).toThrow(re));
});

describe('redaction', () => {
  it('removes tokens and keys', () => {
    const key = '-----BEGIN PRIVATE KEY-----\nMIIEabc\n-----END PRIVATE KEY-----';
    const out = st.redact(
      `Authorization: Bearer ya29.a0AfB_secret url?access_token=abc&x=1 {"private_key": "zzz"} ${key}`,
    );
    expect(out).not.toMatch(/ya29|abc&|zzz|MIIE/);
    expect(out).toMatch(/Bearer \[redacted\]/);
    expect(new st.StorageError('failed with Bearer ya29.xyz').message).toBe('failed with Bearer [redacted]');
  });
});

describe('client configuration', () => {
  let emu: GcsEmulator;
  beforeAll(async () => {
    emu = await startGcsEmulator();
    await seedObjects(st.createStorage({ emulatorHost: emu.url }), 'cfg-bkt', [
      { name: 'a/x.bin', data: Buffer.from('hello') },
    ]);
  });
  afterAll(() => emu?.stop());

  it('honours STORAGE_EMULATOR_HOST', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = emu.url;
    try {
      const files = await st.listFiles('gs://cfg-bkt/a', { storage: st.createStorage() });
      expect(files.map((f) => f.name)).toEqual(['a/x.bin']);
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  });

  it('emulatorHost does not leak into the environment', () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    st.createStorage({ emulatorHost: emu.url });
    expect(process.env.STORAGE_EMULATOR_HOST).toBe(saved);
  });
});

describe('standard credentials', () => {
  // A local server standing in for GCS that echoes the caller's credentials.
  let server: http.Server;
  let base: string;
  const seenAuth: string[] = [];
  const TOKEN = 'ya29.TOP-SECRET-TOKEN';
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seenAuth.push(String(req.headers.authorization));
      // A hostile server that echoes the caller's credentials in its error.
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ error: { code: 403, message: `denied for Authorization: ${req.headers.authorization}` } }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it("sends the credentials' bearer token, and never puts it in an error", async () => {
    // Any google-auth-library client works (key files and application-default
    // credentials resolve to one); this one holds a ready access token, since
    // this machine cannot reach Google's token endpoint.
    const client = new OAuth2Client();
    client.setCredentials({ access_token: TOKEN, expiry_date: Date.now() + 3600_000 });
    const storage = st.createStorage({
      storageOptions: { apiEndpoint: base, useAuthWithCustomEndpoint: true, authClient: client },
    });
    const err = await st.listPartitioned('gs://any-bucket/x', { storage }).catch((e) => e);
    expect(seenAuth[0]).toBe(`Bearer ${TOKEN}`);
    expect(err).toBeInstanceOf(st.StorageError);
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/HTTP 403/);
    const everything = `${err.message} ${err.stack} ${JSON.stringify(err)}`;
    expect(everything).not.toContain('TOP-SECRET');
  });
});
