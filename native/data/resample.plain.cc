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

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output pixel: first input index, tap count
  std::vector<int32_t> k;   // per output pixel: ksize fixed-point weights
};

double triangle(double x) {
  if (x < 0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// in0/in1: the (possibly fractional) source box, relative to the clip start;
// taps are clipped to [0, inSize) like Pillow clips to the image.
void precompute(int inSize, double in0, double in1, int outSize, Coeffs& c) {
  const double scale = (in1 - in0) / outSize;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.assign(size_t(outSize) * 2, 0);
  c.k.assign(size_t(outSize) * c.ksize, 0);
  std::vector<double> pre(c.ksize);
  for (int xx = 0; xx < outSize; xx++) {
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
    int32_t* k = &c.k[size_t(xx) * c.ksize];
    for (int x = 0; x < xmax; x++) {
      double w = ww != 0.0 ? pre[x] / ww : pre[x];
      k[x] = w < 0 ? int32_t(-0.5 + w * (1 << kPrecisionBits)) : int32_t(0.5 + w * (1 << kPrecisionBits));
    }
    c.bounds[size_t(xx) * 2] = xmin;
    c.bounds[size_t(xx) * 2 + 1] = xmax;
  }
}

inline uint8_t clip8(int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return uint8_t(in >> kPrecisionBits);
}

// Output columns [colFrom, colTo) of `rows` rows; src rows are `srcStride` bytes apart.
void horizontal(const uint8_t* src, size_t srcStride, int rows, const Coeffs& c, int colFrom, int colTo,
                uint8_t* dst, size_t dstStride) {
  for (int y = 0; y < rows; y++) {
    const uint8_t* in = src + size_t(y) * srcStride;
    uint8_t* out = dst + size_t(y) * dstStride;
    for (int xx = colFrom; xx < colTo; xx++) {
      const int xmin = c.bounds[size_t(xx) * 2], xmax = c.bounds[size_t(xx) * 2 + 1];
      const int32_t* k = &c.k[size_t(xx) * c.ksize];
      const uint8_t* p = in + size_t(xmin) * 3;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < xmax; x++) {
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
        p += 3;
      }
      out[0] = clip8(s0);
      out[1] = clip8(s1);
      out[2] = clip8(s2);
      out += 3;
    }
  }
}

// Output rows [rowFrom, rowTo); `src` row 0 is input row `srcRow0`. Works on
// whole rows of bytes so the compiler can vectorise across channels and pixels.
void vertical(const uint8_t* src, size_t srcStride, int srcRow0, int rowBytes, const Coeffs& c, int rowFrom,
              int rowTo, uint8_t* dst, size_t dstStride, std::vector<int32_t>& acc) {
  acc.resize(size_t(rowBytes));
  for (int yy = rowFrom; yy < rowTo; yy++) {
    const int ymin = c.bounds[size_t(yy) * 2] - srcRow0, ymax = c.bounds[size_t(yy) * 2 + 1];
    const int32_t* k = &c.k[size_t(yy) * c.ksize];
    int32_t* a = acc.data();
    std::fill(a, a + rowBytes, int32_t(1) << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; y++) {
      const uint8_t* in = src + size_t(ymin + y) * srcStride;
      const int32_t w = k[y];
      for (int i = 0; i < rowBytes; i++) a[i] += in[i] * w;
    }
    uint8_t* out = dst + size_t(yy - rowFrom) * dstStride;
    for (int i = 0; i < rowBytes; i++) out[i] = clip8(a[i]);
  }
}

}  // namespace

void resampleBox(const uint8_t* src, int srcW, int cx, int cy, int cw, int ch, double bx0, double by0, double bx1,
                 double by1, int outW, int outH, int colFrom, int colTo, int rowFrom, int rowTo, uint8_t* dst,
                 size_t dstStride) {
  thread_local Coeffs hc, vc;
  thread_local std::vector<uint8_t> tmp;
  thread_local std::vector<int32_t> acc;
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
      precompute(cw, bx0, bx1, outW, hc);
      horizontal(rows, srcStride, rowTo - rowFrom, hc, colFrom, colTo, dst, dstStride);
    } else {
      for (int y = rowFrom; y < rowTo; y++)
        std::memcpy(dst + size_t(y - rowFrom) * dstStride, origin + size_t(y) * srcStride + size_t(colFrom) * 3,
                    size_t(cols) * 3);
    }
    return;
  }
  precompute(ch, by0, by1, outH, vc);
  const int first = vc.bounds[size_t(rowFrom) * 2];
  int last = first;
  for (int yy = rowFrom; yy < rowTo; yy++)
    last = std::max(last, vc.bounds[size_t(yy) * 2] + vc.bounds[size_t(yy) * 2 + 1]);
  if (needH) {
    precompute(cw, bx0, bx1, outW, hc);
    tmp.resize(size_t(last - first) * cols * 3);
    horizontal(origin + size_t(first) * srcStride, srcStride, last - first, hc, colFrom, colTo, tmp.data(),
               size_t(cols) * 3);
    vertical(tmp.data(), size_t(cols) * 3, first, cols * 3, vc, rowFrom, rowTo, dst, dstStride, acc);
  } else {
    vertical(origin + size_t(colFrom) * 3, srcStride, 0, cols * 3, vc, rowFrom, rowTo, dst, dstStride, acc);
  }
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
