// One rank of test/distributed/shared-memory.test.ts. argv: mode [seed].
//   cases SEED  every dtype and op over sizes around the segment's rounds, each
//               checked bit for bit against a reference computed here from every
//               rank's inputs (each rank can generate them all from the seed);
//   mismatch    rank r reduces 10 + r elements;
//   exit        rank 1 leaves right after a barrier, rank 0 then all-reduces;
//   destroy     rank 0 destroys its group while its all-reduce waits for rank 1;
//   reinit      two groups one after the other (under torchrun: one store for both).
// TL_SHM=0 joins without shared memory. Prints one JSON line.
const fs = require('node:fs');
const path = require('node:path');
const tl = require(path.resolve(__dirname, '../../dist'));
const { mulberry32: rng } = require('../support/mulberry32.js');

const [mode, seedArg] = process.argv.slice(2);
const segments = () =>
  fs
    .readdirSync('/dev/shm')
    .filter((f) => f.startsWith('torchline-'))
    .sort();

// Nearest value with `mant` stored mantissa bits and exponents down to `emin` (ties to even): float16 (10, -14)
// and bfloat16 (7, -126), computed on doubles, independently of the C++ bit tricks.
function roundTo(x, mant, emin, overflow) {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= overflow) return Math.sign(x) * Number.POSITIVE_INFINITY;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, emin) - mant);
  const q = a / ulp;
  let r = Math.floor(q);
  if (q - r > 0.5 || (q - r === 0.5 && r % 2 === 1)) r++;
  return Math.sign(x) * r * ulp;
}
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const HALF = {
  decode: (w) => {
    const s = w & 0x8000 ? -1 : 1;
    const e = (w >> 10) & 31;
    const m = w & 1023;
    if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    return s * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
  },
  round: (x) => roundTo(x, 10, -14, 65520),
  // Finite words over the whole range, subnormals included.
  random: (r) => (r() < 0.5 ? 0x8000 : 0) | (Math.floor(r() * 31) << 10) | Math.floor(r() * 1024),
};
const BF16 = {
  decode: (w) => {
    u32[0] = w << 16;
    return f32[0];
  },
  round: (x) => roundTo(x, 7, -126, 2 ** 128 * (1 - 2 ** -9)),
  random: (r) => (r() < 0.5 ? 0x8000 : 0) | ((100 + Math.floor(r() * 50)) << 7) | Math.floor(r() * 128),
};

const combine = {
  float: (op) =>
    ({
      sum: (a, b) => Math.fround(a + b),
      product: (a, b) => Math.fround(a * b),
      // NaN wins, as torch.minimum / torch.maximum.
      min: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.min(a, b)),
      max: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b)),
    })[op === 'avg' ? 'sum' : op],
  double: (op) =>
    ({
      sum: (a, b) => a + b,
      product: (a, b) => a * b,
      min: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.min(a, b)),
      max: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? Number.NaN : Math.max(a, b)),
    })[op === 'avg' ? 'sum' : op],
  int32: (op) => ({ sum: (a, b) => (a + b) | 0, product: (a, b) => Math.imul(a, b), min: Math.min, max: Math.max })[op],
  int64: (op) =>
    ({
      sum: (a, b) => BigInt.asIntN(64, a + b),
      product: (a, b) => BigInt.asIntN(64, a * b),
      // biome-ignore lint/complexity/useMathMinMax: Math.min and Math.max take no BigInt
      min: (a, b) => (a < b ? a : b),
      // biome-ignore lint/complexity/useMathMinMax: as above
      max: (a, b) => (a > b ? a : b),
    })[op],
};

// One rank's input for a case; values chosen so products stay finite and sums exercise rounding.
function input(dtype, op, n, seed, rank) {
  const r = rng(seed * 1000003 + rank * 7919 + n);
  const nan = (x) => ((op === 'min' || op === 'max') && r() < 0.01 ? Number.NaN : x);
  switch (dtype) {
    case 'float32':
      return Float32Array.from({ length: n }, () =>
        nan(op === 'product' ? [0.5, 1, -2, 3][Math.floor(r() * 4)] : (r() - 0.5) * 2 ** Math.floor(r() * 20 - 10)),
      );
    case 'float64':
      return Float64Array.from({ length: n }, () =>
        nan(op === 'product' ? [0.5, 1, -2, 3][Math.floor(r() * 4)] : (r() - 0.5) * 1e3),
      );
    case 'int32':
      return Int32Array.from({ length: n }, () => Math.floor((r() - 0.5) * 2 ** 32));
    case 'int64':
      return BigInt64Array.from(
        { length: n },
        () => BigInt.asIntN(64, BigInt(Math.floor(r() * 2 ** 53)) << 11n) - BigInt(rank),
      );
    default: {
      const f = dtype === 'float16' ? HALF : BF16;
      return Uint16Array.from({ length: n }, () =>
        (op === 'min' || op === 'max') && r() < 0.01 ? (dtype === 'bfloat16' ? 0x7fc0 : 0x7e00) : f.random(r),
      );
    }
  }
}

// What every rank must end with, in the value domain of the dtype (numbers, or BigInt for int64).
function expected(dtype, op, n, seed, world) {
  const ins = Array.from({ length: world }, (_, k) => input(dtype, op, n, seed, k));
  const small = dtype === 'float16' ? HALF : dtype === 'bfloat16' ? BF16 : null;
  const load = small ? (a, i) => small.decode(a[i]) : (a, i) => a[i];
  const kind = small || dtype === 'float32' ? 'float' : dtype === 'float64' ? 'double' : dtype;
  const f = combine[kind](op);
  const scale = op === 'avg' ? (kind === 'double' ? 1 / world : Math.fround(1 / world)) : 1;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    let acc = load(ins[0], i);
    for (let k = 1; k < world; k++) acc = f(acc, load(ins[k], i));
    if (op === 'avg') acc = kind === 'double' ? acc * scale : Math.fround(acc * scale);
    out[i] = small ? small.round(acc) : acc;
  }
  return out;
}

function same(a, b) {
  return a === b || (typeof a === 'number' && Number.isNaN(a) && Number.isNaN(b));
}

async function cases(group, seed) {
  const world = group.worldSize;
  const report = { checked: 0, mismatches: [], hash: 0 };
  const sizes = [0, 1, 17, 100003, 300001];
  for (const dtype of ['float32', 'float64', 'int32', 'int64', 'bfloat16', 'float16'])
    for (const op of ['sum', 'avg', 'max', 'min', 'product']) {
      if (op === 'avg' && dtype.startsWith('int')) continue;
      for (const n of sizes) {
        const data = input(dtype, op, n, seed, group.rank);
        const t = tl.Tensor.from(data, [n], { dtype });
        await group.allReduce(t, op);
        const got = t.toTypedArray();
        t.dispose();
        const want = expected(dtype, op, n, seed, world);
        const small = dtype === 'float16' ? HALF : dtype === 'bfloat16' ? BF16 : null;
        let bad = 0;
        for (let i = 0; i < n; i++) {
          const g = small ? small.decode(got[i]) : got[i];
          if (!same(g, want[i])) {
            if (bad++ === 0) report.mismatches.push({ dtype, op, n, i, got: String(g), want: String(want[i]) });
          }
        }
        const bytes = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
        for (let i = 0; i < bytes.length; i += 61) report.hash = (Math.imul(report.hash, 31) + bytes[i]) | 0;
        report.checked++;
      }
    }
  // One tensor many rounds long.
  const big = tl.Tensor.from(
    Float32Array.from({ length: 3_000_000 }, (_, i) => (i % 1000) + group.rank),
    [3_000_000],
  );
  await group.allReduce(big);
  const b = big.toTypedArray();
  for (let i = 0; i < b.length; i++)
    if (b[i] !== world * (i % 1000) + (world * (world - 1)) / 2) {
      report.mismatches.push({ dtype: 'float32', op: 'sum', n: b.length, i, got: String(b[i]) });
      break;
    }
  return report;
}

async function twoGroups() {
  const sums = [];
  for (let g = 0; g < 2; g++) {
    const group = await tl.distributed.initProcessGroup({ timeout: 60000 });
    const t = tl.Tensor.ones([1000]);
    await group.allReduce(t);
    sums.push({ sum: t.toArray()[0], sharedMemory: group.sharedMemory, reason: group.sharedMemoryReason });
    await group.barrier();
    group.destroy();
  }
  return sums;
}

(async () => {
  if (mode === 'reinit') {
    process.stdout.write(`${JSON.stringify({ groups: await twoGroups() })}\n`);
    process.exit(0);
  }
  const before = segments();
  const group = await tl.distributed.initProcessGroup({
    backend: 'gloo',
    timeout: Number(process.env.TL_TIMEOUT_MS ?? 60000),
    sharedMemory: process.env.TL_SHM !== '0',
  });
  const out = { rank: group.rank, sharedMemory: group.sharedMemory, reason: group.sharedMemoryReason };
  if (mode === 'cases') {
    Object.assign(out, await cases(group, Number(seedArg)));
    await group.barrier();
    // Every rank has joined long since: the segment's name must be gone, its memory only mapped.
    out.segmentsLeft = segments().filter((s) => !before.includes(s));
  } else if (mode === 'mismatch') {
    const t = tl.Tensor.ones([10 + group.rank]);
    out.error = await group.allReduce(t).then(
      () => null,
      (e) => e.message,
    );
  } else if (mode === 'exit') {
    await group.barrier();
    if (group.rank === 1) process.exit(0);
    const t0 = Date.now();
    out.error = await group.allReduce(tl.Tensor.ones([1_000_000])).then(
      () => null,
      (e) => e.message,
    );
    out.ms = Date.now() - t0;
  } else if (mode === 'destroy') {
    await group.barrier();
    if (group.rank === 1) {
      await new Promise((r) => setTimeout(r, 3000));
      group.destroy();
      return;
    }
    const pending = group.allReduce(tl.Tensor.ones([1000])).then(
      () => null,
      (e) => e.message,
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    group.destroy();
    out.error = await pending;
    out.ms = Date.now() - t0;
    out.afterDestroy = await Promise.resolve()
      .then(() => group.allReduce(tl.Tensor.ones([4])))
      .then(
        () => null,
        (e) => e.message,
      );
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  if (mode === 'cases' || mode === 'mismatch') group.destroy();
  process.exit(0);
})().catch((err) => {
  console.error(`rank ${process.env.RANK ?? 0}: ${err.stack}`);
  process.exit(3);
});
