// Pillow's two-pass antialiased resize (Resample.c: precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResampleHorizontal/Vertical_8bpc) rebuilt
// from its description: a triangle filter whose support grows with the
// downscale factor, fixed-point coefficients with 22 fractional bits, and an
// 8-bit rounding between the horizontal and the vertical pass. Doing the same
// arithmetic makes our output equal to torchvision-on-PIL to the bit, so the
// only differences left come from decoding.
#include "image.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tl::data {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

// Weights of the output pixels [from, to) only: a window of a huge resize
// (a 65500x1 image resized to 256 is 16.8M wide) must cost its own size.
struct Coeffs {
  int ksize = 0;
  int from = 0;
  std::vector<int> bounds;  // per output pixel: first input index, tap count
  std::vector<int32_t> k;   // per output pixel: ksize fixed-point weights
  int first(int xx) const { return bounds[size_t(xx - from) * 2]; }
  int count(int xx) const { return bounds[size_t(xx - from) * 2 + 1]; }
  const int32_t* weights(int xx) const { return &k[size_t(xx - from) * ksize]; }
};

// Per-thread buffers, reused across images (trimResampleScratch frees the big ones).
struct Scratch {
  Coeffs hc, vc;
  std::vector<uint8_t> strip, tmp;
  std::vector<int32_t> stripAcc, rowAcc;
};
thread_local Scratch scratch;

template <class V>
void trim(V& v) {
  if (v.capacity() * sizeof(v[0]) > kKeepScratchBytes) V().swap(v);
}

double triangle(double x) {
  if (x < 0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// in0/in1: the (possibly fractional) source box, relative to the clip start;
// taps are clipped to [0, inSize) like Pillow clips to the image.
void precompute(int inSize, double in0, double in1, int outSize, int from, int to, Coeffs& c) {
  const double scale = (in1 - in0) / outSize;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.from = from;
  c.bounds.assign(size_t(to - from) * 2, 0);
  c.k.assign(size_t(to - from) * c.ksize, 0);
  thread_local std::vector<double> pre;
  pre.resize(c.ksize);
  for (int xx = from; xx < to; xx++) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
      pre[x] = triangle((x + xmin - center + 0.5) * ss);
      ww += pre[x];
    }
    int32_t* k = &c.k[size_t(xx - from) * c.ksize];
    for (int x = 0; x < xmax; x++) {
      double w = ww != 0.0 ? pre[x] / ww : pre[x];
      k[x] = w < 0 ? int32_t(-0.5 + w * (1 << kPrecisionBits)) : int32_t(0.5 + w * (1 << kPrecisionBits));
    }
    c.bounds[size_t(xx - from) * 2] = xmin;
    c.bounds[size_t(xx - from) * 2 + 1] = xmax;
  }
}

// The inner kernels, also built for AVX2 (picked at load time): Pillow's
// 32-bit fixed-point arithmetic needs 32-bit multiplies, which SSE2 lacks.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define TL_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define TL_KERNEL
#endif

TL_KERNEL void accumulate(int32_t* __restrict a, const uint8_t* __restrict in, int32_t w, int n) {
  for (int i = 0; i < n; i++) a[i] += int32_t(in[i]) * w;
}

// The first tap also adds the rounding bias, saving a pass over `a`.
TL_KERNEL void accumulateFirst(int32_t* __restrict a, const uint8_t* __restrict in, int32_t w, int n) {
  const int32_t bias = int32_t(1) << (kPrecisionBits - 1);
  for (int i = 0; i < n; i++) a[i] = bias + int32_t(in[i]) * w;
}

// Pillow's clip8 (>= 2^30 -> 255, <= 0 -> 0, else >> 22), branch-free so
// loops over it vectorise: an arithmetic shift then a clamp gives the same.
inline uint8_t clip8(int32_t in) { return uint8_t(std::min(std::max(in >> kPrecisionBits, 0), 255)); }

// Output columns [colFrom, colTo) of `rows` rows (src rows srcStride bytes
// apart), computed on strips of rows transposed so that each tap is one
// contiguous multiply-add over the strip (vectorised).
void horizontalT(const uint8_t* src, size_t srcStride, int rows, const Coeffs& c, int colFrom, int colTo,
                 uint8_t* dst, size_t dstStride) {
  constexpr int S = 64;  // rows per strip (measured: 16 < 32 < 64 ~ 128)
  std::vector<uint8_t>& t = scratch.strip;
  std::vector<int32_t>& acc = scratch.stripAcc;
  uint8_t px[S * 3];
  int cmin = c.first(colFrom), cmax = cmin;
  for (int xx = colFrom; xx < colTo; xx++) {
    cmin = std::min(cmin, c.first(xx));
    cmax = std::max(cmax, c.first(xx) + c.count(xx));
  }
  const int C = cmax - cmin;
  t.resize(size_t(C) * S * 3);
  acc.resize(size_t(S) * 3);
  for (int r0 = 0; r0 < rows; r0 += S) {
    const int s = std::min(S, rows - r0), n = s * 3;
    for (int r = 0; r < s; r++) {
      const uint8_t* in = src + size_t(r0 + r) * srcStride + size_t(cmin) * 3;
      uint8_t* o = t.data() + size_t(r) * 3;
      for (int j = 0; j < C; j++) {
        o[size_t(j) * n] = in[j * 3];
        o[size_t(j) * n + 1] = in[j * 3 + 1];
        o[size_t(j) * n + 2] = in[j * 3 + 2];
      }
    }
    for (int xx = colFrom; xx < colTo; xx++) {
      const int xmin = c.first(xx) - cmin, xmax = c.count(xx);
      const int32_t* k = c.weights(xx);
      int32_t* a = acc.data();
      if (xmax <= 0) std::fill(a, a + n, int32_t(1) << (kPrecisionBits - 1));
      for (int x = 0; x < xmax; x++)
        (x == 0 ? accumulateFirst : accumulate)(a, t.data() + size_t(xmin + x) * n, k[x], n);
      for (int i = 0; i < n; i++) px[i] = clip8(a[i]);
      uint8_t* o = dst + size_t(r0) * dstStride + size_t(xx - colFrom) * 3;
      for (int r = 0; r < s; r++) {
        o[size_t(r) * dstStride] = px[r * 3];
        o[size_t(r) * dstStride + 1] = px[r * 3 + 1];
        o[size_t(r) * dstStride + 2] = px[r * 3 + 2];
      }
    }
  }
}

// Output rows [rowFrom, rowTo); `src` row 0 is input row `srcRow0`. Works on
// whole rows of bytes so the compiler can vectorise across channels and pixels.
void vertical(const uint8_t* src, size_t srcStride, int srcRow0, int rowBytes, const Coeffs& c, int rowFrom,
              int rowTo, uint8_t* dst, size_t dstStride, std::vector<int32_t>& acc) {
  acc.resize(size_t(rowBytes));
  for (int yy = rowFrom; yy < rowTo; yy++) {
    const int ymin = c.first(yy) - srcRow0, ymax = c.count(yy);
    const int32_t* k = c.weights(yy);
    int32_t* a = acc.data();
    if (ymax <= 0) std::fill(a, a + rowBytes, int32_t(1) << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; y++)
      (y == 0 ? accumulateFirst : accumulate)(a, src + size_t(ymin + y) * srcStride, k[y], rowBytes);
    uint8_t* out = dst + size_t(yy - rowFrom) * dstStride;
    for (int i = 0; i < rowBytes; i++) out[i] = clip8(a[i]);
  }
}

}  // namespace

void resampleBox(const uint8_t* src, int srcW, int cx, int cy, int cw, int ch, double bx0, double by0, double bx1,
                 double by1, int outW, int outH, int colFrom, int colTo, int rowFrom, int rowTo, uint8_t* dst,
                 size_t dstStride) {
  Coeffs& hc = scratch.hc;
  Coeffs& vc = scratch.vc;
  std::vector<uint8_t>& tmp = scratch.tmp;
  std::vector<int32_t>& acc = scratch.rowAcc;
  if (colFrom >= colTo || rowFrom >= rowTo) return;
  const size_t srcStride = size_t(srcW) * 3;
  const uint8_t* origin = src + size_t(cy) * srcStride + size_t(cx) * 3;
  bx0 -= cx, bx1 -= cx, by0 -= cy, by1 -= cy;
  // Pillow skips a pass that maps pixels one to one.
  const bool needH = !(outW == cw && bx0 == 0 && bx1 == cw), needV = !(outH == ch && by0 == 0 && by1 == ch);
  const int cols = colTo - colFrom;
  if (!needV) {
    const uint8_t* rows = origin + size_t(rowFrom) * srcStride;
    if (needH) {
      precompute(cw, bx0, bx1, outW, colFrom, colTo, hc);
      horizontalT(rows, srcStride, rowTo - rowFrom, hc, colFrom, colTo, dst, dstStride);
    } else {
      for (int y = rowFrom; y < rowTo; y++)
        std::memcpy(dst + size_t(y - rowFrom) * dstStride, origin + size_t(y) * srcStride + size_t(colFrom) * 3,
                    size_t(cols) * 3);
    }
    return;
  }
  precompute(ch, by0, by1, outH, rowFrom, rowTo, vc);
  int first = vc.first(rowFrom), last = first;
  for (int yy = rowFrom; yy < rowTo; yy++) {
    first = std::min(first, vc.first(yy));
    last = std::max(last, vc.first(yy) + vc.count(yy));
  }
  if (needH) {
    precompute(cw, bx0, bx1, outW, colFrom, colTo, hc);
    tmp.resize(size_t(last - first) * cols * 3);
    horizontalT(origin + size_t(first) * srcStride, srcStride, last - first, hc, colFrom, colTo, tmp.data(),
               size_t(cols) * 3);
    vertical(tmp.data(), size_t(cols) * 3, first, cols * 3, vc, rowFrom, rowTo, dst, dstStride, acc);
  } else {
    vertical(origin + size_t(colFrom) * 3, srcStride, 0, cols * 3, vc, rowFrom, rowTo, dst, dstStride, acc);
  }
}

void trimResampleScratch() {
  trim(scratch.hc.k);
  trim(scratch.hc.bounds);
  trim(scratch.vc.k);
  trim(scratch.vc.bounds);
  trim(scratch.strip);
  trim(scratch.tmp);
  trim(scratch.stripAcc);
  trim(scratch.rowAcc);
}

void resampleWindow(const uint8_t* src, int srcW, int /*srcH*/, int cx, int cy, int cw, int ch, int outW, int outH,
                    int colFrom, int colTo, int rowFrom, int rowTo, uint8_t* dst, size_t dstStride) {
  resampleBox(src, srcW, cx, cy, cw, ch, cx, cy, cx + cw, cy + ch, outW, outH, colFrom, colTo, rowFrom, rowTo, dst,
              dstStride);
}

void resampleBilinear(const uint8_t* src, int srcW, int srcH, int x, int y, int w, int h, int outW, int outH,
                      int rowFrom, int rowTo, uint8_t* dst) {
  resampleWindow(src, srcW, srcH, x, y, w, h, outW, outH, 0, outW, rowFrom, rowTo, dst, size_t(outW) * 3);
}

}  // namespace tl::data
