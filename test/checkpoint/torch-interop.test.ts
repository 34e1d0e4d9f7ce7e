// torchline <-> Python PyTorch 1.13 / torchvision 0.14, both directions.
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, load, loadAsync, save, safetensors, UnsafePickleError, CheckpointError, checkpoint } from '../../lib';
import { describeTensor, jsonable, manifest, runPeer, tmpDir } from './helpers';
import { withSeed } from '../support/seed';

let dir: string;
let fixtures: any;

beforeAll(() => {
  dir = tmpDir('ckpt-interop');
  fixtures = runPeer('prepare', dir);
});

describe('reading what torch.save wrote', () => {
  it("loads torchvision's resnet50().state_dict(): same keys in order, shapes, dtypes and bytes", () => {
    const sd = load(path.join(dir, 'resnet50.pth'));
    expect(sd).toBeInstanceOf(Map);
    expect(manifest(sd)).toEqual(fixtures.resnet50);
    expect(sd.size).toBe(320);
    expect(sd.get('bn1.num_batches_tracked').shape).toEqual([]);
  });

  it('loadAsync reads the same (reads on the pool, CRC-32s overlapped) and still refuses damage', async () => {
    const file = path.join(dir, 'resnet50.pth');
    expect(manifest(await loadAsync(file))).toEqual(fixtures.resnet50);
    const mixed = await loadAsync(path.join(dir, 'mixed.pth'));
    for (const [k, want] of Object.entries(fixtures.mixed)) expect([k, describeTensor(mixed[k])]).toEqual([k, want]);
    const bad = fs.readFileSync(file);
    bad[bad.length >> 1] ^= 0x40; // inside some storage
    fs.writeFileSync(path.join(dir, 'bad.pth'), bad);
    await expect(loadAsync(path.join(dir, 'bad.pth'))).rejects.toThrow(/CRC-32 mismatch in 'resnet50\/data\/\d+'/);
    await expect(loadAsync(path.join(dir, 'bad.pth'))).rejects.toBeInstanceOf(CheckpointError);
    // torch itself does not check: with verifyCrc off the damaged file loads, as in torch.load
    expect((await loadAsync(path.join(dir, 'bad.pth'), { verifyCrc: false })).size).toBe(320);
  });

  it('loads every dtype, views (offsets, strides, shared storages), Parameters and nested values', () => {
    const v = load(path.join(dir, 'mixed.pth'));
    for (const [k, want] of Object.entries(fixtures.mixed)) expect([k, describeTensor(v[k])]).toEqual([k, want]);
    expect(v.transposed.toArray()).toEqual([
      0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20, 3, 9, 15, 21, 4, 10, 16, 22, 5, 11, 17, 23,
    ]);
    expect(v.slice.toArray()).toEqual([8, 9, 10, 14, 15, 16]);
    expect(v.i64.toTypedArray()).toEqual(new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n, 2n ** 63n - 1n]));
    expect(v.sd).toBeInstanceOf(Map);
    expect([...v.sd.keys()]).toEqual(['w', 'b']);
    expect(v.sd.get('w').toArray()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(v.int_keys).toEqual(
      new Map<number, unknown>([
        [0, 1],
        [1, [2, 3]],
      ]),
    );
    expect(v.nested.list).toEqual([1, -2, 2 ** 40, -(2n ** 70n), 0.25, 'héllo', null, true, false]);
    expect(v.nested.tuple).toEqual([1, 'a']);
    expect(Object.isFrozen(v.nested.tuple)).toBe(true);
    expect(v.scalar.item()).toBe(2.5);
  });

  it('reads the legacy (pre-1.6) format: state dicts, every dtype, views', async () => {
    expect(manifest(load(path.join(dir, 'legacy-resnet18.pth')))).toEqual(fixtures.resnet18);
    expect(manifest(await loadAsync(path.join(dir, 'legacy-resnet18.pth')))).toEqual(fixtures.resnet18);
    expect(manifest(load(fs.readFileSync(path.join(dir, 'legacy-resnet18.pth'))))).toEqual(fixtures.resnet18);
    const v = load(path.join(dir, 'legacy-mixed.pth'));
    for (const [k, want] of Object.entries(fixtures.mixed)) expect([k, describeTensor(v[k])]).toEqual([k, want]);
    expect(v.nested.list).toEqual([1, -2, 2 ** 40, -(2n ** 70n), 0.25, 'héllo', null, true, false]);
  });

  it('a damaged legacy file gives a CheckpointError, never another error', () =>
    withSeed((random) => {
      const buf = fs.readFileSync(path.join(dir, 'legacy-mixed.pth'));
      for (const cut of [1, 10, 100, buf.length >> 1, buf.length - 1])
        expect(() => load(buf.subarray(0, cut))).toThrow(CheckpointError);
      for (let i = 0; i < 500; i++) {
        const bad = Buffer.from(buf);
        const pos = random.int(bad.length);
        bad[pos] ^= 1 + random.int(255);
        try {
          load(bad); // no CRCs in this format: a flipped data byte loads as a changed value
        } catch (e) {
          if (!(e instanceof CheckpointError))
            throw new Error(`flip at byte ${pos} (0x${bad[pos].toString(16)}): ${(e as Error).stack}`);
        }
      }
    }));

  it('reads deflated entries (a zip tool recompressed the archive)', () => {
    expect(manifest(load(path.join(dir, 'resnet18-deflated.pth')))).toEqual(fixtures.resnet18);
  });

  it('reads safetensors written by Python, with metadata', () => {
    const { tensors, metadata } = safetensors.loadWithMetadata(path.join(dir, 'py.safetensors'));
    expect(manifest(tensors)).toEqual(fixtures.safetensors);
    expect(metadata).toEqual({ format: 'pt', source: 'peer.py' });
  });
});

describe('refusing malicious checkpoints', () => {
  it('a pickle calling os.system is refused, naming the global, and runs nothing', () => {
    const marker = path.join(dir, 'PWNED');
    let err: unknown;
    try {
      load(path.join(dir, 'evil.pth'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsafePickleError);
    expect((err as UnsafePickleError).global).toBe('posix.system');
    expect((err as Error).message).toMatch(/posix\.system.*not a tensor/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('a legacy-format file calling os.system is refused too', () => {
    expect(() => load(path.join(dir, 'legacy-evil.pth'))).toThrow(UnsafePickleError);
    expect(fs.existsSync(path.join(dir, 'PWNED3'))).toBe(false);
  });

  it('protocol 4 (STACK_GLOBAL) calling builtins.eval is refused too', () => {
    expect(() => load(path.join(dir, 'evil4.pth'))).toThrow(/'builtins\.eval'/);
    expect(fs.existsSync(path.join(dir, 'PWNED2'))).toBe(false);
  });
});

describe('writing what torch.load reads', () => {
  it('state dicts, zip64, nested training state and safetensors load in Python with equal tensors', () => {
    const sd18: Map<string, Tensor> = load(path.join(dir, 'resnet18.pth'));
    save(path.join(dir, 'tl-resnet18.pth'), sd18);
    save(path.join(dir, 'tl-zip64.pth'), sd18, { zip64: 'always' });
    // zip64 records must read back here as well
    expect(manifest(load(path.join(dir, 'tl-zip64.pth')))).toEqual(fixtures.resnet18);

    const w = sd18.get('fc.weight')!;
    const b = sd18.get('fc.bias')!;
    const moments = (t: Tensor) => Tensor.randn(t.shape);
    const nested = {
      model: new Map([
        ['fc.weight', w],
        ['fc.bias', b],
      ]),
      optimizer: {
        state: new Map([
          [0, { step: Tensor.from(new Float32Array([5]), []), exp_avg: moments(w), exp_avg_sq: moments(w) }],
          [1, { step: Tensor.from(new Float32Array([5]), []), exp_avg: moments(b), exp_avg_sq: moments(b) }],
        ]),
        param_groups: [
          { lr: 0.001, betas: Object.freeze([0.9, 0.999]), eps: 1e-8, weight_decay: 0, amsgrad: false, params: [0, 1] },
        ],
      },
      epoch: 3,
      step: 1234,
      big: 2n ** 70n,
      negative: -(2 ** 40),
      rng: Tensor.from(new Uint8Array([1, 2, 3, 250])),
      name: 'run-ü',
      none: null,
      flags: [true, false],
      shared: w,
      mask: Tensor.from(new Uint8Array([1, 0, 1]), [3], { dtype: 'bool' }),
      half: Tensor.from(new Uint16Array([0x3c00, 0x7bff]), [2], { dtype: 'float16' }),
      bf16: Tensor.from(new Uint16Array([0x3f80, 0x4049]), [2], { dtype: 'bfloat16' }),
      i64: Tensor.from(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])),
    };
    save(path.join(dir, 'tl-nested.pth'), nested);
    const st = new Map([
      ['conv1.weight', sd18.get('conv1.weight')!],
      ['bn1.num_batches_tracked', sd18.get('bn1.num_batches_tracked')!],
      ['half', nested.half],
      ['bf16', nested.bf16],
      ['mask', nested.mask],
      ['empty', Tensor.zeros([0, 4])],
    ]);
    safetensors.save(path.join(dir, 'tl.safetensors'), st, { author: 'torchline' });

    const r = runPeer('verify', dir);
    expect(r.sd_type).toBe('OrderedDict');
    expect(r.strict).toEqual({ missing: [], unexpected: [] });
    expect(r.outputs_equal).toBe(true); // torchvision's resnet18 with our file == with its own
    expect(r.resnet18_manifest).toEqual(fixtures.resnet18);
    expect(r.zip64_manifest).toEqual(fixtures.resnet18);
    expect(r.zip64_testzip).toBe(null);
    expect(r.zip64_aligned).toBe(true);
    expect(r.nested).toEqual(jsonable(nested));
    expect(r.nested_how).toMatch(/weights_only/);
    expect(r.safetensors_manifest).toEqual(manifest(st));
    expect(r.safetensors_meta).toEqual({ author: 'torchline' });
  });

  it('round-trips values through its own reader unchanged', () => {
    const t = Tensor.randn([3, 4]);
    const v = {
      a: new Map([['x', t]]),
      b: [1, 2.5, 'c', null, true, Object.freeze([1, 2])],
      c: 2n ** 64n,
      d: { e: -7, f: Number.NaN, g: -0 },
    };
    const back = load(checkpoint.serialize(v));
    expect(jsonable(back)).toEqual(jsonable(v));
    expect(Object.is(back.d.g, -0)).toBe(true);
    expect(Number.isNaN(back.d.f)).toBe(true);
  });

  it('a dict key "__proto__" stays data, not a prototype', () => {
    const v = JSON.parse('{"__proto__": {"polluted": 1}, "ok": 2}');
    const back = load(checkpoint.serialize(v));
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(({} as any).polluted).toBeUndefined();
    expect(Object.keys(back)).toEqual(['__proto__', 'ok']);
  });
});

describe('pretrained weights into a model with another head', () => {
  it('keeps every matching tensor, skips fc on a shape mismatch, reports missing and unexpected keys', () => {
    const src: Map<string, Tensor> = load(path.join(dir, 'resnet50.pth'));
    // The target: resnet50's own keys with a 10-class fc, one extra buffer, one key absent.
    const target = new Map<string, { shape: number[] }>();
    for (const [k, t] of src) if (k !== 'layer4.2.bn3.num_batches_tracked') target.set(k, { shape: t.shape });
    target.set('fc.weight', { shape: [10, 2048] });
    target.set('fc.bias', { shape: [10] });
    target.set('extra.buffer', { shape: [3] });
    const r = checkpoint.filterStateDict(src, target);
    expect(r.skipped).toEqual([
      { key: 'fc.weight', sourceShape: [1000, 2048], targetShape: [10, 2048] },
      { key: 'fc.bias', sourceShape: [1000], targetShape: [10] },
    ]);
    expect(r.missing).toEqual(['extra.buffer']);
    expect(r.unexpected).toEqual(['layer4.2.bn3.num_batches_tracked']);
    expect(r.loaded.size).toBe(src.size - 3);
    expect(r.loaded.get('conv1.weight')).toBe(src.get('conv1.weight'));

    // loadPretrained over any module with stateDict/loadStateDict (the models API).
    let received: { sd: Map<string, Tensor>; strict: boolean } | undefined;
    const module = {
      stateDict: () => target,
      loadStateDict: (sd: Map<string, Tensor>, o: { strict: boolean }) => void (received = { sd, strict: o.strict }),
    };
    const report = checkpoint.loadPretrained(module, path.join(dir, 'resnet50.pth'));
    expect(report.skipped.map((s) => s.key)).toEqual(['fc.weight', 'fc.bias']);
    expect(report.loaded.length).toBe(src.size - 3);
    expect(received!.strict).toBe(false);
    expect(describeTensor(received!.sd.get('layer1.0.conv1.weight')!)).toEqual(
      describeTensor(src.get('layer1.0.conv1.weight')!),
    );

    // exclude: a fresh layer4 even where the shapes match
    const r2 = checkpoint.loadPretrained(module, src, { exclude: /^layer4\./ });
    expect(r2.excluded.length).toBe([...src.keys()].filter((k) => k.startsWith('layer4.')).length);
    expect(r2.loaded.some((k) => k.startsWith('layer4.'))).toBe(false);
    expect(r2.missing).toContain('layer4.0.conv1.weight');
  });

  it('finds the state dict inside a training checkpoint and strips a DataParallel prefix', () => {
    const t = Tensor.ones([2]);
    expect([...checkpoint.extractStateDict({ epoch: 1, model: new Map([['module.w', t]]) }).keys()]).toEqual(['w']);
    expect(() => checkpoint.extractStateDict({ epoch: 1 })).toThrow(/no state dict/);
  });
});
