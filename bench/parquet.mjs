// bench/parquet: images/s into the DataLoader from one Spark binaryFile table
// versus the same JPEGs as one object each, both in the GCS emulator behind a
// proxy adding 20 ms per request (a stand-in for the round trip to GCS), and
// the table versus the same JPEGs as local files.
//
//   table over gs://     ParquetImageDataset: footers, then one byte-range GET per
//                        row group, read ahead of the loader
//   objects over gs://   what the CLI does for class folders: partitioned listing,
//                        verified parallel download (64 at a time), ImageFolder
//   local                the table on disk vs the JPEG files on disk
//
// The JPEGs are ~160x120 crops of Debian's opencv-doc photos (quality 90) in 10
// class folders; the table is written by the Python peer (pyarrow) in Spark's
// layout (label=N/part-....snappy.parquet, _SUCCESS), 500 rows per row group.
// Each figure counts listing/opening, transfer and decoding: time to the
// last batch.
//
//   npm run bench -- parquet [--images 10000] [--rtt 20] [--rows-per-group 500]
import { startLatencyProxy } from './storage-latency-proxy.mjs';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import sharp from 'sharp';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(import.meta.url);
const tl = await import('../dist/index.js');
const { DataLoader, ImageFolder, ParquetImageDataset, transforms: T } = tl.default ?? tl;
const st = tl.storage ?? tl.default.storage;
const { PYTHON } = require('../scripts/peer-python.js');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('images', 10000);
const RTT = arg('rtt', 20);
const RG_ROWS = arg('rows-per-group', 500);
const CLASSES = 10;
const BUCKET = 'bench-pq';
const PHOTOS = '/usr/share/doc/opencv-doc/examples/data';

// 1. The JPEGs (cached in tmp), then the table.
const work = path.join(os.tmpdir(), `torchline-bench-parquet-${N}`);
const jpegDir = path.join(work, 'jpeg');
const tableDir = path.join(work, 'table');
if (!fs.existsSync(path.join(work, '.complete-v1'))) {
  fs.rmSync(work, { recursive: true, force: true });
  const photos = fs
    .readdirSync(PHOTOS)
    .filter((f) => f.endsWith('.jpg'))
    .sort();
  const metas = await Promise.all(photos.map((p) => sharp(path.join(PHOTOS, p)).metadata()));
  let rnd = 777;
  const rand = () => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const rows = [];
  const jobs = [];
  for (let i = 0; i < N; i++) {
    const k = i % photos.length;
    const { width, height } = metas[k];
    const cw = Math.min(width, 160 + Math.floor(rand() * (width - 160))),
      ch = Math.min(height, Math.floor((cw * 3) / 4));
    const left = Math.floor(rand() * (width - cw + 1)),
      top = Math.floor(rand() * (height - ch + 1));
    const cls = i % CLASSES;
    const file = path.join(jpegDir, `class-${cls}`, `img-${String(i).padStart(5, '0')}.jpg`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    jobs.push(
      sharp(path.join(PHOTOS, photos[k]))
        .extract({ left, top, width: cw, height: ch })
        .resize(160, 120)
        .jpeg({ quality: 90 })
        .toFile(file),
    );
    if (jobs.length >= 32) await Promise.all(jobs.splice(0));
    rows.push({ file, label: cls });
  }
  await Promise.all(jobs);
  execFileSync(PYTHON, [path.join(root, 'test/parquet/make_table.py')], {
    input: JSON.stringify({ out: tableDir, kind: 'binaryFile', rowGroupRows: RG_ROWS, filesPerPartition: 1, rows }),
    maxBuffer: 1 << 26,
  });
  fs.writeFileSync(path.join(work, '.complete-v1'), '');
}
const walk = (dir, rel = '') =>
  fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? walk(dir, r) : [r];
  });
const tableFiles = walk(tableDir);
const tableBytes = tableFiles.reduce((s, f) => s + fs.statSync(path.join(tableDir, f)).size, 0);
console.log(
  `${N} JPEGs of 160x120 in ${CLASSES} classes; binaryFile table: ${tableFiles.filter((f) => f.endsWith('.parquet')).length} part files, ${(tableBytes / 2 ** 20).toFixed(1)} MiB, ${RG_ROWS} rows per row group`,
);

// 2. The emulator in its own process, and the latency proxy.
async function startEmulatorProcess() {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(path.join(root, 'dist/storage/emulator.js'))}).startGcsEmulator().then((e) => console.log(e.url))`,
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d).trim()));
    child.once('exit', (c) => reject(new Error(`emulator exited ${c}`)));
  });
  return { url, stop: () => child.kill() };
}

const emu = await startEmulatorProcess();
const direct = st.createStorage({ emulatorHost: emu.url });
const uploads = [
  ...tableFiles.map((f) => ({ name: `table/${f}`, file: path.join(tableDir, f) })),
  ...walk(jpegDir).map((f) => ({ name: `objects/${f}`, file: path.join(jpegDir, f) })),
];
{
  let next = 0;
  const b = direct.bucket(BUCKET);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < uploads.length) {
        const u = uploads[next++];
        await b.file(u.name).save(fs.readFileSync(u.file), { resumable: false, validation: false });
      }
    }),
  );
  console.log(`seeded ${uploads.length} objects in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const proxy = await startLatencyProxy(emu.url, RTT);
const viaProxy = st.createStorage({ emulatorHost: proxy.url });

// 3. The runs: images/s to the last batch.
const transform = [T.Resize(112), T.CenterCrop(112), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])];
// prefetch 4 (for every path alike): a row group's Parquet decoding (snappy, ~20 ms for 500 rows here) runs on
// the JS thread, and two batches in flight are not always enough to keep the decode threads busy through it.
const opts = { batchSize: 64, shuffle: true, seed: 0, transform, onError: 'raise', prefetch: 4 };
async function drain(loader) {
  let n = 0;
  for await (const b of loader) {
    n += b.indices.length;
    b.images.dispose();
    b.labels.dispose();
  }
  if (n !== N) throw new Error(`loaded ${n} images, expected ${N}`);
}
async function timed(name, fn) {
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  console.log(`  ${name.padEnd(44)} ${(N / s).toFixed(0).padStart(6)} images/s  (${s.toFixed(2)} s)`);
  return N / s;
}
const best = async (name, runs, fn) => {
  let b = 0;
  for (let i = 0; i < runs; i++) b = Math.max(b, await timed(name, fn));
  return b;
};

console.log('local (best of 4, alternating):');
let localFiles = 0,
  localTable = 0;
for (let r = 0; r < 4; r++) {
  localFiles = Math.max(
    localFiles,
    await timed('JPEG files, ImageFolder', () => drain(new DataLoader(new ImageFolder(jpegDir), opts))),
  );
  localTable = Math.max(
    localTable,
    await timed('binaryFile table, ParquetImageDataset', async () =>
      drain(new DataLoader(await ParquetImageDataset.open(tableDir), opts)),
    ),
  );
}
console.log(`with ${RTT} ms added per request:`);
const gsTable = await best('table: open + row-group range reads', 2, async () =>
  drain(new DataLoader(await ParquetImageDataset.open(`gs://${BUCKET}/table/`, { storage: viaProxy }), opts)),
);
const dl = fs.mkdtempSync(path.join(os.tmpdir(), 'torchline-bench-pq-dl-'));
const gsObjects = await timed('objects: list + download (64 conc.) + ImageFolder', async () => {
  const listing = await st.listPartitioned(`gs://${BUCKET}/objects/`, { storage: viaProxy, concurrency: 32 });
  await st.download(`gs://${BUCKET}/objects/`, dl, {
    storage: viaProxy,
    objects: listing.files.map((r) => r.object),
    concurrency: 64,
    progress: false,
  });
  await drain(new DataLoader(new ImageFolder(dl), opts));
});
fs.rmSync(dl, { recursive: true, force: true });
proxy.close();
emu.stop();

const ratio = gsTable / gsObjects;
const localRatio = localTable / localFiles;
console.log(
  `gs:// table ${ratio.toFixed(2)}x the per-object path (target >= 5x); local table ${(localRatio * 100).toFixed(1)}% of JPEG files (target >= 90%)`,
);
console.log(
  JSON.stringify({
    bench: 'parquet',
    torchline: Math.round(gsTable),
    peer: Math.round(gsObjects),
    unit: 'images/s into the DataLoader (gs:// via 20 ms proxy): binaryFile table vs one object per image',
    ratio: Number(ratio.toFixed(2)),
    local: { table: Math.round(localTable), files: Math.round(localFiles), ratio: Number(localRatio.toFixed(3)) },
    images: N,
    rttMs: RTT,
    rowsPerGroup: RG_ROWS,
    cpus: os.availableParallelism(),
  }),
);
process.exit(0);
