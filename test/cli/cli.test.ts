// The CLI from the shell: exit codes (0 done, 1 torchline's fault, 2 the input's), one-line errors,
// help without LibTorch, eval naming a checkpoint's architecture, and what `demo` may delete.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataLoader, ImageFolder, resnet18, resnet50, save, Trainer, transforms as T } from '../../lib';
import { isUserFault, report, CliError } from '../../lib/cli/errors';
import { writeFashionMnistFolder } from '../../lib/data/fashion-mnist';
import { tempDir } from '../support/peer';

const root = path.resolve(__dirname, '../..');
const CLI = path.join(root, 'dist/cli.js');
const COMMANDS = ['train', 'eval', 'list', 'download', 'upload', 'bench', 'doctor', 'demo'];
// Reports at exit whether the addon (dist/native.js or any .node file) was loaded.
const PROBE = path.join(root, 'test/cli/addon-probe.cjs');

function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; cliPath?: string; timeout?: number } = {}) {
  const r = spawnSync(process.execPath, ['-r', PROBE, opts.cliPath ?? CLI, ...args], {
    encoding: 'utf8',
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    timeout: opts.timeout ?? 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One line on stderr, no stack trace. */
function expectOneLine(stderr: string, re: RegExp) {
  const lines = stderr
    .trimEnd()
    .split('\n')
    .filter((l) => !l.startsWith('ADDON LOADED'));
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(re);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('torchline --help', () => {
  it('lists every command and loads no addon', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(r.stderr).not.toMatch(/ADDON LOADED/);
  });

  it.each(COMMANDS)('%s --help prints its usage without loading the addon', (c) => {
    const r = cli([c, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: torchline ${c}`));
    expect(r.stderr).not.toMatch(/ADDON LOADED/);
  });

  it('doctor does load it (the probe sees a loaded addon)', () => {
    const r = cli(['doctor']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/ADDON LOADED/);
  });

  it('works from a copy of dist/ with no node_modules at all (so nothing native can be reached)', () => {
    const bare = tempDir('cli-bare');
    fs.cpSync(path.join(root, 'dist'), path.join(bare, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(bare, 'package.json'));
    for (const c of ['', ...COMMANDS]) {
      const r = cli(c ? [c, '--help'] : ['--help'], { cliPath: path.join(bare, 'dist/cli.js') });
      expect(r.code, `${c} ${r.stderr}`).toBe(0);
    }
  });
});

describe('usage, data and network errors: exit 2, one line', () => {
  const unreachable = { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9' };
  it.each([
    [['list', '/nonexistent/torchline'], {}, /^torchline: cannot list \/nonexistent\/torchline: .*does not exist/],
    [
      ['list', 'gs://torchline-no-such/x/'],
      unreachable,
      /^torchline: cannot list gs:\/\/torchline-no-such\/x\/: .*ECONNREFUSED/,
    ],
    [
      ['download', 'gs://torchline-no-such/x/', '/tmp/torchline-never'],
      unreachable,
      /^torchline: cannot download .*ECONNREFUSED/,
    ],
    [
      ['upload', 'package.json', 'gs://torchline-no-such/x/'],
      unreachable,
      /^torchline: cannot upload package.json .*ECONNREFUSED/,
    ],
    [
      ['download', 'gs://b/x/', '/tmp/x', '--concurrency', '0'],
      {},
      /--concurrency must be a positive integer, got '0'/,
    ],
    [['train', '--bogus'], {}, /^torchline: Unknown option '--bogus' \(torchline train --help lists them\)$/],
    [
      ['train', '--model', 'vgg16'],
      {},
      /--model must be resnet18, resnet34, resnet50, resnet101, resnet152, got 'vgg16'/,
    ],
    [['bench'], {}, /^torchline: bench needs a NAME: .*train-step/],
    [['bench', 'nope'], {}, /^torchline: unknown bench 'nope': .*train-step/],
    [['nope'], {}, /^torchline: unknown command 'nope'/],
  ] as [string[], NodeJS.ProcessEnv, RegExp][])('%j', (args, env, re) => {
    const r = cli(args, { cwd: root, env });
    expect(r.code, r.stderr).toBe(2);
    expectOneLine(r.stderr, re);
  });

  it('train: a class folder without images, or a missing --resume file, is a data error', () => {
    const dir = tempDir('cli-train-empty');
    fs.mkdirSync(path.join(dir, 'train/cat'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'val'));
    const args = ['train', '--train-dir', path.join(dir, 'train'), '--val-dir', path.join(dir, 'val')];
    let r = cli(args);
    expect(r.code, r.stderr).toBe(2);
    expectOneLine(r.stderr, /train: Found no valid file for the classes cat/);
    r = cli([...args, '--resume', path.join(dir, 'nope.pth')]);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, /--resume .*nope\.pth: no such file/);
  });

  it('--verbose adds the stack trace', () => {
    const r = cli(['list', '/nonexistent/torchline', '--verbose']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});

describe('eval', () => {
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('cli-eval');
    await writeFashionMnistFolder('t10k', path.join(dir, 'data'), 2);
    save(path.join(dir, 'r18.pth'), resnet18({ numClasses: 10 }).stateDict());
    save(path.join(dir, 'r18-7.pth'), resnet18({ numClasses: 7 }).stateDict());
    fs.writeFileSync(path.join(dir, 'junk.pth'), 'not a checkpoint');
  });
  const run = (...args: string[]) => cli(['eval', '--data', 'data', '--image-size', '32', ...args], { cwd: dir });

  it('builds the architecture the checkpoint holds when --model is left out, and names it', () => {
    const r = run('--checkpoint', 'r18.pth', '--json');
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout);
    expect(m.model).toBe('resnet18');
    expect(m.n).toBe(20);
  });

  it("a --model other than the checkpoint's names the one it holds and suggests --model", () => {
    const r = run('--checkpoint', 'r18.pth', '--model', 'resnet50');
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, /r18\.pth holds a resnet18, not a resnet50: pass --model resnet18/);
  });

  it('a checkpoint for another number of classes is a clear error', () => {
    const r = run('--checkpoint', 'r18-7.pth');
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, /r18-7\.pth classifies 7 classes but data has 10 class folders/);
  });

  it('a file that is not a checkpoint, or a missing folder, is a data error', () => {
    expectOneLine(run('--checkpoint', 'junk.pth').stderr, /^torchline: junk\.pth: /);
    const r = cli(['eval', '--checkpoint', 'r18.pth', '--data', 'nowhere'], { cwd: dir });
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, /nowhere: no such file or folder/);
  });

  it('Trainer.evaluate refuses a model whose head does not match the classes', async () => {
    const loader = new DataLoader(new ImageFolder(path.join(dir, 'data'), { transform: [T.Resize([32, 32])] }), {
      batchSize: 4,
    });
    const classes = (loader.dataset as ImageFolder).classes;
    await expect(new Trainer().evaluate(resnet50({ numClasses: 3 }), loader, { classes })).rejects.toThrow(
      /the model's numClasses must be 10, the number of classes in the data .*got 3/,
    );
  });
});

describe('error reports', () => {
  it('internal errors: exit 1, one line, and a pointer to --verbose', () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'shape')");
    expect(isUserFault(bug)).toBe(false);
    expect(report(bug, false)).toEqual({
      code: 1,
      text: "torchline: internal error: Cannot read properties of undefined (reading 'shape') (--verbose for details)",
    });
    expect(report(bug, true).text).toMatch(/\n\s+at /);
  });

  it('input faults by class or code: exit 2', () => {
    const enoent = Object.assign(new Error('x'), { code: 'ENOENT' });
    const range = Object.assign(new RangeError('numClasses must be a positive integer, got 0'), {
      code: 'ERR_OUT_OF_RANGE',
    });
    for (const e of [new CliError('x'), enoent, range]) expect(report(e, false).code).toBe(2);
    class CheckpointError extends Error {}
    expect(isUserFault(new CheckpointError('bad zip'))).toBe(true);
    expect(isUserFault(new RangeError('Invalid array length'))).toBe(false);
  });
});

describe('demo', () => {
  it('refuses an --out folder it did not make, and deletes nothing there', () => {
    const out = tempDir('cli-demo-foreign');
    fs.writeFileSync(path.join(out, 'precious.txt'), 'mine');
    fs.mkdirSync(path.join(out, 'data'));
    const r = cli(['demo', '--quick', '--out', out]);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr, /holds files the demo did not write/);
    expect(fs.readdirSync(out).sort()).toEqual(['data', 'precious.txt']);
  });

  it('without firebase-tools: one line naming the package, before writing anything', () => {
    const bare = tempDir('cli-demo-bare');
    fs.cpSync(path.join(root, 'dist'), path.join(bare, 'dist'), { recursive: true });
    const out = path.join(bare, 'out');
    const r = cli(['demo', '--quick', '--out', out], { cliPath: path.join(bare, 'dist/cli.js'), cwd: bare });
    expect(r.code).toBe(2);
    expectOneLine(
      r.stderr,
      /firebase-tools, an optional peer dependency: npm install --save-dev --ignore-scripts firebase-tools@/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  it('--quick runs every step, and a rerun replaces only what the demo wrote', () => {
    const out = tempDir('cli-demo');
    fs.writeFileSync(path.join(out, '.torchline-demo'), '');
    fs.mkdirSync(path.join(out, 'data/train/stale'), { recursive: true });
    fs.writeFileSync(path.join(out, 'data/train/stale/old.jpg'), '');
    fs.writeFileSync(path.join(out, 'notes.txt'), 'kept');
    const r = cli(['demo', '--quick', '--out', out], { timeout: 300_000, env: { TORCHLINE_PROGRESS_MS: '60000' } });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    expect(summary).toMatchObject({ demo: 'fashion-mnist', trainImages: 200, valImages: 100 });
    expect(summary.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.stdout).toMatch(/uploaded\s+gs:\/\/torchline-demo\/checkpoints\/checkpoint-epoch-0001\.pth/);
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('kept');
    expect(fs.existsSync(path.join(out, 'data/train/stale'))).toBe(false);
    expect(fs.readdirSync(path.join(out, 'data/train')).length).toBe(10);
  });
});
