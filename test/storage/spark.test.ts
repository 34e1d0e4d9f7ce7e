// Spark 3.5's file-source rules, checked against hand-worked cases, Spark's
// own widening table, and an independent re-statement of FilePartition.
import { describe, expect, it } from 'vitest';
import { storage } from '../../lib';
import { seededRandom } from './fault-proxy';

const {
  isHiddenName,
  globToRegExp,
  inferPartitionType,
  widerPartitionType,
  castPartitionValue,
  parsePartitionPath,
  resolvePartitions,
  maxSplitBytes,
  packFilePartitions,
} = storage;

describe('hidden names (HadoopFSUtils.shouldFilterOutPathName)', () => {
  it.each([
    ['_SUCCESS', true],
    ['.DS_Store', true],
    ['_temporary', true],
    ['part-0.jpg._COPYING_', true],
    ['_metadata', false],
    ['_common_metadata', false],
    ['_metadata_extra', false],
    ['_a=1', false],
    ['a=1', false],
    ['img.jpg', false],
    ['.a=1', true],
  ])('%s -> %s', (name, hidden) => expect(isHiddenName(name)).toBe(hidden));
});

describe('pathGlobFilter', () => {
  it.each([
    ['*.jpg', 'a.jpg', true],
    ['*.jpg', 'a.jpeg', false],
    ['*.{jpg,png}', 'x.png', true],
    ['img_?.jpg', 'img_1.jpg', true],
    ['img_?.jpg', 'img_10.jpg', false],
    ['[a-c]*', 'boat.jpg', true],
    ['[!a-c]*', 'boat.jpg', false],
    ['[^a-c]*', 'dog.jpg', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['a.b', 'axb', false],
  ])('%s on %s -> %s', (glob, name, ok) => expect(globToRegExp(glob).test(name)).toBe(ok));
  it('refuses malformed globs', () => {
    expect(() => globToRegExp('{a,b')).toThrow(/unclosed/);
    expect(() => globToRegExp('[ab')).toThrow(/unclosed/);
  });
});

describe('partition value inference (PartitioningUtils.inferPartitionColumnValue)', () => {
  it.each([
    ['1', 'int', 1],
    ['007', 'int', 7],
    ['+5', 'int', 5],
    ['-2147483648', 'int', -2147483648],
    ['2147483648', 'long', 2147483648n],
    ['-9223372036854775808', 'long', -9223372036854775808n],
    ['9223372036854775808', 'decimal', '9223372036854775808'],
    ['1' + '0'.repeat(37), 'decimal', '1' + '0'.repeat(37)],
    ['1' + '0'.repeat(38), 'double', 1e38],
    ['1.5', 'double', 1.5],
    ['1e3', 'double', 1000],
    ['2.5d', 'double', 2.5],
    ['NaN', 'double', NaN],
    ['-Infinity', 'double', -Infinity],
    [' 5', 'double', 5],
    ['2024-01-31', 'date', '2024-01-31'],
    ['2024-02-30', 'string', '2024-02-30'],
    ['2024-1-5', 'string', '2024-1-5'],
    ['2024-01-31 10%3A20%3A30', 'timestamp', new Date(Date.UTC(2024, 0, 31, 10, 20, 30))],
    ['2024-01-31 10:20:30.5', 'timestamp', new Date(Date.UTC(2024, 0, 31, 10, 20, 30, 500))],
    ['cat', 'string', 'cat'],
    ['a%2Fb', 'string', 'a/b'],
    ['__HIVE_DEFAULT_PARTITION__', 'null', null],
  ])('%s -> %s', (raw, type, value) => {
    const t = inferPartitionType(raw);
    expect(t).toBe(type);
    expect(castPartitionValue(raw, t)).toEqual(value);
  });
  it('without type inference everything is a string (or null)', () => {
    expect(inferPartitionType('1', false)).toBe('string');
    expect(inferPartitionType('__HIVE_DEFAULT_PARTITION__', false)).toBe('null');
  });
});

describe('partition type widening (the table in Spark 3.5 PartitioningUtils)', () => {
  // Rows/columns in Spark's order: Null, Int, Long, Decimal, Double, Date, Timestamp, String.
  const T = ['null', 'int', 'long', 'decimal', 'double', 'date', 'timestamp', 'string'] as const;
  const table = [
    ['null', 'int', 'long', 'decimal', 'double', 'date', 'timestamp', 'string'],
    ['int', 'int', 'long', 'decimal', 'double', 'string', 'string', 'string'],
    ['long', 'long', 'long', 'decimal', 'string', 'string', 'string', 'string'],
    ['decimal', 'decimal', 'decimal', 'decimal', 'string', 'string', 'string', 'string'],
    ['double', 'double', 'string', 'string', 'double', 'string', 'string', 'string'],
    ['date', 'string', 'string', 'string', 'string', 'date', 'timestamp', 'string'],
    ['timestamp', 'string', 'string', 'string', 'string', 'timestamp', 'timestamp', 'string'],
    ['string', 'string', 'string', 'string', 'string', 'string', 'string', 'string'],
  ];
  for (let i = 0; i < T.length; i++) {
    for (let j = 0; j < T.length; j++) {
      it(`${T[i]} + ${T[j]} -> ${table[i][j]}`, () => expect(widerPartitionType(T[i], T[j])).toBe(table[i][j]));
    }
  }
  it('a widened column keeps the raw folder text when it becomes a string', () => {
    const r = resolvePartitions(['x=007', 'x=abc']);
    expect(r.columns).toEqual([{ name: 'x', type: 'string' }]);
    expect(r.values.get('x=007')).toEqual({ x: '007' });
  });
  it('int and long widen to long, with null kept', () => {
    const r = resolvePartitions(['x=1', 'x=10000000000', 'x=__HIVE_DEFAULT_PARTITION__']);
    expect(r.columns).toEqual([{ name: 'x', type: 'long' }]);
    expect([...r.values.values()]).toEqual([{ x: 1n }, { x: 10000000000n }, { x: null }]);
  });
});

describe('partition folders (PartitioningUtils.parsePartition / parsePartitions)', () => {
  it('walks up from the leaf and stops at the first plain name above key=value', () => {
    expect(parsePartitionPath('a=1/b=x')).toEqual({
      columns: [
        { name: 'a', raw: '1', type: 'int' },
        { name: 'b', raw: 'x', type: 'string' },
      ],
      basePath: '',
    });
    // Plain folders below the partition folders are skipped over.
    expect(parsePartitionPath('a=1/extra/deeper')?.columns.map((c) => c.name)).toEqual(['a']);
    // A plain folder above stops discovery there: the base moves down.
    expect(parsePartitionPath('table/a=1')?.basePath).toBe('table');
    expect(parsePartitionPath('plain')).toEqual({ columns: [], basePath: 'plain' });
    expect(parsePartitionPath('a=1/_temporary/x')).toBeUndefined();
  });
  it('root files beside partition folders are allowed (same base)', () => {
    const r = resolvePartitions(['', 'a=1', 'a=2']);
    expect(r.columns).toEqual([{ name: 'a', type: 'int' }]);
    expect(r.values.has('')).toBe(false);
  });
  it('refuses conflicting layouts like Spark', () => {
    expect(() => resolvePartitions(['plain', 'a=1'])).toThrow(/Conflicting directory structures/);
    expect(() => resolvePartitions(['a=1/b=2', 'a=1'])).toThrow(/Conflicting partition column names/);
    expect(() => resolvePartitions(['x/a=1', 'y/a=2'])).toThrow(/Conflicting directory structures/);
    expect(() => resolvePartitions(['=1'])).toThrow(/Empty partition column name/);
  });
  it('column names compare case-insensitively by default', () => {
    expect(resolvePartitions(['A=1', 'a=2']).columns).toEqual([{ name: 'A', type: 'int' }]);
    expect(() => resolvePartitions(['A=1', 'a=2'], true, true)).toThrow(/Conflicting partition column names/);
  });
});

// A plain re-statement of FilePartition.getFilePartitions, written from the
// Scala source's shape (closePartition, currentSize), kept apart from the
// implementation under test.
function sparkPacking(
  lengths: number[],
  maxPartitionBytes: number,
  openCost: number,
  minPartitionNum: number,
  maxPartitionNum?: number,
) {
  let totalBytes = 0;
  for (const l of lengths) totalBytes += l + openCost;
  const bytesPerCore = Math.floor(totalBytes / minPartitionNum);
  const maxSplit = Math.min(maxPartitionBytes, Math.max(openCost, bytesPerCore));
  const files = lengths.map((length, i) => ({ i, length }));
  // Scala's sortBy is stable.
  const sorted = [...files].sort((a, b) => b.length - a.length || a.i - b.i);
  const run = (limit: number) => {
    const partitions: number[][] = [];
    let current: number[] = [];
    let currentSize = 0;
    const closePartition = () => {
      if (current.length > 0) partitions.push(current);
      current = [];
      currentSize = 0;
    };
    for (const f of sorted) {
      if (currentSize + f.length > limit) closePartition();
      currentSize += f.length + openCost;
      current.push(f.i);
    }
    closePartition();
    return partitions;
  };
  let partitions = run(maxSplit);
  if (maxPartitionNum !== undefined && partitions.length > maxPartitionNum) {
    partitions = run(Math.ceil(totalBytes / maxPartitionNum));
  }
  return { maxSplit, partitions };
}

describe('FilePartition packing', () => {
  it('hand-checked: maxPartitionBytes bound', () => {
    const r = packFilePartitions([1, 2, 3, 4, 5, 6], { maxPartitionBytes: 10, openCostInBytes: 4, minPartitionNum: 1 });
    expect(r.maxSplitBytes).toBe(10);
    expect(r.partitions.map((p) => p.map((i) => i + 1))).toEqual([[6], [5], [4], [3, 2], [1]]);
  });
  it('hand-checked: bytes per core bound', () => {
    const r = packFilePartitions([1, 2, 3, 4, 5, 6], {
      maxPartitionBytes: 100,
      openCostInBytes: 4,
      minPartitionNum: 3,
    });
    expect(r.maxSplitBytes).toBe(15);
    expect(r.partitions.map((p) => p.map((i) => i + 1))).toEqual([
      [6, 5],
      [4, 3],
      [2, 1],
    ]);
  });
  it('hand-checked: maxPartitionNum repacks at ceil(total / n)', () => {
    const r = packFilePartitions([1, 2, 3, 4, 5, 6], {
      maxPartitionBytes: 10,
      openCostInBytes: 4,
      minPartitionNum: 1,
      maxPartitionNum: 2,
    });
    expect(r.partitions.map((p) => p.map((i) => i + 1))).toEqual([
      [6, 5, 4],
      [3, 2, 1],
    ]);
  });
  it('defaults: 128 MiB max, 4 MiB open cost', () => {
    expect(maxSplitBytes([1 << 30], { minPartitionNum: 1 })).toBe(128 * 1024 * 1024);
    expect(maxSplitBytes([10], { minPartitionNum: 8 })).toBe(4 * 1024 * 1024);
  });
  it('equals the re-statement on 300 random cases, and keeps its invariants', () => {
    const rand = seededRandom(42);
    for (let c = 0; c < 300; c++) {
      const n = 1 + Math.floor(rand() * 400);
      const big = rand() < 0.3;
      const lengths = Array.from({ length: n }, () => 1 + Math.floor(rand() * (big ? 300e6 : 200e3)));
      if (rand() < 0.3) for (let k = 0; k < n / 4; k++) lengths[Math.floor(rand() * n)] = lengths[0]; // ties
      const maxPartitionBytes = rand() < 0.5 ? 128 * 1024 * 1024 : 1 + Math.floor(rand() * 5e6);
      const openCost = rand() < 0.5 ? 4 * 1024 * 1024 : Math.floor(rand() * 1e5);
      const minPartitionNum = 1 + Math.floor(rand() * 64);
      const maxPartitionNum = rand() < 0.3 ? 1 + Math.floor(rand() * 20) : undefined;
      const got = packFilePartitions(lengths, {
        maxPartitionBytes,
        openCostInBytes: openCost,
        minPartitionNum,
        maxPartitionNum,
      });
      const want = sparkPacking(lengths, maxPartitionBytes, openCost, minPartitionNum, maxPartitionNum);
      expect(got.maxSplitBytes).toBe(want.maxSplit);
      expect(got.partitions).toEqual(want.partitions);
      // Every file exactly once; no partition empty.
      const all = got.partitions.flat().sort((a, b) => a - b);
      expect(all).toEqual(lengths.map((_, i) => i));
      expect(got.partitions.every((p) => p.length > 0)).toBe(true);
      // A partition holding more than one file stays within the split size
      // (counting the open cost of all files but the last).
      if (maxPartitionNum === undefined) {
        for (const p of got.partitions) {
          if (p.length < 2) continue;
          const body = p.slice(0, -1).reduce((s, i) => s + lengths[i] + openCost, 0) + lengths[p[p.length - 1]];
          expect(body).toBeLessThanOrEqual(got.maxSplitBytes);
        }
      }
    }
  });
});

describe('rank assignment', () => {
  it('is a deterministic disjoint cover', () => {
    const parts = Array.from({ length: 23 }, (_, i) => i);
    for (const world of [1, 2, 3, 8, 30]) {
      const shares = Array.from({ length: world }, (_, r) => storage.assignPartitions(parts, r, world));
      expect(shares.flat().sort((a, b) => a - b)).toEqual(parts);
      expect(storage.assignPartitions(parts, 0, world)).toEqual(shares[0]);
      const sizes = shares.map((s) => s.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
    expect(() => storage.assignPartitions(parts, 2, 2)).toThrow(RangeError);
    expect(() => storage.assignPartitions(parts, 0, 0)).toThrow(RangeError);
  });
});

describe('data files (PartitioningAwareFileIndex.isDataPath)', () => {
  it.each([
    ['_metadata', false],
    ['_common_metadata', false],
    ['_SUCCESS', false],
    ['.x', false],
    ['_a=1', true],
    ['part-0.jpg', true],
  ])('%s -> %s', (name, data) => expect(storage.isDataFileName(name)).toBe(data));
});

describe('BMP headers', () => {
  // A 1x1, 32-bit BI_BITFIELDS bitmap with a BITMAPV4HEADER (108 bytes):
  // masks red, green, blue, alpha at file offsets 54, 58, 62, 66
  // (BITMAPV3INFOHEADER layout, which V4 and V5 extend).
  function bmpV4(alphaMask: number, dib = 108): Buffer {
    const b = Buffer.alloc(14 + dib + 4);
    b.write('BM', 0, 'latin1');
    b.writeUInt32LE(b.length, 2);
    b.writeUInt32LE(14 + dib, 10);
    b.writeUInt32LE(dib, 14);
    b.writeInt32LE(1, 18);
    b.writeInt32LE(1, 22);
    b.writeUInt16LE(1, 26);
    b.writeUInt16LE(32, 28);
    b.writeUInt32LE(3, 30); // BI_BITFIELDS
    if (dib >= 56) {
      b.writeUInt32LE(0x00ff0000, 54);
      b.writeUInt32LE(0x0000ff00, 58);
      b.writeUInt32LE(0x000000ff, 62);
      b.writeUInt32LE(alphaMask, 66);
    }
    return b;
  }
  it.each([
    ['V4 without an alpha mask', bmpV4(0), 3],
    ['V4 with an alpha mask', bmpV4(0xff000000), 4],
    ['V3 (56-byte header) with an alpha mask', bmpV4(0xff000000, 56), 4],
    ['V5 without an alpha mask', bmpV4(0, 124), 3],
  ])('%s -> %d channels', (_name, buf, ch) => {
    const h = storage.parseImageHeader(buf, true);
    expect(h).toMatchObject({ kind: 'ok', format: 'bmp', width: 1, height: 1, nChannels: ch });
  });
});
