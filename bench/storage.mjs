// bench/storage: partitioned listing vs a flat paged listing (objects/s), and
// torchline's verified parallel download vs the seed's sequential loop
// (files/s), on 20,000 small objects in the local GCS emulator.
//
// The emulator runs in its own process (the client and the server would
// otherwise share one JS thread). A second pass puts a proxy adding 20 ms per
// request in between, as a stand-in for the round trip to real GCS, where
// latency rather than the server's CPU dominates.
//
// A third part lists an ImageNet-shaped tree (1,000 class folders x 50
// objects: a flat listing is 50 sequential pages) through the same proxy,
// served by bench/storage-list-server.mjs in its own process: the emulator
// scans and sorts all its objects on every list call and ignores
// startOffset/endOffset, so under it both listings would measure its CPU.
//
//   npm run bench -- storage [--objects 20000] [--rtt 20] [--imagenet-classes 1000] [--imagenet-per-class 50]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(import.meta.url);
const tl = await import('../dist/index.js');
const st = tl.storage ?? tl.default.storage;
const { Storage } = require('@google-cloud/storage');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('objects', 20000);
const RTT = arg('rtt', 20);
const CLASSES = 100;
const IN_CLASSES = arg('imagenet-classes', 1000);
const IN_PER = arg('imagenet-per-class', 50);
const BUCKET = 'bench-bkt';

// The emulator in a child process.
async function startEmulatorProcess() {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(path.join(root, 'dist/storage/emulator.js'))}).startGcsEmulator().then((e) => console.log(e.url))`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d).trim()));
    child.once('exit', (c) => reject(new Error(`emulator exited ${c}`)));
  });
  return { url, stop: () => child.kill() };
}

// The latency proxy (bench/storage-latency-proxy.mjs) in its own process.
async function startLatencyProxy(upstream, ms) {
  const child = spawn(process.execPath, [path.join(here, 'storage-latency-proxy.mjs'), upstream, String(ms)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d).trim()));
    child.once('exit', (c) => reject(new Error(`latency proxy exited ${c}`)));
  });
  return { url, close: () => child.kill() };
}

const time = async (fn) => {
  const t0 = performance.now();
  const r = await fn();
  return { s: (performance.now() - t0) / 1000, r };
};
const best = async (runs, fn) => {
  let b;
  for (let i = 0; i < runs; i++) {
    const t = await time(fn);
    if (!b || t.s < b.s) b = t;
  }
  return b;
};
// The peer's per-object download, repeated once on a connection reset: a
// keep-alive socket the emulator closed while idle surfaces in the client
// library as "socket hang up" without its own retry.
async function peerDownload(b, name, dest) {
  try {
    await b.file(name).download({ destination: dest });
  } catch (e) {
    if (e?.code !== 'ECONNRESET') throw e;
    await b.file(name).download({ destination: dest });
  }
}
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

// ImageNet-shaped listing under the 20 ms latency: the list server in a child
// process. Measured first, while this process's heap is small.
const inN = IN_CLASSES * IN_PER;
const listSrv = await (async () => {
  const code = `
    const { startListServer } = await import(${JSON.stringify(path.join(here, 'storage-list-server.mjs'))});
    const objs = [];
    for (let c = 0; c < ${IN_CLASSES}; c++) {
      const cls = 'n' + String(1440764 + c * 997).padStart(8, '0');
      for (let i = 0; i < ${IN_PER}; i++) objs.push({ name: 'imagenet/train/' + cls + '/' + cls + '_' + (10000 + i * 7) + '.JPEG', size: 40000 + ((c * 131 + i * 17) % 90000) });
    }
    const s = await startListServer(objs, { bucket: ${JSON.stringify(BUCKET)} });
    console.log(s.url);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d).trim()));
    child.once('exit', (c) => reject(new Error(`list server exited ${c}`)));
  });
  return { url, stop: () => child.kill() };
})();
const inProxy = await startLatencyProxy(listSrv.url, RTT);
const inStorage = () => st.createStorage({ emulatorHost: inProxy.url });
const inRoot = `gs://${BUCKET}/imagenet/train`;
const inFlat = await best(5, async () => (await st.listFlat(inRoot, { storage: inStorage() })).length);
const inPart = await best(
  5,
  async () =>
    (
      await st.listPartitioned(inRoot, {
        storage: inStorage(),
        recursiveFileLookup: true,
        minPartitionNum: 1,
      })
    ).files.length,
);
for (const x of [inFlat, inPart])
  if (x.r !== inN) throw new Error(`ImageNet-shaped listing returned ${x.r} objects, expected ${inN}`);
inProxy.close();
listSrv.stop();
const inRate = { flat: inN / inFlat.s, part: inN / inPart.s };

const emu = await startEmulatorProcess();
const direct = st.createStorage({ emulatorHost: emu.url });
const lib = (() => {
  const saved = process.env.STORAGE_EMULATOR_HOST;
  process.env.STORAGE_EMULATOR_HOST = emu.url;
  const s = new Storage({ projectId: 'bench' });
  if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
  else process.env.STORAGE_EMULATOR_HOST = saved;
  return s;
})();

// Seed: N objects of 1-4 KB in CLASSES folders, uploaded 64 at a time.
const names = Array.from(
  { length: N },
  (_, i) => `train/class-${String(i % CLASSES).padStart(3, '0')}/img-${String(i).padStart(6, '0')}.jpg`,
);
const seed = await time(async () => {
  let next = 0;
  const b = lib.bucket(BUCKET);
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < names.length) {
        const i = next++;
        const data = Buffer.alloc(1024 + (i % 3072), i & 0xff);
        await b.file(names[i]).save(data, { resumable: false, validation: false });
      }
    }),
  );
});
console.log(`seeded ${N} objects in ${seed.s.toFixed(1)} s (${fmt(N / seed.s)} objects/s, 64 concurrent uploads)`);

// Listing. Baselines: the client library's getFiles (what a Node port of the
// seed's list_blobs does) and the same raw transport torchline uses, paged flat.
const flatLib = await best(3, async () => (await lib.bucket(BUCKET).getFiles({ prefix: 'train/' }))[0].length);
const flatRaw = await best(3, async () => (await st.listFlat(`gs://${BUCKET}/train`, { storage: direct })).length);
const part = await best(
  3,
  async () =>
    (
      await st.listPartitioned(`gs://${BUCKET}/train`, {
        storage: direct,
        concurrency: 32,
        recursiveFileLookup: true,
        minPartitionNum: 1,
      })
    ).files.length,
);
for (const x of [flatLib, flatRaw, part])
  if (x.r !== N) throw new Error(`listing returned ${x.r} objects, expected ${N}`);
const listRate = { lib: N / flatLib.s, raw: N / flatRaw.s, part: N / part.s };
console.log(`listing ${N} objects (best of 3):`);
console.log(`  flat paged, client getFiles()      ${fmt(listRate.lib)} objects/s`);
console.log(`  flat paged, raw JSON API           ${fmt(listRate.raw)} objects/s`);
console.log(
  `  torchline partitioned (32 conc.)   ${fmt(listRate.part)} objects/s   = ${(listRate.part / listRate.lib).toFixed(2)}x getFiles, ${(listRate.part / listRate.raw).toFixed(2)}x raw flat`,
);

// Download. The seed's loop: for each blob, download_to_filename, one after another.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'torchline-bench-storage-'));
const SEQ = Math.min(N, 4000);
const seq = await time(async () => {
  const b = lib.bucket(BUCKET);
  for (const name of names.slice(0, SEQ)) {
    const dest = path.join(tmp, 'seq', name);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    await peerDownload(b, name, dest);
  }
});
const par = await time(() =>
  st.download(`gs://${BUCKET}/train`, path.join(tmp, 'par'), { storage: direct, concurrency: 64, progress: false }),
);
if (par.r.downloaded !== N) throw new Error(`downloaded ${par.r.downloaded}, expected ${N}`);
const dl = { seq: SEQ / seq.s, par: N / par.s };
console.log(`download (verified, temp file + rename):`);
console.log(`  seed's sequential loop (${SEQ} files)   ${fmt(dl.seq)} files/s`);
console.log(`  torchline download (${N} files, 64 conc.)  ${fmt(dl.par)} files/s   = ${(dl.par / dl.seq).toFixed(2)}x`);

// With a round trip: the same comparisons through a proxy adding RTT ms per request.
const proxy = await startLatencyProxy(emu.url, RTT);
const viaProxy = st.createStorage({ emulatorHost: proxy.url });
const libProxy = (() => {
  const saved = process.env.STORAGE_EMULATOR_HOST;
  process.env.STORAGE_EMULATOR_HOST = proxy.url;
  const s = new Storage({ projectId: 'bench' });
  if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
  else process.env.STORAGE_EMULATOR_HOST = saved;
  return s;
})();
const flatRtt = await time(async () => (await st.listFlat(`gs://${BUCKET}/train`, { storage: viaProxy })).length);
const partRtt = await time(
  async () =>
    (
      await st.listPartitioned(`gs://${BUCKET}/train`, {
        storage: viaProxy,
        concurrency: 32,
        recursiveFileLookup: true,
        minPartitionNum: 1,
      })
    ).files.length,
);
const SEQ_RTT = 300;
const seqRtt = await time(async () => {
  const b = libProxy.bucket(BUCKET);
  for (const name of names.slice(0, SEQ_RTT)) {
    const dest = path.join(tmp, 'seq-rtt', name);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    await peerDownload(b, name, dest);
  }
});
const parRtt = await time(() =>
  st.download(`gs://${BUCKET}/train`, path.join(tmp, 'par-rtt'), {
    storage: viaProxy,
    concurrency: 64,
    progress: false,
  }),
);
proxy.close();

const rtt = {
  listFlat: N / flatRtt.s,
  listPart: N / partRtt.s,
  seq: SEQ_RTT / seqRtt.s,
  par: N / parRtt.s,
};
console.log(`with ${RTT} ms added per request:`);
console.log(
  `  listing: flat ${fmt(rtt.listFlat)} objects/s, partitioned ${fmt(rtt.listPart)} objects/s = ${(rtt.listPart / rtt.listFlat).toFixed(2)}x`,
);
console.log(
  `  download: sequential ${fmt(rtt.seq)} files/s (${SEQ_RTT} files), torchline ${fmt(rtt.par)} files/s = ${(rtt.par / rtt.seq).toFixed(2)}x`,
);
console.log(
  `  ImageNet-shaped listing (${IN_CLASSES} folders x ${IN_PER}, ${Math.ceil(inN / 1000)} flat pages, best of 5): flat ${fmt(inRate.flat)} objects/s ` +
    `(${(inFlat.s * 1000).toFixed(0)} ms), torchline partitioned ${fmt(inRate.part)} objects/s (${(inPart.s * 1000).toFixed(0)} ms) = ${(inRate.part / inRate.flat).toFixed(2)}x`,
);

fs.rmSync(tmp, { recursive: true, force: true });
emu.stop();
console.log(
  JSON.stringify({
    bench: 'storage',
    torchline: Math.round(dl.par),
    peer: Math.round(dl.seq),
    unit: 'files/s',
    ratio: Number((dl.par / dl.seq).toFixed(2)),
    listing: {
      torchline: Math.round(listRate.part),
      peer: Math.round(listRate.lib),
      peerRawFlat: Math.round(listRate.raw),
      unit: 'objects/s',
      ratio: Number((listRate.part / listRate.lib).toFixed(2)),
    },
    rtt: {
      ms: RTT,
      listing: {
        torchline: Math.round(rtt.listPart),
        peer: Math.round(rtt.listFlat),
        ratio: Number((rtt.listPart / rtt.listFlat).toFixed(2)),
      },
      download: {
        torchline: Math.round(rtt.par),
        peer: Math.round(rtt.seq),
        ratio: Number((rtt.par / rtt.seq).toFixed(2)),
      },
      listingImagenet: {
        torchline: Math.round(inRate.part),
        peer: Math.round(inRate.flat),
        unit: 'objects/s',
        ratio: Number((inRate.part / inRate.flat).toFixed(2)),
        classes: IN_CLASSES,
        perClass: IN_PER,
        server: 'bench/storage-list-server.mjs',
      },
    },
    objects: N,
  }),
);
process.exit(0);
