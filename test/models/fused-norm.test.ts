// The fused training BatchNorm (+ residual add) (+ ReLU) of native/models/fused_norm.cc, which channels-last
// ResNets use on CPU, against a float64 reference computed here and against ATen's batch_norm + add + relu.
import { describe, expect, it } from 'vitest';
import { SGD, Tensor, resnet18, trainStep } from '../../lib';
import { binding } from '../../lib/native';
import { type Rng, withSeed } from '../support/seed';

type Shape = [number, number, number, number];
type Case = { shape: Shape; relu: boolean; residual: boolean; dtype: 'float32' | 'bfloat16' };
const KEYS = ['y', 'dx', 'dresidual', 'dweight', 'dbias', 'runningMean', 'runningVar'] as const;
type Result = Record<(typeof KEYS)[number], Float64Array | null>;
const MOMENTUM = 0.1;
const EPS = 1e-5;

// float32 -> bfloat16 -> float32, round to nearest even (what the kernels store).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toBf16(v: number): number {
  f32[0] = v;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

function gauss(r: Rng, n: number, mean = 0, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

type Inputs = {
  x: Float32Array;
  residual: Float32Array | null;
  weight: Float32Array;
  bias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  dy: Float32Array;
};

function inputs(r: Rng, c: Case): Inputs {
  const [N, C, H, W] = c.shape;
  const n = N * C * H * W;
  // Channels far from zero mean: E[x^2] - E[x]^2 in float32 would lose most digits there.
  const x = gauss(r, n, 0, 1);
  for (let i = 0; i < n; i++) x[i] = x[i] * (1 + (Math.floor(i / (H * W)) % C) * 0.1) + 30 * ((i % 3) - 1);
  return {
    x,
    residual: c.residual ? gauss(r, n) : null,
    weight: gauss(r, C, 1, 0.5),
    bias: gauss(r, C, 0, 0.5),
    runningMean: gauss(r, C),
    runningVar: Float32Array.from(gauss(r, C), (v) => 1 + Math.abs(v)),
    dy: gauss(r, n),
  };
}

// relu(bn(x) + residual) in training mode and its backward, in float64 from the inputs as the op sees them
// (rounded to bfloat16 first at bfloat16).
function reference(c: Case, inp: Inputs): Result {
  const [N, C, H, W] = c.shape;
  const HW = H * W;
  const n = N * HW;
  const round = c.dtype === 'bfloat16' ? toBf16 : (v: number) => v;
  const x = Float64Array.from(inp.x, round);
  const res = inp.residual && Float64Array.from(inp.residual, round);
  const dy = Float64Array.from(inp.dy, round);
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dres = new Float64Array(x.length);
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  const rm = new Float64Array(C);
  const rv = new Float64Array(C);
  for (let ch = 0; ch < C; ch++) {
    const at = (b: number, i: number) => (b * C + ch) * HW + i;
    let s = 0;
    for (let b = 0; b < N; b++) for (let i = 0; i < HW; i++) s += x[at(b, i)];
    const mean = s / n;
    let q = 0;
    for (let b = 0; b < N; b++) for (let i = 0; i < HW; i++) q += (x[at(b, i)] - mean) ** 2;
    const invstd = 1 / Math.sqrt(q / n + EPS);
    rm[ch] = (1 - MOMENTUM) * inp.runningMean[ch] + MOMENTUM * mean;
    rv[ch] = (1 - MOMENTUM) * inp.runningVar[ch] + (MOMENTUM * q) / (n - 1);
    let sg = 0;
    let sgx = 0;
    for (let b = 0; b < N; b++)
      for (let i = 0; i < HW; i++) {
        const k = at(b, i);
        const v = (x[k] - mean) * invstd * inp.weight[ch] + inp.bias[ch] + (res ? res[k] : 0);
        const pass = !c.relu || v > 0;
        y[k] = pass ? v : 0;
        dres[k] = pass ? dy[k] : 0;
        sg += dres[k];
        sgx += dres[k] * (x[k] - mean);
      }
    dw[ch] = sgx * invstd;
    db[ch] = sg;
    const k0 = inp.weight[ch] * invstd;
    for (let b = 0; b < N; b++)
      for (let i = 0; i < HW; i++) {
        const k = at(b, i);
        dx[k] = k0 * (dres[k] - sg / n - (x[k] - mean) * invstd * invstd * (sgx / n));
      }
  }
  return { y, dx, dresidual: res ? dres : null, dweight: dw, dbias: db, runningMean: rm, runningVar: rv };
}

function run(c: Case, inp: Inputs, fused: boolean): Result {
  const t = (a: Float32Array, shape: number[]) => Tensor.from(a, shape);
  const C = c.shape[1];
  const out = binding.batchNormActForTest(
    t(inp.x, c.shape).handle,
    inp.residual ? t(inp.residual, c.shape).handle : null,
    t(inp.weight, [C]).handle,
    t(inp.bias, [C]).handle,
    t(inp.runningMean, [C]).handle,
    t(inp.runningVar, [C]).handle,
    t(inp.dy, c.shape).handle,
    { relu: c.relu, dtype: c.dtype, momentum: MOMENTUM, eps: EPS, fused },
  );
  const r = {} as Result;
  for (const k of KEYS) r[k] = out[k] ? Float64Array.from(new Tensor(out[k]).toTypedArray() as Float32Array) : null;
  return r;
}

/** Relative L2 error of `a` against the reference. */
function relErr(a: Float64Array, ref: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (a[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

const shapes: Shape[] = [
  [16, 64, 28, 28], // a ResNet layer at 224 px (with batch 16, 64 channels)
  [4, 19, 5, 3], // channels not a multiple of the vector width
  [1, 33, 7, 5],
  [2, 3, 1, 2], // two values per channel: the fewest training allows
];
const cases: Case[] = [];
for (const dtype of ['float32', 'bfloat16'] as const)
  for (const [relu, residual] of [
    [true, false],
    [true, true],
    [false, false],
    [false, true],
  ])
    for (const shape of shapes) cases.push({ shape, relu, residual, dtype });

describe('fused BatchNorm + add + ReLU (training, channels-last)', () => {
  it.each(cases.map((c) => [`${c.dtype} ${c.shape.join('x')} relu=${c.relu} residual=${c.residual}`, c] as const))(
    '%s: matches float64 and is at least as accurate as ATen',
    async (_name, c) =>
      withSeed((r) => {
        const inp = inputs(r, c);
        const ref = reference(c, inp);
        const fused = run(c, inp, true);
        const aten = run(c, inp, false);
        // float32: rounding only. bfloat16: y and dx are stored in bfloat16 (relative rounding 2^-9); the masked
        // gradient passes dy's bfloat16 values through; weight/bias gradients and statistics stay float32.
        const bf = c.dtype === 'bfloat16';
        const tol: Record<string, number> = {
          y: bf ? 3e-3 : 1e-6,
          dx: bf ? 3e-3 : 1e-5,
          dresidual: bf ? 1e-6 : 1e-6,
          dweight: 1e-5,
          dbias: 1e-5,
          runningMean: 1e-6,
          runningVar: 1e-6,
        };
        for (const k of KEYS) {
          const want = ref[k];
          if (!want) {
            expect(fused[k], k).toBeNull();
            continue;
          }
          const e = relErr(fused[k]!, want);
          expect(e, `${k}: fused error`).toBeLessThan(tol[k]);
          // Never worse than eager PyTorch's kernels (allowing for rounding noise at the float32 floor).
          expect(e, `${k}: fused vs ATen error`).toBeLessThanOrEqual(relErr(aten[k]!, want) * 1.5 + 2e-7);
        }
      }),
  );

  it('propagates NaN as ATen does: a NaN input poisons its channel only', () =>
    withSeed((r) => {
      const c: Case = { shape: [4, 8, 6, 6], relu: true, residual: true, dtype: 'float32' };
      const inp = inputs(r, c);
      inp.x[3 * 36 + 5] = Number.NaN; // batch 0, channel 3
      const fused = run(c, inp, true);
      const aten = run(c, inp, false);
      for (const k of ['y', 'dx', 'dweight', 'dbias', 'runningMean', 'runningVar'] as const) {
        const a = fused[k]!;
        const b = aten[k]!;
        for (let i = 0; i < a.length; i++) expect(Number.isNaN(a[i]), `${k}[${i}]`).toBe(Number.isNaN(b[i]));
      }
      const C = c.shape[1];
      const y = fused.y!;
      for (let i = 0; i < y.length; i++) expect(Number.isNaN(y[i])).toBe(Math.floor(i / 36) % C === 3);
    }));

  it('leaves ambiguous layouts (H*W == 1 or C == 1) and one value per channel to ATen', () => {
    for (const shape of [
      [3, 16, 1, 1],
      [2, 1, 4, 4],
      [1, 8, 1, 1],
    ] as Shape[]) {
      const c: Case = { shape, relu: true, residual: false, dtype: 'float32' };
      const inp = inputs(() => 0.5, c);
      expect(() => run(c, inp, true), shape.join('x')).toThrow(/does not apply/);
    }
  });

  it('a channels-last ResNet at batch 1 and 32 px reaches ATen’s one-value-per-channel error', async () => {
    const model = resnet18({ numClasses: 10 }).train();
    model.channelsLast(true);
    const opt = new SGD(model.parameters(), { lr: 0.01 });
    const images = Tensor.randn([1, 3, 32, 32]);
    const labels = Tensor.from(BigInt64Array.from([3n]), [1]);
    await expect(trainStep(model, opt, { images, labels })).rejects.toThrow(/more than 1 value per channel/);
  });

  // bf16 training through the fused kernels (what precision 'auto' picks on this CPU) stays at least as close to
  // float32 as through ATen's, over 12 batches of a ResNet18 (loss of one train step at lr ~0).
  it('bf16 ResNet18 losses are as close to float32 as with ATen’s kernels', async () =>
    withSeed(async (r) => {
      const model = resnet18({ numClasses: 10 }).train();
      model.channelsLast(true);
      const opt = new SGD(model.parameters(), { lr: 1e-30 });
      const err = { fused: 0, aten: 0 };
      try {
        for (let b = 0; b < 12; b++) {
          const images = Tensor.from(gauss(r, 8 * 3 * 32 * 32), [8, 3, 32, 32]);
          const labels = Tensor.from(
            BigInt64Array.from({ length: 8 }, () => BigInt(r.int(10))),
            [8],
          );
          binding.setFusedNorm(true);
          const ref = (await trainStep(model, opt, { images, labels }, { amp: false })).loss;
          const fused = (await trainStep(model, opt, { images, labels }, { amp: 'bf16' })).loss;
          binding.setFusedNorm(false);
          const aten = (await trainStep(model, opt, { images, labels }, { amp: 'bf16' })).loss;
          err.fused += Math.abs(fused - ref) / 12;
          err.aten += Math.abs(aten - ref) / 12;
        }
      } finally {
        binding.setFusedNorm(true);
      }
      expect(err.fused).toBeLessThan(2e-2);
      expect(err.fused).toBeLessThanOrEqual(err.aten * 1.25);
    }));
});
