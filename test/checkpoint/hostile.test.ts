// Damaged and crafted files: every one gets a CheckpointError with a clear
// message, never a crash, a hang, another error type, or code execution.
import { describe, expect, it } from 'vitest';
import { Tensor, load, safetensors, CheckpointError, UnsafePickleError, checkpoint } from '../../lib';
import { ZipReader, ZipWriter, bufferSource, memorySink } from '../../lib/checkpoint/zip';
import { withSeed } from '../support/seed';

function sample(): Buffer {
  return checkpoint.serialize({
    model: new Map([
      ['w', Tensor.randn([16, 8])],
      ['b', Tensor.randn([16])],
      ['n', Tensor.from(new BigInt64Array([3n]), [])],
    ]),
    epoch: 7,
    note: 'hello',
  });
}

/** A torch-style archive around a hand-written pickle and storages. */
function archive(pkl: Buffer, storages: Record<string, Buffer> = {}): Buffer {
  const sink = memorySink();
  const z = new ZipWriter(sink);
  z.add('a/data.pkl', pkl);
  for (const [k, v] of Object.entries(storages)) z.add(`a/data/${k}`, v);
  z.add('a/version', Buffer.from('3\n'));
  z.finish();
  return sink.toBuffer();
}

const P = (s: string) => Buffer.from(s, 'latin1');
/** `('storage', torch.FloatStorage, key, 'cpu', numel)` as protocol-2 bytes. */
function pid(key: string, numel: number, type = 'FloatStorage'): string {
  return `(X\x07\x00\x00\x00storagectorch\n${type}\nX${String.fromCharCode(key.length)}\x00\x00\x00${key}X\x03\x00\x00\x00cpuK${String.fromCharCode(numel)}tQ`;
}
const REBUILD = 'ctorch._utils\n_rebuild_tensor_v2\n';
const ODICT = 'ccollections\nOrderedDict\n)R';

function expectCheckpointError(fn: () => unknown, re?: RegExp): CheckpointError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  if (re) expect((err as Error).message).toMatch(re);
  return err as CheckpointError;
}

describe('damaged zips', () => {
  it('a checkpoint cut short anywhere is refused as truncated or corrupt', () =>
    withSeed((random) => {
      const buf = sample();
      expect(load(buf).epoch).toBe(7);
      const cuts = [0, 1, 4, 21, 22, 30, 100, buf.length >> 1, buf.length - 23, buf.length - 22, buf.length - 1];
      for (let i = 0; i < 30; i++) cuts.push(random.int(buf.length));
      for (const cut of cuts)
        expectCheckpointError(() => load(buf.subarray(0, cut)), /truncated|corrupt|not a zip|too short/);
    }));

  it('a flipped bit in a storage or the pickle fails its CRC-32', () => {
    const buf = sample();
    const zip = new ZipReader(bufferSource(buf));
    for (const name of ['archive/data.pkl', 'archive/data/0', 'archive/data/2']) {
      const e = zip.get(name);
      const bad = Buffer.from(buf);
      bad[e.dataOffset + (e.size >> 1)] ^= 0x10;
      expectCheckpointError(() => load(bad), new RegExp(`CRC-32 mismatch in '${name}'`));
    }
  });

  it('random byte corruption anywhere gives a CheckpointError or a correct load, nothing else', () =>
    withSeed((random) => {
      const buf = sample();
      const good = load(buf);
      const want = good.model.get('w').toArray();
      for (let i = 0; i < 300; i++) {
        const bad = Buffer.from(buf);
        const pos = random.int(bad.length);
        bad[pos] ^= 1 + random.int(255);
        try {
          const v = load(bad);
          // Bytes no reader uses (padding, timestamps, version fields) may change freely,
          // but what loads must be what was saved.
          expect(v.model.get('w').toArray()).toEqual(want);
          expect(v.epoch).toBe(7);
        } catch (e) {
          if (!(e instanceof CheckpointError)) throw new Error(`byte ${pos}: ${(e as Error).stack}`);
        }
      }
    }));

  it('random corruption of the pickle itself (CRC check off) gives a CheckpointError or a load, nothing else', () =>
    withSeed((random) => {
      const buf = sample();
      const e = new ZipReader(bufferSource(buf)).get('archive/data.pkl');
      for (let i = 0; i < 2000; i++) {
        const bad = Buffer.from(buf);
        for (let k = 0; k < 1 + (i % 3); k++) bad[e.dataOffset + random.int(e.size)] = random.int(256);
        try {
          load(bad, { verifyCrc: false });
        } catch (err) {
          if (!(err instanceof CheckpointError))
            throw new Error(
              `${(err as Error).stack}\npickle: ${bad.subarray(e.dataOffset, e.dataOffset + e.size).toString('hex')}`,
            );
        }
      }
    }));

  it('garbage, an empty file and a stray pickle are refused clearly', () => {
    expectCheckpointError(() => load(Buffer.alloc(0)), /too short/);
    expectCheckpointError(() => load(Buffer.from('x'.repeat(5000))), /not a torch.save checkpoint/);
    expectCheckpointError(
      () => load(Buffer.concat([Buffer.from([0x80, 0x02, 0x8a, 0x0a]), Buffer.alloc(100)])),
      /legacy torch.save file/,
    );
    expectCheckpointError(
      () => load(Buffer.from([0x80, 0x02, 0x4b, 0x05, 0x2e])),
      /legacy torch.save file: bad magic number/,
    );
    // Found by scripts/fuzz.mjs: a magic number that is a dict or a fraction made BigInt() throw a SyntaxError.
    expectCheckpointError(
      () => load(Buffer.from([0x80, 0x02, 0x7d, 0x2e])),
      /legacy torch.save file: bad magic number/,
    );
    const half = Buffer.from([0x80, 0x02, 0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x2e]); // BINFLOAT 1.5
    expectCheckpointError(() => load(half), /legacy torch.save file: bad magic number/);
  });

  it('an archive without data.pkl is not a checkpoint', () => {
    const sink = memorySink();
    const z = new ZipWriter(sink);
    z.add('x/other', Buffer.from('hi'));
    z.finish();
    expectCheckpointError(() => load(sink.toBuffer()), /no <name>\/data\.pkl/);
  });

  it('a missing file is an ordinary ENOENT', () => {
    expect(() => load('/nonexistent/x.pth')).toThrow(/ENOENT/);
  });
});

describe('crafted pickles', () => {
  const floats4 = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);

  it('a bigint where the storage key belongs gives a CheckpointError (the message itself must not throw)', () => {
    // The flake of issue 14: a flipped byte turned the key's string opcode into an
    // integer past 2^53, and formatting it for the message threw a TypeError.
    const key = P(
      `(X\x07\x00\x00\x00storagectorch\nFloatStorage\n\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40X\x03\x00\x00\x00cpuK\x04tQ`,
    );
    const pkl = Buffer.concat([
      P(`\x80\x02${REBUILD}(`),
      key,
      P('K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.'),
    ]);
    expectCheckpointError(() => load(archive(pkl)), /bad storage key 4611686018427387904/);
  });

  it('a well-formed hand-written tensor pickle loads (the fixture itself is right)', () => {
    const pkl = P(`\x80\x02${REBUILD}(${pid('0', 4)}K\x01K\x02\x85K\x01\x85\x89${ODICT}tR.`);
    expect(load(archive(pkl, { '0': floats4 })).toArray()).toEqual([2, 3]);
  });

  it('globals outside the allowlist are refused by name, wherever they are', () => {
    for (const [g, mod] of [
      ['os\nsystem', 'os.system'],
      ['subprocess\nPopen', 'subprocess.Popen'],
      ['builtins\ngetattr', 'builtins.getattr'],
      ['torch\nload', 'torch.load'],
      ['torch._utils\n_rebuild_device_tensor_from_numpy', 'torch._utils._rebuild_device_tensor_from_numpy'],
    ]) {
      const pkl = P(`\x80\x02}(X\x01\x00\x00\x00xc${g}\n(X\x02\x00\x00\x00idtRu.`);
      const err = expectCheckpointError(() => load(archive(pkl)));
      expect(err).toBeInstanceOf(UnsafePickleError);
      expect((err as UnsafePickleError).global).toBe(mod);
    }
  });

  it('opcodes that build arbitrary objects are refused', () => {
    expectCheckpointError(() => load(archive(P('\x80\x02(X\x02\x00\x00\x00idios\nsystem\n.'))), /INST is not allowed/);
    expectCheckpointError(() => load(archive(P('\x80\x02(ccollections\nOrderedDict\no.'))), /OBJ is not allowed/);
    expectCheckpointError(() => load(archive(P('\x80\x02\x82\x01.'))), /EXT1 is not allowed/);
    expectCheckpointError(() => load(archive(P('\x80\x02}X\x01\x00\x00\x00ab.'))), /BUILD on a dict is not allowed/);
    expectCheckpointError(() => load(archive(P('\x80\x02ctorch\nFloatStorage\n)R.'))), /not callable/);
  });

  it('persistent ids other than storages, and bad storages, are refused', () => {
    expectCheckpointError(() => load(archive(P('\x80\x02X\x03\x00\x00\x00abcQ.'))), /only storage persistent ids/);
    expectCheckpointError(
      () => load(archive(P(`\x80\x02${pid('0', 4, 'ComplexFloatStorage')}.`))),
      /'torch.ComplexFloatStorage'/,
    );
    expectCheckpointError(() => load(archive(P(`\x80\x02${pid('0', 4)}.`))), /storage 0 is missing/);
    expectCheckpointError(
      () => load(archive(P(`\x80\x02${pid('0', 5)}.`), { '0': floats4 })),
      /has 16 bytes, expected 5 x 4/,
    );
    expectCheckpointError(() => load(archive(P(`\x80\x02${pid('..', 4)}.`), { '0': floats4 })), /bad storage key/);
  });

  it('a tensor view reaching past its storage is refused (no out-of-bounds read)', () => {
    const pkl = P(`\x80\x02${REBUILD}(${pid('0', 4)}K\x01K\x02\x85K\x03\x85\x89${ODICT}tR.`);
    expectCheckpointError(() => load(archive(pkl, { '0': floats4 })), /reaches past its storage of 4 elements/);
    const neg = P(`\x80\x02${REBUILD}(${pid('0', 4)}K\x00K\x02\x85J\xff\xff\xff\xff\x85\x89${ODICT}tR.`);
    expectCheckpointError(() => load(archive(neg, { '0': floats4 })), /stride must be a tuple of non-negative/);
  });

  it('many views of one storage share it (as in PyTorch), so they cannot balloon memory', () => {
    const big = Buffer.from(new Float32Array(2 ** 20).map((_, i) => i).buffer); // 1 Mi float32 elements
    // ('storage', FloatStorage, '0', 'cpu', 2**20) memoized once, then 1000 full views of it
    const pidBig = `(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x00\x00\x10\x00tQq\x00`;
    const view = `${REBUILD}(h\x00K\x05J\xff\xff\x00\x00K\x10\x86K\x10K\x01\x86\x89${ODICT}tR`;
    const pkl = P(`\x80\x02${pidBig}0](${view.repeat(1000)}e.`);
    const rss0 = process.memoryUsage().rss;
    const views = load(archive(pkl, { '0': big }));
    expect(views.length).toBe(1000);
    expect(views[999].shape).toEqual([65535, 16]);
    expect(views[999].toTypedArray().subarray(0, 3)).toEqual(new Float32Array([5, 6, 7]));
    // 1000 copies would be 4 GB; shared, the growth is about one storage
    expect(process.memoryUsage().rss - rss0).toBeLessThan(512 * 2 ** 20);
  });

  it('broken structure: truncation, missing memo, stack underflow, odd SETITEMS, huge lengths, deep nesting', () => {
    expectCheckpointError(() => load(archive(P('\x80\x02}'))), /no STOP/);
    expectCheckpointError(() => load(archive(P('\x80\x02h\x05.'))), /memo key 5 is missing/);
    expectCheckpointError(() => load(archive(P('\x80\x02t.'))), /MARK missing/);
    expectCheckpointError(() => load(archive(P('\x80\x02R.'))), /stack underflow/);
    expectCheckpointError(() => load(archive(P('\x80\x02}(K\x01u.'))), /odd number/);
    expectCheckpointError(() => load(archive(P('\x80\x02X\xff\xff\xff\x7f.'))), /truncated pickle/);
    expectCheckpointError(() => load(archive(P('\x80\x02]K\x01K\x02s.'))), /SETITEM on a list/);
    expectCheckpointError(() => load(archive(P('\x80\x02\x8a\x00\x80\x09.'))), /protocol 9/);
    const deep = P('\x80\x02' + ']'.repeat(5000) + 'a'.repeat(4999) + '.');
    expectCheckpointError(() => load(archive(deep)), /nesting deeper than 1000/);
  });
});

describe('malformed safetensors', () => {
  function st(header: object | string, data: Buffer = Buffer.alloc(0)): Buffer {
    const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, data]);
  }
  const f = (o: number[], shape = [2]) => ({ dtype: 'F32', shape, data_offsets: o });

  it('a good one loads (the fixture itself is right)', () => {
    const v = safetensors.load(st({ a: f([0, 8]), b: f([8, 16]) }, Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)));
    expect(v.get('b')!.toArray()).toEqual([3, 4]);
    const back = safetensors.load(safetensors.serialize(v));
    expect(back.get('a')!.toArray()).toEqual([1, 2]);
  });

  it('refuses each kind of damage with a clear message', () => {
    const d16 = Buffer.alloc(16);
    expectCheckpointError(() => safetensors.load(Buffer.alloc(4)), /shorter than 8 bytes/);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(2n ** 60n);
    expectCheckpointError(() => safetensors.load(huge), /too large/);
    expectCheckpointError(() => safetensors.load(st('{"a": ', d16)), /not valid JSON/);
    expectCheckpointError(() => safetensors.load(st('[1]', d16)), /not a JSON object/);
    expectCheckpointError(() => safetensors.load(st({ a: f([0, 8]), b: f([4, 12]) }, d16.subarray(0, 12))), /overlaps/);
    expectCheckpointError(
      () => safetensors.load(st({ a: f([0, 8]), b: f([8, 16]) }, d16.subarray(0, 12))),
      /past the 12 data bytes/,
    );
    expectCheckpointError(
      () => safetensors.load(st({ a: f([0, 8]), b: f([12, 20]) }, Buffer.alloc(20))),
      /gap of 4 bytes/,
    );
    expectCheckpointError(() => safetensors.load(st({ a: f([0, 8]) }, d16)), /8 bytes after the last tensor/);
    expectCheckpointError(() => safetensors.load(st({ a: f([0, 8], [3]) }, d16.subarray(0, 8))), /needs 12 bytes/);
    expectCheckpointError(
      () => safetensors.load(st({ a: { ...f([0, 8]), dtype: 'C64' } }, d16.subarray(0, 8))),
      /dtype "C64"/,
    );
    expectCheckpointError(() => safetensors.load(st({ a: f([8, 0]) }, d16)), /bad data_offsets/);
    expectCheckpointError(() => safetensors.load(st({ __metadata__: { a: 1 } })), /not a string/);
    expectCheckpointError(() => safetensors.load(st({ a: f([0, 8]) }, Buffer.alloc(0))), /past the 0 data bytes/);
  });
});

describe('what cannot be saved', () => {
  it('class instances, TypedArrays, functions and symbols are refused with the path to them', () => {
    expect(() => checkpoint.serialize({ a: { b: new Date() } })).toThrow(/at \.a\.b: a Date instance/);
    expect(() => checkpoint.serialize({ a: [new Float32Array(2)] })).toThrow(/at \.a\[0\]: a TypedArray.*Tensor\.from/);
    expect(() => checkpoint.serialize({ f: () => 1 })).toThrow(/function has no Python equivalent/);
    expect(() => checkpoint.serialize(new Map([[{}, 1]]))).toThrow(/dict keys must be/);
  });

  it('cycles through lists and dicts are kept (memo), as pickle does', () => {
    const a: unknown[] = [1];
    a.push(a);
    const back = load(checkpoint.serialize({ a }));
    expect(back.a[1]).toBe(back.a);
  });
});
