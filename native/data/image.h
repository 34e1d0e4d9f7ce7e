// The per-image work of the data loader, free of torch and of N-API so it
// compiles in seconds (*.plain.cc): JPEG sniffing and decoding with
// libjpeg-turbo, torchvision's transform geometry, a resampler that matches
// PIL's antialiased bilinear resize, and packing into one NCHW batch slot.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tl::data {

constexpr int64_t kDefaultMaxDecoderBytes = int64_t(256) << 20;
// Per-thread scratch buffers above this size are freed after each image, so
// one huge image does not keep its peak memory in every worker for good.
constexpr size_t kKeepScratchBytes = size_t(16) << 20;

// A problem with one image (bad file, unsupported content): the loader's
// onError policy decides whether it is skipped or raised.
struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One transform step, as described by lib/data/transforms.ts.
struct Op {
  enum Kind { RandomResizedCrop, Resize, CenterCrop, HorizontalFlip, Normalize } kind;
  int h = 0, w = 0;                // target size; Resize with w == 0 means "shorter side = h"
  int maxSize = 0;                 // Resize(int, max_size)
  double scale[2] = {0.08, 1.0};   // RandomResizedCrop
  double ratio[2] = {3.0 / 4.0, 4.0 / 3.0};
  double p = 0.5;                  // RandomHorizontalFlip
  float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
};

struct Plan {
  std::vector<Op> ops;
  int outH = 0, outW = 0;  // every sample of a batch must come out this size
  bool pinMemory = false;  // batch buffers in page-locked memory (when a GPU is usable)
  bool uint8Out = false;   // NCHW uint8 (normalise later, e.g. on the GPU) instead of float32
  bool dctScaling = true;  // let libjpeg-turbo decode at n/8 scale when the crop allows
  int64_t maxPixels = 0;   // 0: no limit
  // libjpeg's working memory for one image (the whole-image coefficient
  // buffer of progressive and multi-scan JPEGs): larger files are refused.
  int64_t maxDecoderBytes = kDefaultMaxDecoderBytes;
  bool exifTranspose = true;  // JPEGs with an EXIF orientation go to sharp, which applies it
  size_t sampleBytes() const { return size_t(3) * outH * outW * (uint8Out ? 1 : 4); }
};

// An 8-bit RGB image in memory (interleaved, row-major).
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};

// What the fast path thinks of an encoded file.
struct Sniff {
  bool isJpeg = false;
  bool fastPath = false;  // libjpeg-turbo decodes it with the same result sharp would give
  std::string reason;     // why not, for the logs
  int width = 0, height = 0;
  bool hasEnd = false;    // an EOI marker follows the first scan (else: truncated)
  bool cmyk = false;      // 4 components (Adobe CMYK or YCCK): converted as PIL does
  int orientation = 0;    // EXIF orientation, 0 when absent
  // Bytes of the whole-image coefficient buffer libjpeg allocates (and
  // zeroes) for a progressive or multi-scan file; 0 for single-scan files.
  int64_t coefBytes = 0;
};
// exifTranspose: whether an EXIF orientation > 1 sends the file to sharp.
Sniff sniffJpeg(const uint8_t* data, size_t size, bool exifTranspose = true);

// Throws ImageError when decoding needs more working memory than the limit.
void checkDecoderMemory(int64_t coefBytes, int width, int height, int64_t maxDecoderBytes);

// PIL's CMYK -> RGB for a JPEG's CMYK samples (PIL reads them as Adobe
// inverted CMYK, then Convert.c cmyk2rgb): n pixels, 4 bytes in, 3 out.
void cmykToRgb(const uint8_t* cmyk, uint8_t* rgb, size_t n);

// Frees this thread's scratch buffers that grew past kKeepScratchBytes.
void trimImageScratch();
void trimResampleScratch();

// Deterministic per-sample random numbers, independent of thread scheduling.
class SampleRng {
 public:
  explicit SampleRng(uint64_t seed) : s_(seed) {}
  uint64_t next();
  double uniform(double lo, double hi);  // [lo, hi)
  int64_t randint(int64_t lo, int64_t hi);  // [lo, hi)
 private:
  uint64_t s_;
};
uint64_t sampleSeed(uint64_t seed, uint64_t epoch, uint64_t index);

// Where the output pixels of one sample come from, in source coordinates.
struct Geometry {
  // The crop of the source that is resampled (integer, inside the source).
  int cropX = 0, cropY = 0, cropW = 0, cropH = 0;
  // The size the crop is resampled to (== crop size: no resampling).
  int gridW = 0, gridH = 0;
  // The window of the grid that becomes the output (may extend past the
  // grid: CenterCrop pads with zeros, as torchvision does).
  int outX = 0, outY = 0, outW = 0, outH = 0;
  bool flip = false;
  // After DCT scaling: the crop's exact (fractional) box in the scaled image.
  bool hasBox = false;
  double boxX0 = 0, boxY0 = 0, boxX1 = 0, boxY1 = 0;
  bool resampled() const { return gridW != cropW || gridH != cropH; }
};
Geometry planGeometry(const Plan& plan, int srcW, int srcH, SampleRng& rng);

// Decodes `data` (a JPEG the sniffer accepted) and runs the plan into `out`
// (one sample slot of the batch). Throws ImageError.
void processJpeg(const Plan& plan, const uint8_t* data, size_t size, uint64_t seed, uint8_t* out);
// The same for raw RGB pixels (what sharp produced for every other file).
void processRgb(const Plan& plan, const uint8_t* rgb, int width, int height, uint64_t seed, uint8_t* out);
// The same for a row of Spark's image source: `mode` is the OpenCV type
// (CV_8UC1/3/4), pixels row-major BGR(A); converted to RGB first (spark_image.plain.cc).
void processOcv(const Plan& plan, const uint8_t* data, size_t size, int width, int height, int mode, uint64_t seed,
                uint8_t* out);
int ocvChannels(int mode);
// Decode only, at scale scaleNum/8 (the benchmark's upper bound and tests).
// scaleNum must be one of libjpeg-turbo's factors (1..16 eighths).
bool validScaleNum(int scaleNum);
RgbImage decodeJpeg(const uint8_t* data, size_t size, int scaleNum = 8, int64_t maxPixels = 0,
                    int64_t maxDecoderBytes = kDefaultMaxDecoderBytes);

// PIL's Image.resize(BILINEAR) of the crop (x, y, w, h) of src to outW x outH,
// rows [rowFrom, rowTo) of the result only; bit-exact with Pillow's 8-bit path.
void resampleBilinear(const uint8_t* src, int srcW, int srcH, int x, int y, int w, int h, int outW, int outH,
                      int rowFrom, int rowTo, uint8_t* dst);

// The window [colFrom, colTo) x [rowFrom, rowTo) of that resize, written to
// dst with rows dstStride bytes apart (CenterCrop after Resize needs no more).
void resampleWindow(const uint8_t* src, int srcW, int srcH, int cx, int cy, int cw, int ch, int outW, int outH,
                    int colFrom, int colTo, int rowFrom, int rowTo, uint8_t* dst, size_t dstStride);

// General form: the clip region (cx, cy, cw, ch) bounds the taps, the
// fractional box [bx0, bx1) x [by0, by1) (source coordinates) is what maps
// onto the outW x outH grid (a crop mapped onto a DCT-scaled image).
void resampleBox(const uint8_t* src, int srcW, int cx, int cy, int cw, int ch, double bx0, double by0, double bx1,
                 double by1, int outW, int outH, int colFrom, int colTo, int rowFrom, int rowTo, uint8_t* dst,
                 size_t dstStride);

#if defined(TORCHLINE_LIBJPEG)
struct RegionRequest {
  int num = 8;  // scale num/8
  int x0 = 0, y0 = 0, x1 = 1 << 30, y1 = 1 << 30;  // in the scaled image
};
void decodeJpegRegion(const uint8_t* data, size_t size, int64_t maxPixels, int64_t maxDecoderBytes,
                      const std::function<void(int w, int h, RegionRequest& r)>& onHeader, RgbImage& img, int& ox,
                      int& oy);
#endif

// Reads a whole file; throws ImageError with the OS reason.
std::vector<uint8_t> readFile(const std::string& path);

}  // namespace tl::data
