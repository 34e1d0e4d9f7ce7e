// Sniffing, geometry and the per-sample pipeline. See image.h.
#include "image.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef TORCHLINE_TURBOJPEG
#include <turbojpeg.h>
#endif

namespace tl::data {

// ---------------------------------------------------------------- sniffing --

namespace {

uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

// EXIF orientation (tag 0x0112 of IFD0), 0 when absent or unreadable.
int exifOrientation(const uint8_t* seg, size_t len) {
  if (len < 14 || std::memcmp(seg, "Exif\0\0", 6) != 0) return 0;
  const uint8_t* t = seg + 6;
  size_t n = len - 6;
  bool le;
  if (t[0] == 'I' && t[1] == 'I') le = true;
  else if (t[0] == 'M' && t[1] == 'M') le = false;
  else return 0;
  auto u16 = [&](size_t o) -> uint32_t { return le ? (t[o] | t[o + 1] << 8) : (t[o] << 8 | t[o + 1]); };
  auto u32 = [&](size_t o) -> uint32_t {
    return le ? (uint32_t(t[o]) | uint32_t(t[o + 1]) << 8 | uint32_t(t[o + 2]) << 16 | uint32_t(t[o + 3]) << 24)
              : (uint32_t(t[o]) << 24 | uint32_t(t[o + 1]) << 16 | uint32_t(t[o + 2]) << 8 | uint32_t(t[o + 3]));
  };
  if (u16(2) != 42) return 0;
  size_t ifd = u32(4);
  if (ifd + 2 > n) return 0;
  uint32_t count = u16(ifd);
  for (uint32_t i = 0; i < count; i++) {
    size_t e = ifd + 2 + size_t(i) * 12;
    if (e + 12 > n) return 0;
    if (u16(e) == 0x0112) return int(u16(e + 8));
  }
  return 0;
}

}  // namespace

Sniff sniffJpeg(const uint8_t* d, size_t size, bool exifTranspose) {
  Sniff s;
  int samp[4][2] = {};  // per component: horizontal, vertical sampling factor
  bool progressive = false;
  int scanComponents = 0;
  if (size < 4 || d[0] != 0xFF || d[1] != 0xD8 || d[2] != 0xFF) {
    s.reason = "not a JPEG";
    return s;
  }
  s.isJpeg = true;
  int components = 0, precision = 0, orientation = 0;
  bool sofSeen = false, sofSupported = false;
  size_t pos = 2;
  while (pos + 4 <= size) {
    if (d[pos] != 0xFF) break;  // lost sync: let the decoder judge
    uint8_t m = d[pos + 1];
    if (m == 0xFF) {  // fill byte
      pos++;
      continue;
    }
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
      pos += 2;
      continue;
    }
    if (m == 0xDA) {
      if (pos + 4 < size) scanComponents = d[pos + 4];
      // Entropy-coded data never holds FF D9, so an EOI after the first scan
      // means the file is complete; without one it was cut short.
      for (size_t i = size - 1; i > pos + 1 && !s.hasEnd; i--) s.hasEnd = d[i - 1] == 0xFF && d[i] == 0xD9;
      break;
    }
    if (m == 0xD9) break;
    size_t len = be16(d + pos + 2);
    if (len < 2 || pos + 2 + len > size) break;
    const uint8_t* seg = d + pos + 4;
    size_t segLen = len - 2;
    if (m == 0xE1 && orientation == 0) orientation = exifOrientation(seg, segLen);
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && segLen >= 6) {
      sofSeen = true;
      precision = seg[0];
      s.height = be16(seg + 1);
      s.width = be16(seg + 3);
      components = seg[5];
      // Baseline, extended, progressive, and their arithmetic-coded forms.
      sofSupported = m == 0xC0 || m == 0xC1 || m == 0xC2 || m == 0xC9 || m == 0xCA;
      progressive = m == 0xC2 || m == 0xCA;
      for (int c = 0; c < components && c < 4 && segLen >= size_t(6 + 3 * c + 3); c++) {
        samp[c][0] = seg[6 + 3 * c + 1] >> 4;
        samp[c][1] = seg[6 + 3 * c + 1] & 15;
      }
    }
    pos += 2 + len;
  }
#ifndef TORCHLINE_TURBOJPEG
  s.reason = "built without libjpeg-turbo";
  return s;
#endif
  s.orientation = orientation;
  s.cmyk = components == 4;
  // libjpeg keeps every coefficient of the image (64 x 2 bytes per 8x8
  // block, blocks rounded up to whole MCUs) when the file has several scans.
  if (sofSeen && components >= 1 && components <= 4 && (progressive || (scanComponents > 0 && scanComponents < components))) {
    int maxH = 1, maxV = 1;
    for (int c = 0; c < components; c++) maxH = std::max(maxH, samp[c][0]), maxV = std::max(maxV, samp[c][1]);
    for (int c = 0; c < components; c++) {
      const int64_t h = std::max(1, samp[c][0]), v = std::max(1, samp[c][1]);
      int64_t bw = (int64_t(s.width) * h + 8 * maxH - 1) / (8 * maxH), bh = (int64_t(s.height) * v + 8 * maxV - 1) / (8 * maxV);
      bw = (bw + h - 1) / h * h;
      bh = (bh + v - 1) / v * v;
      s.coefBytes += bw * bh * 128;
    }
  }
  if (!sofSeen) s.reason = "no frame header before the scan";
  else if (!sofSupported) s.reason = "lossless or hierarchical JPEG";
  else if (precision != 8) s.reason = std::to_string(precision) + "-bit JPEG";
  else if (components != 1 && components != 3 && components != 4) s.reason = std::to_string(components) + "-component JPEG";
  else if (exifTranspose && orientation > 1) s.reason = "EXIF orientation " + std::to_string(orientation);
  else if (s.width == 0 || s.height == 0) s.reason = "JPEG with DNL height";
  else s.fastPath = true;
  return s;
}

void checkDecoderMemory(int64_t coefBytes, int width, int height, int64_t maxDecoderBytes) {
  if (maxDecoderBytes > 0 && coefBytes > maxDecoderBytes)
    throw ImageError("a progressive (multi-scan) JPEG of " + std::to_string(width) + "x" + std::to_string(height) +
                     " needs " + std::to_string((coefBytes + (1 << 20) - 1) >> 20) +
                     " MiB of decoder memory, over maxDecoderMemory " + std::to_string(maxDecoderBytes >> 20) +
                     " MiB");
}

void cmykToRgb(const uint8_t* cmyk, uint8_t* rgb, size_t n) {
  // PIL inverts the samples (rawmode CMYK;I), then r = (255-k) - (c*(255-k))/255
  // with its MULDIV255 rounding; on the raw samples C, K that is
  // K - (255-C)*K/255.
  for (size_t i = 0; i < n; i++, cmyk += 4, rgb += 3) {
    const int nk = cmyk[3];
    for (int c = 0; c < 3; c++) {
      const int tmp = (255 - cmyk[c]) * nk + 128;
      const int v = nk - (((tmp >> 8) + tmp) >> 8);
      rgb[c] = uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
}

// --------------------------------------------------------------------- rng --

uint64_t SampleRng::next() {
  // splitmix64: tiny state, good mixing, one multiply chain per draw.
  uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SampleRng::uniform(double lo, double hi) { return lo + (hi - lo) * (double(next() >> 11) * 0x1.0p-53); }

int64_t SampleRng::randint(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + int64_t(next() % uint64_t(hi - lo));
}

uint64_t sampleSeed(uint64_t seed, uint64_t epoch, uint64_t index) {
  SampleRng r(seed ^ 0x243F6A8885A308D3ull);
  uint64_t a = r.next() ^ (epoch * 0x9E3779B97F4A7C15ull);
  SampleRng r2(a);
  uint64_t b = r2.next() ^ (index * 0xD1B54A32D192ED03ull);
  return SampleRng(b).next();
}

// ---------------------------------------------------------------- geometry --

namespace {

// Python's round(): half to even.
int pyRound(double v) { return int(std::nearbyint(v)); }

struct State {
  int srcW, srcH;
  bool resampled = false;
  int cropX = 0, cropY = 0, cropW, cropH;  // source region that is resampled
  int gridW, gridH;                        // its resampled size
  int winX = 0, winY = 0, curW, curH;      // the current image: a window of the grid
  bool flip = false;

  void crop(int top, int left, int h, int w) {
    if (flip) left = curW - left - w;  // the current image is mirrored
    winX += left;
    winY += top;
    curW = w;
    curH = h;
  }
  bool windowInside() const { return winX >= 0 && winY >= 0 && winX + curW <= gridW && winY + curH <= gridH; }
  void resize(int w, int h) {
    if (w == curW && h == curH && !resampled) return;
    if (!windowInside())
      throw std::invalid_argument("a resize after a CenterCrop that pads the image is not supported");
    if (!resampled) {
      cropX = winX;
      cropY = winY;
      cropW = curW;
      cropH = curH;
    } else {
      // A second resize: fold it into one from the source (documented approximation).
      double sx = double(cropW) / gridW, sy = double(cropH) / gridH;
      int x0 = cropX + int(std::lround(winX * sx)), y0 = cropY + int(std::lround(winY * sy));
      int x1 = cropX + int(std::lround((winX + curW) * sx)), y1 = cropY + int(std::lround((winY + curH) * sy));
      cropX = x0;
      cropY = y0;
      cropW = std::max(1, x1 - x0);
      cropH = std::max(1, y1 - y0);
    }
    gridW = w;
    gridH = h;
    winX = winY = 0;
    curW = w;
    curH = h;
    resampled = true;
  }
};

}  // namespace

Geometry planGeometry(const Plan& plan, int srcW, int srcH, SampleRng& rng) {
  State s;
  s.srcW = srcW;
  s.srcH = srcH;
  s.cropW = s.gridW = s.curW = srcW;
  s.cropH = s.gridH = s.curH = srcH;
  for (const Op& op : plan.ops) {
    switch (op.kind) {
      case Op::RandomResizedCrop: {
        // torchvision.transforms.RandomResizedCrop.get_params, draw for draw.
        const int width = s.curW, height = s.curH;
        const double area = double(width) * height;
        const double logLo = std::log(op.ratio[0]), logHi = std::log(op.ratio[1]);
        int top = -1, left = 0, h = 0, w = 0;
        for (int attempt = 0; attempt < 10; attempt++) {
          double targetArea = area * rng.uniform(op.scale[0], op.scale[1]);
          double aspect = std::exp(rng.uniform(logLo, logHi));
          int cw = pyRound(std::sqrt(targetArea * aspect));
          int chh = pyRound(std::sqrt(targetArea / aspect));
          if (cw > 0 && cw <= width && chh > 0 && chh <= height) {
            top = int(rng.randint(0, height - chh + 1));
            left = int(rng.randint(0, width - cw + 1));
            h = chh;
            w = cw;
            break;
          }
        }
        if (top < 0) {  // fallback: central crop at the nearest allowed ratio
          double inRatio = double(width) / height;
          double rMin = std::min(op.ratio[0], op.ratio[1]), rMax = std::max(op.ratio[0], op.ratio[1]);
          if (inRatio < rMin) {
            w = width;
            h = pyRound(w / rMin);
          } else if (inRatio > rMax) {
            h = height;
            w = pyRound(h * rMax);
          } else {
            w = width;
            h = height;
          }
          top = (height - h) / 2;
          left = (width - w) / 2;
        }
        s.crop(top, left, h, w);
        s.resize(op.w, op.h);
        break;
      }
      case Op::Resize: {
        int newW, newH;
        if (op.w > 0) {
          newW = op.w;
          newH = op.h;
        } else {
          // torchvision _compute_resized_output_size
          const int w = s.curW, h = s.curH;
          const int shortSide = std::min(w, h), longSide = std::max(w, h);
          const double longD = double(int64_t(op.h) * longSide) / shortSide;
          // A 65500x1 image resized to 256 is already 16.8M wide; past 2^30 int geometry overflows.
          if (longD > double(1 << 30))
            throw ImageError("a " + std::to_string(w) + "x" + std::to_string(h) + " image resized to " +
                             std::to_string(op.h) + " would be " + std::to_string(int64_t(longD)) + " pixels long");
          int newShort = op.h, newLong = int(longD);
          if (op.maxSize > 0 && newLong > op.maxSize) {
            newShort = int(double(int64_t(op.maxSize) * newShort) / newLong);
            newLong = op.maxSize;
          }
          if (w <= h) {
            newW = newShort;
            newH = newLong;
          } else {
            newW = newLong;
            newH = newShort;
          }
        }
        if (newW != s.curW || newH != s.curH) s.resize(newW, newH);
        break;
      }
      case Op::CenterCrop: {
        // torchvision center_crop, padding with zeros when the crop is larger.
        auto offset = [](int image, int crop) { return crop > image ? -((crop - image) / 2) : pyRound((image - crop) / 2.0); };
        int top = offset(s.curH, op.h), left = offset(s.curW, op.w);
        s.crop(top, left, op.h, op.w);  // mirrored by crop() when flipped, padding included
        break;
      }
      case Op::HorizontalFlip:
        if (rng.uniform(0, 1) < op.p) s.flip = !s.flip;
        break;
      case Op::Normalize:
        break;
    }
  }
  Geometry g;
  g.cropX = s.cropX;
  g.cropY = s.cropY;
  g.cropW = s.cropW;
  g.cropH = s.cropH;
  g.gridW = s.gridW;
  g.gridH = s.gridH;
  g.outX = s.winX;
  g.outY = s.winY;
  g.outW = s.curW;
  g.outH = s.curH;
  g.flip = s.flip;
  return g;
}

// ------------------------------------------------------------------- files --

std::vector<uint8_t> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ImageError("cannot open: " + std::string(std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ImageError("not a regular file");
  }
  std::vector<uint8_t> buf(size_t(st.st_size));
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw ImageError("read failed: " + std::string(std::strerror(e)));
    }
    if (r == 0) break;
    got += size_t(r);
  }
  ::close(fd);
  buf.resize(got);
  return buf;
}

// ------------------------------------------------------------------ decode --

#ifdef TORCHLINE_TURBOJPEG
namespace {

struct TjHandle {
  tjhandle h = tjInitDecompress();
  ~TjHandle() {
    if (h) tjDestroy(h);
  }
};

tjhandle decoder() {
  thread_local TjHandle t;
  if (!t.h) throw std::runtime_error("libjpeg-turbo: cannot create a decompressor");
  return t.h;
}

void checkPixels(int64_t w, int64_t h, int64_t maxPixels) {
  if (maxPixels > 0 && w * h > maxPixels)
    throw ImageError("image is " + std::to_string(w) + "x" + std::to_string(h) + " = " + std::to_string(w * h) +
                     " pixels, over maxPixels " + std::to_string(maxPixels) + " (decompression bomb guard)");
}

// Decodes at scale num/8 into img; returns the decoded size.
void tjDecode(const uint8_t* data, size_t size, int num, RgbImage& img, int64_t maxPixels, int64_t maxDecoderBytes) {
  if (!validScaleNum(num)) throw std::invalid_argument("JPEG scale must be n/8 with n in 1..16");
  tjhandle h = decoder();
  int w = 0, hh = 0, subsamp = 0, cs = 0;
  if (tjDecompressHeader3(h, data, (unsigned long)size, &w, &hh, &subsamp, &cs) != 0)
    throw ImageError(std::string("bad JPEG header: ") + tjGetErrorStr2(h));
  checkPixels(w, hh, maxPixels);
  // TurboJPEG 2.1 has no memory limit of its own: check the header's cost first.
  const Sniff sn = sniffJpeg(data, size);
  checkDecoderMemory(sn.coefBytes, w, hh, maxDecoderBytes);
  tjscalingfactor sf{num, 8};
  int sw = TJSCALED(w, sf), sh = TJSCALED(hh, sf);
  img.width = sw;
  img.height = sh;
  const bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
  thread_local std::vector<uint8_t> cmykPixels;
  uint8_t* dst;
  if (cmyk) {
    cmykPixels.resize(size_t(sw) * sh * 4);
    dst = cmykPixels.data();
  } else {
    img.pixels.resize(size_t(sw) * sh * 3);
    dst = img.pixels.data();
  }
  // TJFLAG_STOPONWARNING is off so benign warnings (extraneous bytes) pass;
  // a truncated stream is refused below, as PIL refuses it.
  if (tjDecompress2(h, data, (unsigned long)size, dst, sw, sw * (cmyk ? 4 : 3), sh, cmyk ? TJPF_CMYK : TJPF_RGB, 0) != 0) {
    std::string msg = tjGetErrorStr2(h);
    bool warning = tjGetErrorCode(h) == TJERR_WARNING;
    std::string lower = msg;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (!warning || lower.find("premature end") != std::string::npos)
      throw ImageError(std::string(warning ? "truncated JPEG: " : "corrupt JPEG: ") + msg);
  }
  if (cmyk) {
    img.pixels.resize(size_t(sw) * sh * 3);
    cmykToRgb(cmykPixels.data(), img.pixels.data(), size_t(sw) * sh);
    if (cmykPixels.capacity() > kKeepScratchBytes) std::vector<uint8_t>().swap(cmykPixels);
  }
}

}  // namespace
#endif

bool validScaleNum(int scaleNum) {
#ifdef TORCHLINE_TURBOJPEG
  // Asked of the library rather than assumed: n/8 must reduce to one of its factors.
  int n = 0;
  const tjscalingfactor* f = tjGetScalingFactors(&n);
  for (int i = 0; f && i < n; i++)
    if (f[i].denom > 0 && int64_t(scaleNum) * f[i].denom == int64_t(f[i].num) * 8) return true;
  return false;
#else
  return scaleNum >= 1 && scaleNum <= 16;
#endif
}

RgbImage decodeJpeg(const uint8_t* data, size_t size, int scaleNum, int64_t maxPixels, int64_t maxDecoderBytes) {
  RgbImage img;
#ifdef TORCHLINE_TURBOJPEG
  tjDecode(data, size, scaleNum, img, maxPixels, maxDecoderBytes);
#else
  (void)data, (void)size, (void)scaleNum, (void)maxPixels, (void)maxDecoderBytes;
  throw ImageError("built without libjpeg-turbo");
#endif
  return img;
}

// ---------------------------------------------------------------- pipeline --

namespace {

thread_local std::vector<uint8_t> win;      // render's output window
thread_local RgbImage decoded;              // processJpeg's decoded region

// Runs geometry g over an RGB source and packs the sample into `out`.
void render(const Plan& plan, const Geometry& g, const uint8_t* src, int srcW, int srcH, uint8_t* out) {
  const int W = g.outW, H = g.outH;
  if (W != plan.outW || H != plan.outH)
    throw std::invalid_argument("the transforms produce a " + std::to_string(W) + "x" + std::to_string(H) +
                                " image but the batch is " + std::to_string(plan.outW) + "x" +
                                std::to_string(plan.outH) + ": end them with a fixed-size crop");
  // Part of the window that lies on the grid (the rest is CenterCrop's zero padding).
  const int x0 = std::max(0, g.outX), y0 = std::max(0, g.outY);
  const int x1 = std::min(g.gridW, g.outX + W), y1 = std::min(g.gridH, g.outY + H);
  const bool padded = x0 != g.outX || y0 != g.outY || x1 != g.outX + W || y1 != g.outY + H;
  if (padded) win.assign(size_t(W) * H * 3, 0);
  else win.resize(size_t(W) * H * 3);
  if (x0 < x1 && y0 < y1) {
    uint8_t* dst = win.data() + (size_t(y0 - g.outY) * W + size_t(x0 - g.outX)) * 3;
    if (g.hasBox) {
      resampleBox(src, srcW, g.cropX, g.cropY, g.cropW, g.cropH, g.boxX0, g.boxY0, g.boxX1, g.boxY1, g.gridW, g.gridH,
                  x0, x1, y0, y1, dst, size_t(W) * 3);
    } else if (g.resampled()) {
      resampleWindow(src, srcW, srcH, g.cropX, g.cropY, g.cropW, g.cropH, g.gridW, g.gridH, x0, x1, y0, y1, dst,
                     size_t(W) * 3);
    } else {
      for (int y = y0; y < y1; y++)
        std::memcpy(dst + size_t(y - y0) * W * 3, src + (size_t(g.cropY + y) * srcW + g.cropX + x0) * 3,
                    size_t(x1 - x0) * 3);
    }
  }
  const size_t plane = size_t(W) * H;
  if (plan.uint8Out) {
    for (int c = 0; c < 3; c++) {
      uint8_t* o = out + c * plane;
      for (int y = 0; y < H; y++) {
        const uint8_t* row = win.data() + size_t(y) * W * 3 + c;
        uint8_t* orow = o + size_t(y) * W;
        if (g.flip)
          for (int x = 0; x < W; x++) orow[x] = row[size_t(W - 1 - x) * 3];
        else
          for (int x = 0; x < W; x++) orow[x] = row[size_t(x) * 3];
      }
    }
    return;
  }
  // ToTensor (x / 255) then Normalize, in float32 like torch, via a table.
  float lut[3][256];
  float mean[3] = {0, 0, 0}, stdv[3] = {1, 1, 1};
  for (const Op& op : plan.ops)
    if (op.kind == Op::Normalize)
      for (int c = 0; c < 3; c++) {
        mean[c] = op.mean[c];
        stdv[c] = op.std[c];
      }
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) lut[c][v] = (float(v) / 255.0f - mean[c]) / stdv[c];
  float* o0 = reinterpret_cast<float*>(out);
  float* o1 = o0 + plane;
  float* o2 = o1 + plane;
  // One pass over the window writes the three planes.
  for (int y = 0; y < H; y++) {
    const uint8_t* row = win.data() + size_t(y) * W * 3;
    const size_t base = size_t(y) * W;
    if (g.flip) {
      for (int x = 0, sx = W - 1; x < W; x++, sx--) {
        const uint8_t* p = row + size_t(sx) * 3;
        o0[base + x] = lut[0][p[0]];
        o1[base + x] = lut[1][p[1]];
        o2[base + x] = lut[2][p[2]];
      }
    } else {
      for (int x = 0; x < W; x++) {
        const uint8_t* p = row + size_t(x) * 3;
        o0[base + x] = lut[0][p[0]];
        o1[base + x] = lut[1][p[1]];
        o2[base + x] = lut[2][p[2]];
      }
    }
  }
}

}  // namespace

void trimImageScratch() {
  if (win.capacity() > kKeepScratchBytes) std::vector<uint8_t>().swap(win);
  if (decoded.pixels.capacity() > kKeepScratchBytes) std::vector<uint8_t>().swap(decoded.pixels);
}

void processRgb(const Plan& plan, const uint8_t* rgb, int width, int height, uint64_t seed, uint8_t* out) {
  SampleRng rng(seed);
  Geometry g = planGeometry(plan, width, height, rng);
  render(plan, g, rgb, width, height, out);
}

namespace {

// The smallest n/8 that keeps the crop at least as large as its target:
// libjpeg-turbo then does most of the downscale inside the IDCT.
int dctScale(const Plan& plan, const Geometry& g) {
  if (!plan.dctScaling || !g.resampled()) return 8;
  // Only 1/8, 2/8 and 4/8: libjpeg-turbo has SIMD IDCTs for those, while
  // 3/8, 5/8, 6/8, 7/8 (and the 12x12, 14x14 chroma IDCTs they bring) are
  // scalar C and measured slower than a full-size SIMD decode.
  for (int n = 1; n < 8; n *= 2)
    if (double(g.cropW) * n / 8 >= g.gridW && double(g.cropH) * n / 8 >= g.gridH) return n;
  return 8;
}

// Moves g onto an image decoded at scale num/8 (scaled size sw x sh) whose
// pixel (0, 0) is the scaled image's (ox, oy).
void mapGeometry(Geometry& g, int w, int h, int num, int sw, int sh, int ox, int oy, int imgW, int imgH) {
  if (num != 8) {
    // A fractional box, clipped to the whole pixels it touches, so the
    // sampling grid does not shift.
    const double sx = double(sw) / w, sy = double(sh) / h;
    g.hasBox = true;
    g.boxX0 = g.cropX * sx - ox;
    g.boxY0 = g.cropY * sy - oy;
    g.boxX1 = (g.cropX + g.cropW) * sx - ox;
    g.boxY1 = (g.cropY + g.cropH) * sy - oy;
    int x0 = std::max(0, int(std::floor(g.boxX0))), y0 = std::max(0, int(std::floor(g.boxY0)));
    int x1 = std::min(imgW, int(std::ceil(g.boxX1))), y1 = std::min(imgH, int(std::ceil(g.boxY1)));
    g.cropX = x0;
    g.cropY = y0;
    g.cropW = std::max(1, x1 - x0);
    g.cropH = std::max(1, y1 - y0);
  } else {
    g.cropX -= ox;
    g.cropY -= oy;
  }
}

}  // namespace

void processJpeg(const Plan& plan, const uint8_t* data, size_t size, uint64_t seed, uint8_t* out) {
  RgbImage& img = decoded;
#if defined(TORCHLINE_LIBJPEG)
  Geometry g;
  int w = 0, h = 0, num = 8, ox = 0, oy = 0;
  decodeJpegRegion(
      data, size, plan.maxPixels, plan.maxDecoderBytes,
      [&](int iw, int ih, RegionRequest& r) {
        w = iw;
        h = ih;
        SampleRng rng(seed);
        g = planGeometry(plan, w, h, rng);
        num = dctScale(plan, g);
        r.num = num;
        const int sw = int((int64_t(w) * num + 7) / 8), sh = int((int64_t(h) * num + 7) / 8);
        if (g.resampled() || num != 8) {
          const double sx = double(sw) / w, sy = double(sh) / h;
          r.x0 = int(std::floor(g.cropX * sx));
          r.y0 = int(std::floor(g.cropY * sy));
          r.x1 = int(std::ceil((g.cropX + g.cropW) * sx));
          r.y1 = int(std::ceil((g.cropY + g.cropH) * sy));
        } else {
          // No resize: the output window itself (CenterCrop alone).
          r.x0 = std::max(0, g.cropX + g.outX);
          r.y0 = std::max(0, g.cropY + g.outY);
          r.x1 = std::min(w, g.cropX + g.outX + g.outW);
          r.y1 = std::min(h, g.cropY + g.outY + g.outH);
        }
      },
      img, ox, oy);
  const int sw = int((int64_t(w) * num + 7) / 8), sh = int((int64_t(h) * num + 7) / 8);
  mapGeometry(g, w, h, num, sw, sh, ox, oy, img.width, img.height);
  render(plan, g, img.pixels.data(), img.width, img.height, out);
#elif defined(TORCHLINE_TURBOJPEG)
  tjhandle th = decoder();
  int w = 0, h = 0, subsamp = 0, cs = 0;
  if (tjDecompressHeader3(th, data, (unsigned long)size, &w, &h, &subsamp, &cs) != 0)
    throw ImageError(std::string("bad JPEG header: ") + tjGetErrorStr2(th));
  checkPixels(w, h, plan.maxPixels);
  SampleRng rng(seed);
  Geometry g = planGeometry(plan, w, h, rng);
  int num = dctScale(plan, g);
  tjDecode(data, size, num, img, plan.maxPixels, plan.maxDecoderBytes);
  mapGeometry(g, w, h, num, img.width, img.height, 0, 0, img.width, img.height);
  render(plan, g, img.pixels.data(), img.width, img.height, out);
#else
  (void)plan, (void)data, (void)size, (void)seed, (void)out;
  throw ImageError("built without libjpeg-turbo");
#endif
}

}  // namespace tl::data
