// libFuzzer target for the native image path (native/data/*.plain.cc): the
// JPEG sniffer, the decoder (TurboJPEG and libjpeg region decoding, DCT
// scaling, CMYK), the transform geometry, the resampler and Spark image rows.
// These take bytes straight from a bucket, so under AddressSanitizer and
// UBSan no input may read or write out of bounds, overflow, or throw anything
// but ImageError. Built and run by scripts/libfuzzer.sh.
#include <cstdint>
#include <vector>

#include "../../native/data/image.h"

using namespace tl::data;

namespace {

// Takes the leading bytes of the input as the choices a caller makes.
struct Choices {
  const uint8_t* p;
  size_t n;
  uint8_t take() {
    if (!n) return 0;
    n--;
    return *p++;
  }
};

Plan makePlan(Choices& c) {
  Plan plan;
  plan.outH = 8 + c.take() % 57;
  plan.outW = c.take() & 1 ? plan.outH : 8 + c.take() % 57;
  plan.uint8Out = c.take() & 1;
  plan.dctScaling = c.take() & 1;
  plan.exifTranspose = c.take() & 1;
  // Bounded so one input cannot take more than the fuzzer's memory limit.
  plan.maxPixels = int64_t(4) << 20;
  plan.maxDecoderBytes = int64_t(64) << 20;
  Op op;
  switch (c.take() % 3) {
    case 0:
      op.kind = Op::RandomResizedCrop;
      op.h = plan.outH;
      op.w = plan.outW;
      plan.ops.push_back(op);
      break;
    case 1:
      op.kind = Op::Resize;
      op.h = plan.outH + c.take() % 32;
      op.w = 0;
      plan.ops.push_back(op);
      op = Op{};
      op.kind = Op::CenterCrop;
      op.h = plan.outH;
      op.w = plan.outW;
      plan.ops.push_back(op);
      break;
    default:
      op.kind = Op::Resize;
      op.h = plan.outH;
      op.w = plan.outW;
      plan.ops.push_back(op);
  }
  if (c.take() & 1) {
    Op flip;
    flip.kind = Op::HorizontalFlip;
    plan.ops.push_back(flip);
  }
  Op norm;
  norm.kind = Op::Normalize;
  plan.ops.push_back(norm);
  return plan;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Choices c{data, size < 16 ? size : 16};
  const uint8_t target = c.take() % 4;
  Plan plan = makePlan(c);
  const uint64_t seed = c.take();
  // The choices are the first 16 bytes (or all of a shorter input); the rest is the file.
  const uint8_t* body = size > 16 ? data + 16 : data + size;
  const size_t bodySize = size > 16 ? size - 16 : 0;
  std::vector<uint8_t> out(plan.sampleBytes());
  try {
    switch (target) {
      case 0:
      case 1: {
        Sniff s = sniffJpeg(body, bodySize, plan.exifTranspose);
        if (s.isJpeg && s.fastPath) processJpeg(plan, body, bodySize, seed, out.data());
        break;
      }
      case 2: {
        int scale = 1 + seed % 16;
        if (validScaleNum(scale)) decodeJpeg(body, bodySize, scale, plan.maxPixels, plan.maxDecoderBytes);
        break;
      }
      default: {
        // A Spark image row: the size fields come from the input too.
        if (bodySize < 4) break;
        int width = 1 + body[0] % 64, height = 1 + body[1] % 64;
        static const int modes[] = {0, 16, 24, -1, 7};
        int mode = modes[body[2] % 5];
        processOcv(plan, body + 4, bodySize - 4, width, height, mode, seed, out.data());
      }
    }
  } catch (const ImageError&) {
    // The documented outcome for bad input.
  }
  trimImageScratch();
  trimResampleScratch();
  return 0;
}
