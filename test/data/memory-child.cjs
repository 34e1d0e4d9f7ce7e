// Loads files through a DataLoader in a fresh process and reports its memory
// (test/data/images.test.ts): peak RSS must not grow with hostile files, and
// RSS must come back down after a large one.
// argv: <torchline dist dir> <json options>  (files, numWorkers, transform: 'eval' | 'train', repeat)
const fs = require('node:fs');
const { DataLoader, ManifestDataset, transforms: T } = require(process.argv[2]);
const o = JSON.parse(process.argv[3]);

function mem() {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)[1]);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

async function run(files) {
  const transform = o.transform === 'train' ? T.imagenetTrain(224) : T.imagenetEval(224);
  const rows = files.map((uri, i) => ({ uri, label: i % 2 }));
  const reasons = [];
  const dl = new DataLoader(new ManifestDataset(rows), {
    transform,
    batchSize: 2,
    numWorkers: o.numWorkers,
    seed: 1,
    onError: 'skip',
    log: (m) => reasons.push(m),
  });
  let n = 0;
  for await (const b of dl) {
    n += b.images.shape[0];
    b.images.dispose();
    b.labels.dispose();
  }
  return { n, reasons };
}

(async () => {
  // Warm up on ordinary files: threads, buffers, sharp, the addon.
  await run(o.warm);
  await run(o.warm);
  const before = mem();
  let last;
  for (let i = 0; i < o.repeat; i++) last = await run(o.files);
  const after = mem();
  process.stdout.write(JSON.stringify({ before, after, ...last }) + '\n');
})().catch((e) => {
  process.stderr.write(String(e.stack) + '\n');
  process.exit(1);
});
