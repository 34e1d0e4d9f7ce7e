#!/usr/bin/env node
// Seeded mutation fuzzing of the readers that take untrusted bytes:
//   checkpoint  torch.save zip archives (zip + pickle + storages), CRC checks on and off
//   legacy      pre-1.6 torch.save files (needs the Python peer's torch to make the seed file)
//   pickle      the pickle of an archive alone, CRC checks off (every opcode path)
//   zip         the zip reader on its own
//   safetensors safetensors headers and offsets
//   header      lib/storage/image-header.ts (JPEG/PNG/GIF/BMP headers for the Spark image schema)
//   jpeg        the native JPEG sniffer, decoder and pipeline (region decode, DCT scaling, resampler, CMYK)
// Each target runs in its own child process for --seconds (default 60): a native crash kills only
// that child, and the parent prints the seed that replays it. A finding (an error of the wrong
// kind, a hang of the pipeline, a crash) is saved under --out with the replay command.
//
//   npm run build:ts && node scripts/fuzz.mjs --seconds 120 [--seed 1] [--targets jpeg,pickle] [--out fuzz-out]
import { spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGETS = ['checkpoint', 'legacy', 'pickle', 'zip', 'safetensors', 'header', 'jpeg'];

function args() {
  const a = { seconds: 60, seed: 1, targets: TARGETS, out: path.join(root, 'fuzz-out'), child: null };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    const k = v[i];
    const next = () => {
      if (i + 1 >= v.length) throw new Error(`${k} needs a value`);
      return v[++i];
    };
    if (k === '--seconds') a.seconds = Number(next());
    else if (k === '--seed') a.seed = Number(next());
    else if (k === '--targets') a.targets = next().split(',');
    else if (k === '--out') a.out = path.resolve(next());
    else if (k === '--child') a.child = next();
    else if (k === '-h' || k === '--help') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 15).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  for (const t of a.targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t}; targets: ${TARGETS.join(', ')}`);
  if (!(a.seconds > 0) || !Number.isSafeInteger(a.seed) || a.seed < 0) throw new Error('--seconds > 0 and --seed a non-negative integer');
  return a;
}

// ---- mutation ------------------------------------------------------------------

function rng(seed) {
  let s = seed >>> 0;
  const r = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  r.int = (n) => Math.floor(r() * n);
  return r;
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x40];

/** One to a few mutations of `base`: bit flips, byte sets, interesting values, cuts, splices, repeats. */
function mutate(base, r) {
  let b = Buffer.from(base);
  const n = 1 + r.int(r() < 0.8 ? 3 : 12);
  for (let k = 0; k < n; k++) {
    if (b.length === 0) break;
    const pos = r.int(b.length);
    switch (r.int(8)) {
      case 0: b[pos] ^= 1 << r.int(8); break;
      case 1: b[pos] = r.int(256); break;
      case 2: b[pos] = INTERESTING[r.int(INTERESTING.length)]; break;
      case 3: { // a 16/32-bit field set to an edge value (sizes, counts, offsets)
        const v = [0, 0xffff, 0x7fff, 0x8000, 1, 0xffffffff, 0x7fffffff][r.int(7)];
        if (pos + 4 <= b.length) (r() < 0.5 ? b.writeUInt32LE(v >>> 0, pos) : b.writeUInt32BE(v >>> 0, pos));
        else if (pos + 2 <= b.length) b.writeUInt16BE(v & 0xffff, pos);
        break;
      }
      case 4: b = b.subarray(0, pos); break; // truncate
      case 5: { // delete a run
        const len = 1 + r.int(Math.min(64, b.length - pos));
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + len)]);
        break;
      }
      case 6: { // duplicate a run elsewhere
        const len = 1 + r.int(Math.min(64, b.length - pos));
        const at = r.int(b.length);
        b = Buffer.concat([b.subarray(0, at), b.subarray(pos, pos + len), b.subarray(at)]);
        break;
      }
      case 7: { // insert random bytes
        const len = 1 + r.int(16);
        const ins = Buffer.alloc(len);
        for (let i = 0; i < len; i++) ins[i] = r.int(256);
        b = Buffer.concat([b.subarray(0, pos), ins, b.subarray(pos)]);
        break;
      }
    }
  }
  return b;
}

// ---- targets (run in the child) -----------------------------------------------

function targets(tl) {
  const { Tensor, load, safetensors, CheckpointError, checkpoint } = tl;
  const { ZipReader, bufferSource } = require(path.join(root, 'dist/checkpoint/zip.js'));
  const { parseImageHeader } = require(path.join(root, 'dist/storage/image-header.js'));
  const { binding } = require(path.join(root, 'dist/native.js'));
  const badCheckpointError = (e) => !(e instanceof CheckpointError);

  const archive = () =>
    checkpoint.serialize({
      model: new Map([
        ['w', Tensor.randn([4, 3])],
        ['b', Tensor.randn([4])],
        ['n', Tensor.from(new BigInt64Array([3n]), [])],
        ['h', Tensor.from(new Uint16Array([0x3c00, 1]), [2], { dtype: 'float16' })],
      ]),
      nested: { list: [1, -2, 2 ** 40, -(2n ** 70n), 0.25, 'héllo', null, true], tuple: [1, 'a'] },
      epoch: 7,
    });

  const legacySeed = () => {
    const py = require(path.join(root, 'scripts/peer-python.js')).PYTHON;
    const f = path.join(os.tmpdir(), `torchline-fuzz-legacy-${process.pid}.pth`);
    execFileSync(py, ['-c', `
import torch, collections
sd = collections.OrderedDict([('w', torch.arange(12.).view(4, 3)), ('v', torch.arange(12.).view(4, 3)[1:, :2]),
  ('i', torch.tensor([1, 2], dtype=torch.int64)), ('h', torch.tensor([1.5], dtype=torch.float16))])
torch.save({'model': sd, 'epoch': 3, 'list': [1, 2.5, 'x', None, 2**70]}, ${JSON.stringify(f)}, _use_new_zipfile_serialization=False)`]);
    const b = fs.readFileSync(f);
    fs.rmSync(f);
    return b;
  };

  const jpegSeeds = () => {
    const dir = '/usr/share/doc/opencv-doc/examples/data';
    const small = fs.existsSync(dir)
      ? fs.readdirSync(dir).filter((f) => f.endsWith('.jpg')).map((f) => fs.readFileSync(path.join(dir, f))).filter((b) => b.length < 60_000)
      : [];
    if (small.length === 0) throw new Error(`no seed JPEGs (${dir})`);
    return small.slice(0, 6);
  };

  return {
    checkpoint: {
      seeds: () => [archive()],
      run: (b, r) => load(b, { verifyCrc: r() < 0.5 }),
      bad: badCheckpointError,
    },
    legacy: { seeds: () => [legacySeed()], run: (b) => load(b), bad: badCheckpointError },
    pickle: {
      // Mutations aimed at the pickle: CRC checks off, so they reach the unpickler.
      seeds: () => [archive()],
      mutateRegion: (b) => {
        const e = new ZipReader(bufferSource(b)).get('archive/data.pkl');
        return [e.dataOffset, e.dataOffset + e.size];
      },
      run: (b) => load(b, { verifyCrc: false }),
      bad: badCheckpointError,
    },
    zip: {
      seeds: () => [archive()],
      run: (b) => {
        const z = new ZipReader(bufferSource(b));
        for (const e of z.entries.values()) z.read?.(e);
      },
      bad: badCheckpointError,
    },
    safetensors: {
      seeds: () => [safetensors.serialize(new Map([['a', Tensor.randn([3, 2])], ['b', Tensor.from(new Int32Array([1, 2]))]]), { k: 'v' })],
      run: (b) => safetensors.load(b),
      bad: badCheckpointError,
    },
    header: {
      seeds: () => [...jpegSeeds().slice(0, 2), Buffer.from('89504e470d0a1a0a0000000d49484452000000100000000808020000000000', 'hex')],
      run: (b, r) => {
        const h = parseImageHeader(b, r() < 0.5);
        if (h.kind === 'ok' && !(Number.isInteger(h.width) && h.width > 0 && Number.isInteger(h.height) && h.height > 0))
          throw new Error(`header parsed to a bad size ${h.width}x${h.height}`);
      },
      bad: () => true, // it returns 'invalid', it never throws
    },
    jpeg: {
      seeds: jpegSeeds,
      setup: () => {
        const T = tl.transforms;
        const specs = [
          T.toSpec(T.imagenetEval(64), { maxPixels: 4_000_000 }),
          T.toSpec(T.Compose([T.RandomResizedCrop(48), T.RandomHorizontalFlip()]), { uint8: true, maxPixels: 4_000_000 }),
          T.toSpec(T.CenterCrop(300), { maxPixels: 4_000_000, exifTranspose: false }),
        ];
        return specs.map((s) => new binding.data.DataPipeline(s, 1));
      },
      run: async (b, r, pipelines) => {
        binding.data.sniffJpeg(b, r() < 0.5);
        try {
          binding.data.decodeJpeg(b, [1, 2, 4, 8][r.int(4)], 64 << 20);
        } catch (e) {
          if (!(e instanceof Error) || e instanceof TypeError || e instanceof RangeError) throw e;
        }
        const p = pipelines[r.int(pipelines.length)];
        const batch = p.newBatch(1);
        const [status] = await p.run(batch, [b], [0], BigUint64Array.from([BigInt(r.int(1e9))]));
        batch.dispose();
        if (status.startsWith('fatal:')) throw new Error(`pipeline: ${status}`);
      },
      bad: () => true, // anything run() throws is a finding
    },
  };
}

// A target's run's memory may not pass this (RSS after a batch of 50 inputs).
const MAX_RSS = 4 * 2 ** 30;

// What the readers return (tensors in Maps, arrays and objects) is disposed
// at once, as a careful caller would, instead of waiting for GC.
function disposeAll(v, seen = new Set()) {
  if (!v || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (typeof v.dispose === 'function') return v.dispose();
  const items = v instanceof Map ? v.values() : Array.isArray(v) ? v : Object.values(v);
  for (const x of items) disposeAll(x, seen);
}

async function child(a) {
  const tl = require(path.join(root, 'dist'));
  const t = targets(tl)[a.child];
  const seeds = t.seeds();
  const state = t.setup?.();
  const r = rng(a.seed);
  const end = Date.now() + a.seconds * 1000;
  let n = 0;
  let rejected = 0;
  let peakRss = 0;
  const findings = [];
  while (Date.now() < end) {
    for (let k = 0; k < 50; k++, n++) {
      const base = seeds[r.int(seeds.length)];
      let input;
      if (t.mutateRegion) {
        const [from, to] = t.mutateRegion(base);
        input = Buffer.concat([base.subarray(0, from), mutate(base.subarray(from, to), r), base.subarray(to)]);
        if (input.length !== base.length) input = Buffer.from(base); // a resized pickle would break the zip: skip
        else input = input.length ? input : base;
      } else input = mutate(base, r);
      try {
        disposeAll(await t.run(input, r, state));
      } catch (e) {
        rejected++;
        if (t.bad(e)) {
          const file = path.join(a.out, `${a.child}-seed${a.seed}-iter${n}.bin`);
          fs.mkdirSync(a.out, { recursive: true });
          fs.writeFileSync(file, input);
          findings.push({ iteration: n, file, error: String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e) });
          if (findings.length >= 5) break;
        }
      }
    }
    if (findings.length >= 5) break;
    // Let the event loop turn: N-API finalizers of what GC collected run
    // from it, and a loop that never yields holds every native tensor it
    // made (an earlier run of this script grew to 21 GB and was OOM-killed).
    await new Promise((res) => setImmediate(res));
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    if (rss > MAX_RSS) {
      findings.push({ iteration: n, file: null, error: `memory grew to ${(rss / 2 ** 30).toFixed(1)} GiB: a leak in ${a.child}` });
      break;
    }
  }
  process.stdout.write(JSON.stringify({ target: a.child, seed: a.seed, iterations: n, rejected, peakRssMiB: Math.round(peakRss / 2 ** 20), findings }) + '\n');
}

function parent(a) {
  let failed = false;
  console.log(`fuzz: ${a.targets.join(', ')}; ${a.seconds} s each; seed ${a.seed}`);
  for (const target of a.targets) {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', target, '--seconds', String(a.seconds), '--seed', String(a.seed), '--out', a.out], {
      encoding: 'utf8',
      timeout: (a.seconds + 120) * 1000,
      maxBuffer: 64 << 20,
    });
    const secs = ((Date.now() - t0) / 1000).toFixed(0);
    const replay = `node scripts/fuzz.mjs --targets ${target} --seed ${a.seed} --seconds ${a.seconds}`;
    if (r.status !== 0 || r.signal) {
      failed = true;
      console.log(`${target}: CRASHED (${r.signal ?? `exit ${r.status}`}) after ${secs} s; replay: ${replay}\n${(r.stderr || '').slice(-2000)}`);
      continue;
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop());
    console.log(`${target}: ${res.iterations} inputs in ${secs} s, ${res.rejected} rejected as bad input, peak RSS ${res.peakRssMiB} MiB, ${res.findings.length} findings`);
    for (const f of res.findings) {
      failed = true;
      console.log(`  iteration ${f.iteration}: ${f.error}\n  input: ${f.file ?? '-'}; replay: ${replay}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

const a = args();
if (!fs.existsSync(path.join(root, 'dist/index.js'))) {
  console.error('fuzz: build the library first (npm run build:ts)');
  process.exit(2);
}
if (a.child) await child(a);
else parent(a);
