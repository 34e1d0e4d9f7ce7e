import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Adam,
  DataLoader,
  ImageFolder,
  CPU_BF16_MIN_IMAGE_SIZE,
  Trainer,
  UploadQueue,
  cpuHasNativeBf16,
  checkpoint,
  createStorage,
  load,
  readEvents,
  resnet18,
  startGcsEmulator,
  transforms as T,
  upload,
} from '../../lib';
import type { GcsEmulator } from '../../lib';
import { fashionFolders } from './fixtures';
import { PYTHON, tempDir } from '../support/peer';

const root = path.resolve(__dirname, '../..');
const CLI = path.join(root, 'dist/cli.js');
const norm = T.Normalize([0.286, 0.286, 0.286], [0.353, 0.353, 0.353]);

let data: { train: string; val: string };
let emu: GcsEmulator;

beforeAll(async () => {
  data = await fashionFolders(6, 3);
  emu = await startGcsEmulator();
  process.env.STORAGE_EMULATOR_HOST = emu.url;
});
afterAll(async () => {
  await emu?.stop();
});

function loaders(seed = 1) {
  const train = new DataLoader(
    new ImageFolder(data.train, { transform: [T.Resize([32, 32]), T.RandomHorizontalFlip(), norm] }),
    { batchSize: 16, shuffle: true, seed, numWorkers: 2 },
  );
  const val = new DataLoader(new ImageFolder(data.val, { transform: [T.Resize([32, 32]), norm] }), { batchSize: 16 });
  return { train, val };
}

describe('Trainer.fit', () => {
  it('saves checkpoints at the right epochs, uploads them, logs metrics, TensorBoard and a report', async () => {
    const dir = tempDir('fit');
    const { train, val } = loaders();
    const model = resnet18({ numClasses: 10 });
    const upload = new UploadQueue('gs://torchline-test-fit/ckpt/');
    const trainer = new Trainer();
    const events: string[] = [];
    trainer.on('checkpoint', (c) => events.push(`checkpoint ${c.epoch}`));
    trainer.on('epochEnd', (r) => events.push(`epoch ${r.epoch}`));
    trainer.on('upload', ({ path: p }) => events.push(`upload ${path.basename(p)}`));
    const r = await trainer.fit({
      model,
      optimizer: new Adam(model.parameters()),
      train,
      val,
      epochs: 3,
      checkpointEvery: 2,
      keepLast: 5,
      checkpointDir: path.join(dir, 'ckpt'),
      logDir: path.join(dir, 'run'),
      upload,
      progress: null,
      handleSignals: false,
    });
    expect(r.interrupted).toBe(false);
    expect(r.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(r.checkpoints.map((c) => c.epoch).sort()).toEqual([2, 3]);
    expect(events.filter((e) => e.startsWith('checkpoint'))).toEqual(['checkpoint 2', 'checkpoint 3']);
    // Uploaded objects are complete copies of the local files.
    const [files] = await createStorage().bucket('torchline-test-fit').getFiles({ prefix: 'ckpt/' });
    expect(files.map((f) => f.name).sort()).toEqual([
      'ckpt/checkpoint-epoch-0002.pth',
      'ckpt/checkpoint-epoch-0003.pth',
    ]);
    for (const f of files) {
      const [buf] = await f.download();
      expect(buf.equals(fs.readFileSync(path.join(dir, 'ckpt', path.basename(f.name))))).toBe(true);
    }
    // metrics.jsonl, TensorBoard events (CRCs checked by readEvents), the report.
    const lines = fs
      .readFileSync(path.join(dir, 'run/metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.epoch)).toEqual([1, 2, 3]);
    const evFile = fs.readdirSync(path.join(dir, 'run')).find((f) => f.startsWith('events.out.tfevents.'))!;
    const evs = readEvents(path.join(dir, 'run', evFile));
    expect(evs[0].fileVersion).toBe('brain.Event:2');
    const epochEvents = evs.filter((e) => 'train/loss' in e.scalars);
    expect(epochEvents.map((e) => e.step)).toEqual([1, 2, 3]);
    expect(epochEvents[2].scalars['train/loss']).toBeCloseTo(r.history[2].trainLoss, 5);
    expect(epochEvents[2].scalars['val/top1']).toBeCloseTo(r.history[2].valTop1!, 5);
    expect(fs.readFileSync(r.reportPath!, 'utf8')).toMatch(/<svg[\s\S]*Top-1 accuracy/);
    // The checkpoint is a PyTorch file whose model loads into torchvision's resnet18 with strict=True.
    const ck = path.join(dir, 'ckpt/checkpoint-epoch-0003.pth');
    const py = execFileSync(
      PYTHON,
      [
        '-c',
        `
import sys, torch, torchvision
# torch 1.13's weights_only unpickler has no float opcode (BINFLOAT), so any
# optimizer state (lr, betas) needs torch >= 2 for weights_only=True.
ck = torch.load(sys.argv[1], weights_only=int(torch.__version__.split('.')[0]) >= 2)
m = torchvision.models.resnet18(num_classes=10)
m.load_state_dict(ck['model'], strict=True)
print(ck['epoch'], sorted(ck['optimizer']['state'][0].keys()))
`,
        ck,
      ],
      { encoding: 'utf8' },
    );
    expect(py.trim()).toBe("3 ['exp_avg', 'exp_avg_sq', 'step']");
  });

  it('evaluate() gives loss, top-1/top-5 and per-class accuracy consistent with each other', async () => {
    const { val } = loaders();
    const m = await new Trainer().evaluate(resnet18({ numClasses: 10 }), val, {
      classes: new ImageFolder(data.val).classes,
    });
    expect(m.n).toBe(30);
    expect(m.perClass).toHaveLength(10);
    expect(m.perClass.reduce((a, c) => a + c.correct, 0) / m.n).toBeCloseTo(m.top1, 10);
    expect(m.perClass[0].name).toBe('Ankle_boot');
    expect(m.top5).toBeGreaterThanOrEqual(m.top1);
  });

  it("precision 'auto' on CPU is decided by the first batch's image size, reported, and used by evaluate", async () => {
    const native = cpuHasNativeBf16();
    for (const px of [32, CPU_BF16_MIN_IMAGE_SIZE]) {
      const train = new DataLoader(new ImageFolder(data.val, { transform: [T.Resize([px, px]), norm] }), {
        batchSize: 15,
        numWorkers: 1,
      });
      const model = resnet18({ numClasses: 10 });
      const trainer = new Trainer();
      const seen: string[] = [];
      trainer.on('precision', (p) => seen.push(p.precision));
      const r = await trainer.fit({
        model,
        optimizer: new Adam(model.parameters(), { lr: 1e-3 }),
        train,
        epochs: 1,
        checkpointEvery: 0,
        progress: null,
        handleSignals: false,
      });
      const want = native && px >= CPU_BF16_MIN_IMAGE_SIZE ? 'bf16' : 'fp32';
      expect(seen).toEqual([want]);
      expect(r.precision?.precision).toBe(want);
      expect(r.precision?.channelsLast).toBe(want === 'bf16');
    }
  });

  it('resume in a new process continues exactly: weights bit-identical to an uninterrupted run', async () => {
    const dir = tempDir('resume');
    const script = path.join(dir, 'run.js');
    fs.writeFileSync(
      script,
      `
const tl = require(${JSON.stringify(path.join(root, 'dist'))});
const [trainDir, ckDir, epochs, resume, out, stopAfter] = process.argv.slice(2);
const T = tl.transforms;
(async () => {
  tl.manualSeed(7);
  const train = new tl.DataLoader(new tl.ImageFolder(trainDir, { transform: [T.Resize([32, 32]), T.RandomHorizontalFlip(), T.Normalize([0.3,0.3,0.3],[0.35,0.35,0.35])] }), { batchSize: 16, shuffle: true, seed: 3, numWorkers: 2 });
  const model = tl.resnet18({ numClasses: 10 });
  const optimizer = new tl.Adam(model.parameters(), { lr: 1e-3 });
  const trainer = new tl.Trainer();
  if (stopAfter !== '-') trainer.on('step', ({ globalStep }) => { if (globalStep === Number(stopAfter)) trainer.requestStop('test'); });
  await trainer.fit({ model, optimizer, train, epochs: Number(epochs), checkpointEvery: 1, checkpointDir: ckDir, keepLast: 10,
    resume: resume === '-' ? undefined : resume, progress: null, handleSignals: false, precision: process.env.TL_PRECISION || 'auto' });
  tl.save(out, model.stateDict());
})().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    const node = (...args: string[]) =>
      execFileSync(process.execPath, [script, data.train, ...args], { encoding: 'utf8' });
    node(path.join(dir, 'a'), '3', '-', path.join(dir, 'full.pth'), '-');
    // Stopped mid-epoch 2 (step 6 of 4 per epoch), then resumed from that checkpoint in a new process.
    node(path.join(dir, 'b'), '3', '-', path.join(dir, 'part.pth'), '6');
    const saved = fs.readdirSync(path.join(dir, 'b')).filter((f) => f.endsWith('.pth'));
    expect(saved).toContain('checkpoint-epoch-0002.pth');
    node(path.join(dir, 'b'), '3', path.join(dir, 'b/checkpoint-epoch-0002.pth'), path.join(dir, 'resumed.pth'), '-');
    const full = load(path.join(dir, 'full.pth')) as Map<string, any>;
    const resumed = load(path.join(dir, 'resumed.pth')) as Map<string, any>;
    expect([...resumed.keys()]).toEqual([...full.keys()]);
    for (const [k, t] of full) {
      const a = Buffer.from(t.toTypedArray().buffer);
      const b = Buffer.from(resumed.get(k).toTypedArray().buffer);
      expect(a.equals(b), k).toBe(true);
    }
  });
});

describe('CLI', () => {
  const cli = (args: string[]) => {
    try {
      return {
        code: 0,
        out: execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
      };
    } catch (e) {
      const err = e as { status: number; stderr: string; stdout: string };
      return { code: err.status, out: err.stdout + err.stderr };
    }
  };

  it.each([
    [['train', '--epochs', 'zero'], /--epochs must be an integer >= 1, got 'zero'/],
    [['train', '--batch-size', '0'], /--batch-size must be an integer >= 1, got '0'/],
    [['train', '--model', 'vgg16'], /--model must be resnet18/],
    [['train', '--bogus'], /Unknown option '--bogus'/],
    [
      ['train', '--train-dir', '/nonexistent/x', '--val-dir', '/nonexistent/y'],
      /train folder \/nonexistent\/x does not exist/,
    ],
    [['train', '--bucket', 'Bad_Bucket!'], /is not a valid bucket name/],
    [['list'], /list needs a LOCATION/],
    [['eval', '--data', '/tmp'], /--checkpoint is required/],
    [['nope'], /unknown command 'nope'/],
  ])('%j fails with a clear message and exit code 2', (args, msg) => {
    const r = cli(args as string[]);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(msg as RegExp);
    expect(r.out).not.toMatch(/\n\s+at /);
  });

  it('--help works for every command', () => {
    for (const c of ['train', 'eval', 'list', 'download', 'upload', 'bench', 'doctor', 'demo']) {
      const r = cli([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.out).toMatch(/^Usage: torchline/);
    }
  });

  it('an unreachable bucket is a clear error, not a hang', () => {
    const t0 = Date.now();
    const r = (() => {
      try {
        execFileSync(process.execPath, [CLI, 'list', 'gs://torchline-no-such/x/'], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 60_000,
          env: { ...process.env, STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9' },
        });
        return { code: 0, out: '' };
      } catch (e) {
        const err = e as { status: number; stderr: string };
        return { code: err.status, out: err.stderr };
      }
    })();
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/ECONNREFUSED|connect|unreachable|cannot/i);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it('SIGINT mid-epoch leaves a loadable checkpoint, uploaded whole, and exits cleanly', async () => {
    const dir = tempDir('sigint');
    const bucket = 'torchline-test-sigint';
    await upload(data.train, `gs://${bucket}/train_data/`, { progress: false });
    await upload(data.val, `gs://${bucket}/val_data/`, { progress: false });
    const child = spawn(
      process.execPath,
      [
        CLI,
        'train',
        '--bucket',
        bucket,
        '--train-dir',
        path.join(dir, 'data/train'),
        '--val-dir',
        path.join(dir, 'data/val'),
        '--model',
        'resnet18',
        '--image-size',
        '32',
        '--augment',
        'flip',
        '--epochs',
        '50',
        '--batch-size',
        '8',
        '--checkpoint-dir',
        path.join(dir, 'ckpt'),
        '--log-dir',
        path.join(dir, 'run'),
        '--checkpoint-prefix',
        'ck',
      ],
      { env: { ...process.env, TORCHLINE_PROGRESS_MS: '0' } },
    );
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        // A line per step (TORCHLINE_PROGRESS_MS=0): interrupt after step 2 of the first epoch's 8.
        if (/epoch 1\/50 2\/8 /.test(err)) {
          clearInterval(t);
          child.kill('SIGINT');
          resolve();
        }
      }, 50);
      child.on('exit', () => reject(new Error(`exited early: ${err}`)));
    });
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(130);
    expect(err).toMatch(/SIGINT: finishing the current step/);
    const files = fs.readdirSync(path.join(dir, 'ckpt')).filter((f) => f.endsWith('.pth'));
    expect(files).toEqual(['checkpoint-epoch-0001.pth']);
    const ck = load(path.join(dir, 'ckpt', files[0])) as Map<string, unknown>;
    expect(ck.get('epoch')).toBe(0);
    expect(Number(ck.get('batch'))).toBeGreaterThan(0);
    expect(checkpoint.extractStateDict(ck).size).toBeGreaterThan(100);
    expect(
      fs.readdirSync(path.join(dir, 'ckpt')).filter((f) => !f.endsWith('.pth') && f !== 'checkpoints.json'),
    ).toEqual([]);
    // The upload finished before exit and is byte-identical (no partial object).
    const [objects] = await createStorage().bucket(bucket).getFiles({ prefix: 'ck/' });
    expect(objects.map((o) => o.name)).toEqual(['ck/checkpoint-epoch-0001.pth']);
    const [buf] = await objects[0].download();
    expect(buf.equals(fs.readFileSync(path.join(dir, 'ckpt', files[0])))).toBe(true);
  });
});
