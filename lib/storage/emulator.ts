// A real GCS JSON-API server on localhost for tests, benchmarks and demos: the
// Cloud Storage emulator inside npm firebase-tools (a devDependency), run
// in-process. Its CLI start wants Java and downloads a rules jar; the server
// itself is plain Node, so we construct its StorageEmulator with the rules
// runtime stubbed out. The JSON API (`/storage/v1/...`, `/upload/...`,
// `/download/...`) always goes through the emulator's admin layer, which
// permits everything, so no ruleset is ever evaluated.
//
// Known gaps of this server (tests must not rely on them): buckets appear on
// first write (createBucket / bucket.exists() / getMetadata() fail), multi-chunk
// resumable uploads truncate, ifGenerationMatch is ignored, and every list call
// scans all objects of the server (O(objects) per page).
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface GcsEmulatorOptions {
  /** TCP port; 0 or absent picks a free one. */
  port?: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** Project id the emulator reports; default "torchline-test". */
  projectId?: string;
  /** Show the emulator's own log lines (default: silent). */
  verbose?: boolean;
}

export interface GcsEmulator {
  host: string;
  port: number;
  /** `http://host:port`: the value for STORAGE_EMULATOR_HOST. */
  url: string;
  /** Deletes every object (buckets included). */
  reset(): void;
  /** Closes the server, drops open connections and removes its blob folder. */
  stop(): Promise<void>;
}

function loadFirebaseTools(): {
  StorageEmulator: new (args: Record<string, unknown>) => any;
  createApp: (projectId: string, emulator: unknown) => Promise<http.RequestListener>;
  EmulatorLogger: any;
  EmulatorRegistry: any;
} {
  try {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { StorageEmulator } = require('firebase-tools/lib/emulator/storage');
    const { createApp } = require('firebase-tools/lib/emulator/storage/server');
    const { EmulatorLogger } = require('firebase-tools/lib/emulator/emulatorLogger');
    const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry');
    /* eslint-enable @typescript-eslint/no-require-imports */
    return { StorageEmulator, createApp, EmulatorLogger, EmulatorRegistry };
  } catch (err) {
    const e = new Error(
      'startGcsEmulator needs the npm package firebase-tools (a devDependency of torchline): ' +
        'run `npm install --ignore-scripts --save-dev firebase-tools@15.34.2` ' +
        `(${(err as Error).message.split('\n')[0]})`,
    );
    (e as any).cause = err;
    throw e;
  }
}

// A ruleset that permits everything, for the emulator's Firebase (v0) API; the
// GCS JSON API never consults it.
const permitAll = {
  verify: async () => ({ permitted: true, issues: { exist: () => false, all: [], errors: [], warnings: [] } }),
};
const noIssues = { errors: [], warnings: [], all: [], exist: () => false, extend() {} };

/**
 * Starts the Firebase Storage emulator in this process and resolves once it
 * accepts connections (about 1 s the first time, mostly module loading).
 * Point @google-cloud/storage at it with `STORAGE_EMULATOR_HOST=emu.url`
 * (or `createStorage({ emulatorHost: emu.url })`).
 */
export async function startGcsEmulator(opts: GcsEmulatorOptions = {}): Promise<GcsEmulator> {
  const { StorageEmulator, createApp, EmulatorLogger, EmulatorRegistry } = loadFirebaseTools();
  if (!opts.verbose) EmulatorLogger.setVerbosity(3 /* SILENT */);
  const host = opts.host ?? '127.0.0.1';
  const projectId = opts.projectId ?? 'torchline-test';
  // Each instance gets its own blob folder: the stock one is shared by every
  // emulator on the machine and deleted whole on stop.
  const blobDir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchline-gcs-emu-'));

  class QuietStorageEmulator extends StorageEmulator {
    getPersistenceTmpDir(): string {
      return blobDir;
    }
    createRulesManager(): unknown {
      return { start: async () => noIssues, stop: async () => {}, getRuleset: () => permitAll };
    }
  }
  const emu = new QuietStorageEmulator({ projectId, host, port: opts.port ?? 0, auto_download: false, rules: {} });
  // The rules runtime spawns Java on start; it is never started here.
  emu._rulesRuntime = { start: async () => {}, stop: async () => {} };

  const app = await createApp(projectId, emu);
  const server = http.createServer(app);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // Object metadata (selfLink, mediaLink) is built from the registry's entry
  // for "storage": the process-wide slot points at the latest instance.
  emu.args.port = port;
  EmulatorRegistry.set('storage', emu);
  let stopped = false;
  return {
    host,
    port,
    url: `http://${host}:${port}`,
    reset: () => {
      fs.rmSync(blobDir, { recursive: true, force: true });
      emu.reset();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      if (EmulatorRegistry.get('storage') === emu) EmulatorRegistry.clear('storage');
      fs.rmSync(blobDir, { recursive: true, force: true });
    },
  };
}
