#include <algorithm>
#include <cstring>
#include <vector>

#include "models/batch_norm_act.h"

namespace tl::bnact {

namespace {

// Each entry point is built for AVX-512, AVX2 + FMA and the baseline and
// picked at load time: the loops are plain C++ that GCC vectorises, and
// every variant of one call runs the forward and its backward (the ReLU mask
// recomputed from x must round as the forward did: same clone, same FMAs).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define TL_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TL_KERNEL
#endif
#define TL_INLINE [[gnu::always_inline]] inline

using bf16 = uint16_t;

TL_INLINE float load(const float* p, int64_t i) { return p[i]; }
TL_INLINE float load(const bf16* p, int64_t i) {
  uint32_t u = uint32_t(p[i]) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
TL_INLINE void store(float* p, int64_t i, float v) { p[i] = v; }
// Round to nearest even, NaN to the canonical quiet NaN: c10::BFloat16's rounding.
TL_INLINE void store(bf16* p, int64_t i, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  p[i] = v != v ? bf16(0x7FC0) : bf16(r);
}

// Rows summed in float32 before their sums go into the float64 totals: the
// float32 part then rounds over 16 terms, not over hundreds of thousands.
constexpr int64_t kBlock = 16;

// Per-thread float32 block sums, two of [C].
float* blockScratch(int64_t C) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t(2 * C)) scratch.resize(size_t(2 * C));
  return scratch.data();
}

// Per-channel sums of two quantities over `rows` rows, added to a[C] and b[C]:
// rowFn(r, blockA, blockB) adds row r's terms into the float32 block sums.
template <class RowFn>
TL_INLINE void blockSums(int64_t rows, int64_t C, double* __restrict a, double* __restrict b, RowFn rowFn) {
  float* __restrict ba = blockScratch(C);
  float* __restrict bb = ba + C;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    const int64_t r1 = std::min(rows, r0 + kBlock);
    for (int64_t c = 0; c < C; c++) ba[c] = bb[c] = 0.f;
    for (int64_t r = r0; r < r1; r++) rowFn(r, ba, bb);
    for (int64_t c = 0; c < C; c++) {
      a[c] += ba[c];
      b[c] += bb[c];
    }
  }
}

template <class T>
TL_INLINE void statsRows(const T* __restrict x, int64_t rows, int64_t C, const float* __restrict center,
                         double* __restrict sum, double* __restrict sumSq) {
  blockSums(rows, C, sum, sumSq, [&](int64_t r, float* __restrict bs, float* __restrict bq) {
    const T* __restrict row = x + r * C;
    for (int64_t c = 0; c < C; c++) {
      const float d = load(row, c) - center[c];
      bs[c] += d;
      bq[c] += d * d;
    }
  });
}

template <class T, bool Residual, bool Relu>
TL_INLINE void normalizeRows(const T* __restrict x, const T* __restrict res, T* __restrict y, int64_t rows,
                             int64_t C, const float* __restrict scale, const float* __restrict shift) {
  for (int64_t r = 0; r < rows; r++) {
    const T* __restrict xr = x + r * C;
    const T* __restrict rr = Residual ? res + r * C : nullptr;
    T* __restrict yr = y + r * C;
    for (int64_t c = 0; c < C; c++) {
      float v = load(xr, c) * scale[c] + shift[c];
      if constexpr (Residual) v += load(rr, c);
      if constexpr (Relu) v = v <= 0.f ? 0.f : v;  // NaN fails the test and stays
      store(yr, c, v);
    }
  }
}

// The incoming gradient after the ReLU, for element c of one row. Same
// threshold as torch's threshold_backward: zero where the output is <= 0.
template <Mask M, class T>
TL_INLINE float masked(float g, float xv, const T* __restrict outRow, int64_t c, const BackwardParams& p) {
  if constexpr (M == Mask::Recompute) return xv * p.scale[c] + p.shift[c] <= 0.f ? 0.f : g;
  if constexpr (M == Mask::Output) return load(outRow, c) <= 0.f ? 0.f : g;
  return g;
}

template <class T, Mask M, bool WriteG>
TL_INLINE void reduceRows(const T* __restrict dy, const T* __restrict x, const T* __restrict out, T* __restrict gOut,
                          int64_t rows, int64_t C, const BackwardParams& p, double* __restrict sumG,
                          double* __restrict sumGX) {
  const float* __restrict mean = p.mean;
  blockSums(rows, C, sumG, sumGX, [&](int64_t r, float* __restrict bs, float* __restrict bq) {
    const T* __restrict dyr = dy + r * C;
    const T* __restrict xr = x + r * C;
    const T* __restrict outr = M == Mask::Output ? out + r * C : nullptr;
    T* __restrict gr = WriteG ? gOut + r * C : nullptr;
    for (int64_t c = 0; c < C; c++) {
      const float xv = load(xr, c);
      const float g = masked<M>(load(dyr, c), xv, outr, c, p);
      if constexpr (WriteG) store(gr, c, g);
      bs[c] += g;
      bq[c] += g * (xv - mean[c]);
    }
  });
}

template <class T, Mask M>
TL_INLINE void inputRows(const T* __restrict dy, const T* __restrict x, const T* __restrict out, T* __restrict dx,
                         int64_t rows, int64_t C, const BackwardParams& p) {
  const float* __restrict mean = p.mean;
  const float* __restrict scale = p.scale;
  const float* __restrict gm = p.gradMean;
  const float* __restrict gp = p.gradProj;
  for (int64_t r = 0; r < rows; r++) {
    const T* __restrict dyr = dy + r * C;
    const T* __restrict xr = x + r * C;
    const T* __restrict outr = M == Mask::Output ? out + r * C : nullptr;
    T* __restrict dxr = dx + r * C;
    for (int64_t c = 0; c < C; c++) {
      const float xv = load(xr, c);
      const float g = masked<M>(load(dyr, c), xv, outr, c, p);
      store(dxr, c, scale[c] * (g - gm[c] - (xv - mean[c]) * gp[c]));
    }
  }
}

template <class T>
TL_INLINE void normalizeAs(const void* x, const void* res, void* y, int64_t rows, int64_t C, const float* scale,
                           const float* shift, bool relu) {
  auto* xs = static_cast<const T*>(x);
  auto* rs = static_cast<const T*>(res);
  auto* ys = static_cast<T*>(y);
  if (rs && relu) normalizeRows<T, true, true>(xs, rs, ys, rows, C, scale, shift);
  else if (rs) normalizeRows<T, true, false>(xs, rs, ys, rows, C, scale, shift);
  else if (relu) normalizeRows<T, false, true>(xs, rs, ys, rows, C, scale, shift);
  else normalizeRows<T, false, false>(xs, rs, ys, rows, C, scale, shift);
}

template <class T, Mask M>
TL_INLINE void reduceAs(const void* dy, const void* x, const void* out, void* gOut, int64_t rows, int64_t C,
                        const BackwardParams& p, double* sumG, double* sumGX) {
  auto* d = static_cast<const T*>(dy);
  auto* xs = static_cast<const T*>(x);
  auto* o = static_cast<const T*>(out);
  auto* g = static_cast<T*>(gOut);
  if (g) reduceRows<T, M, true>(d, xs, o, g, rows, C, p, sumG, sumGX);
  else reduceRows<T, M, false>(d, xs, o, g, rows, C, p, sumG, sumGX);
}

template <class T>
TL_INLINE void inputAs(const void* dy, const void* x, const void* out, void* dx, int64_t rows, int64_t C, Mask mask,
                       const BackwardParams& p) {
  auto* d = static_cast<const T*>(dy);
  auto* xs = static_cast<const T*>(x);
  auto* o = static_cast<const T*>(out);
  auto* g = static_cast<T*>(dx);
  switch (mask) {
    case Mask::None: inputRows<T, Mask::None>(d, xs, o, g, rows, C, p); break;
    case Mask::Recompute: inputRows<T, Mask::Recompute>(d, xs, o, g, rows, C, p); break;
    case Mask::Output: inputRows<T, Mask::Output>(d, xs, o, g, rows, C, p); break;
  }
}

}  // namespace

TL_KERNEL void accumulateStats(Type t, const void* x, int64_t rows, int64_t C, const float* center, double* sum,
                               double* sumSq) {
  if (t == Type::BF16) statsRows(static_cast<const bf16*>(x), rows, C, center, sum, sumSq);
  else statsRows(static_cast<const float*>(x), rows, C, center, sum, sumSq);
}

TL_KERNEL void normalize(Type t, const void* x, const void* residual, void* y, int64_t rows, int64_t C,
                         const float* scale, const float* shift, bool relu) {
  if (t == Type::BF16) normalizeAs<bf16>(x, residual, y, rows, C, scale, shift, relu);
  else normalizeAs<float>(x, residual, y, rows, C, scale, shift, relu);
}

TL_KERNEL void backwardReduce(Type t, const void* dy, const void* x, const void* out, void* gOut, int64_t rows,
                              int64_t C, Mask mask, const BackwardParams& p, double* sumG, double* sumGX) {
  const bool b = t == Type::BF16;
  switch (mask) {
    case Mask::None:
      b ? reduceAs<bf16, Mask::None>(dy, x, out, gOut, rows, C, p, sumG, sumGX)
        : reduceAs<float, Mask::None>(dy, x, out, gOut, rows, C, p, sumG, sumGX);
      break;
    case Mask::Recompute:
      b ? reduceAs<bf16, Mask::Recompute>(dy, x, out, gOut, rows, C, p, sumG, sumGX)
        : reduceAs<float, Mask::Recompute>(dy, x, out, gOut, rows, C, p, sumG, sumGX);
      break;
    case Mask::Output:
      b ? reduceAs<bf16, Mask::Output>(dy, x, out, gOut, rows, C, p, sumG, sumGX)
        : reduceAs<float, Mask::Output>(dy, x, out, gOut, rows, C, p, sumG, sumGX);
      break;
  }
}

TL_KERNEL void backwardInput(Type t, const void* dy, const void* x, const void* out, void* dx, int64_t rows,
                             int64_t C, Mask mask, const BackwardParams& p) {
  if (t == Type::BF16) inputAs<bf16>(dy, x, out, dx, rows, C, mask, p);
  else inputAs<float>(dy, x, out, dx, rows, C, mask, p);
}

}  // namespace tl::bnact
