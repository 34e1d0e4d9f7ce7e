// Rows of Spark's image source (ImageSchema): pixels already decoded, stored
// row-major in OpenCV's channel order (BGR, BGRA) with an OpenCV type code.
// They join the loader's pipeline as RGB, so the same transforms give the
// same output as decoding the original file would for a lossless source.
#include <string>
#include <vector>

#include "image.h"

namespace tl::data {

int ocvChannels(int mode) {
  switch (mode) {
    case 0:  // CV_8UC1
      return 1;
    case 16:  // CV_8UC3
      return 3;
    case 24:  // CV_8UC4
      return 4;
    default:
      return 0;
  }
}

void ocvToRgb(const uint8_t* src, int width, int height, int mode, uint8_t* rgb) {
  const size_t n = size_t(width) * size_t(height);
  switch (ocvChannels(mode)) {
    case 1:
      for (size_t i = 0; i < n; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = src[i];
      break;
    case 3:
      for (size_t i = 0; i < n; i++) {
        rgb[3 * i] = src[3 * i + 2];
        rgb[3 * i + 1] = src[3 * i + 1];
        rgb[3 * i + 2] = src[3 * i];
      }
      break;
    case 4:
      // Alpha is dropped, not composited: what PIL's convert('RGB') and the
      // sharp path (removeAlpha) do with the original file.
      for (size_t i = 0; i < n; i++) {
        rgb[3 * i] = src[4 * i + 2];
        rgb[3 * i + 1] = src[4 * i + 1];
        rgb[3 * i + 2] = src[4 * i];
      }
      break;
    default:
      throw ImageError("unsupported OpenCV mode " + std::to_string(mode));
  }
}

void processOcv(const Plan& plan, const uint8_t* data, size_t size, int width, int height, int mode, uint64_t seed,
                uint8_t* out) {
  if (mode == -1 || width <= 0 || height <= 0)
    throw ImageError("Spark could not decode this image (an invalid image row: height " + std::to_string(height) +
                     ", width " + std::to_string(width) + ", mode " + std::to_string(mode) + ")");
  const int c = ocvChannels(mode);
  if (c == 0)
    throw ImageError("unsupported OpenCV mode " + std::to_string(mode) +
                     " (8-bit CV_8UC1 = 0, CV_8UC3 = 16 and CV_8UC4 = 24 are read)");
  if (plan.maxPixels > 0 && int64_t(width) * height > plan.maxPixels)
    throw ImageError("image of " + std::to_string(int64_t(width) * height) + " pixels, over maxPixels " +
                     std::to_string(plan.maxPixels) + " (decompression bomb guard)");
  const size_t need = size_t(width) * size_t(height) * size_t(c);
  if (size != need)
    throw ImageError("pixel data is " + std::to_string(size) + " bytes but " + std::to_string(width) + "x" +
                     std::to_string(height) + "x" + std::to_string(c) + " needs " + std::to_string(need));
  std::vector<uint8_t> rgb(size_t(width) * size_t(height) * 3);
  ocvToRgb(data, width, height, mode, rgb.data());
  processRgb(plan, rgb.data(), width, height, seed, out);
}

}  // namespace tl::data
