// Region decoding with libjpeg-turbo's libjpeg API: the TurboJPEG API of
// libjpeg-turbo 2.1 (Debian 12) can scale in the IDCT but cannot crop, while
// jpeg_crop_scanline / jpeg_skip_scanlines decode only the rows and the
// iMCU columns a RandomResizedCrop needs, and stop after its last row.
#include "image.h"

#if defined(TORCHLINE_LIBJPEG)
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>

namespace tl::data {

namespace {

struct ErrorMgr {
  jpeg_error_mgr pub;
  jmp_buf jb;
  bool truncated;
  char message[JMSG_LENGTH_MAX];
};

void onError(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorMgr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jb, 1);
}

void onMessage(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<ErrorMgr*>(cinfo->err);
  if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER)) {
    if (!e->truncated) (*cinfo->err->format_message)(cinfo, e->message);
    e->truncated = true;
  }
}

// The libjpeg calls, each behind its own setjmp (no C++ objects live across
// a longjmp). They return false with err->message set.
bool readHeader(jpeg_decompress_struct* c, ErrorMgr* err, const uint8_t* data, size_t size) {
  if (setjmp(err->jb)) return false;
  jpeg_mem_src(c, data, (unsigned long)size);
  jpeg_read_header(c, TRUE);
  return true;
}

bool start(jpeg_decompress_struct* c, ErrorMgr* err, int num) {
  if (setjmp(err->jb)) return false;
  // CMYK and YCCK files come out as CMYK samples; cmykToRgb does PIL's conversion.
  const bool cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
  c->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  c->scale_num = unsigned(num);
  c->scale_denom = 8;
  c->dct_method = JDCT_ISLOW;  // what PIL and tjDecompress2 use: same pixels
  c->do_fancy_upsampling = TRUE;
  jpeg_start_decompress(c);
  return true;
}

bool multipleScans(jpeg_decompress_struct* c, ErrorMgr* err, bool* out) {
  if (setjmp(err->jb)) return false;
  *out = jpeg_has_multiple_scans(c);
  return true;
}

bool cropAndSkip(jpeg_decompress_struct* c, ErrorMgr* err, JDIMENSION* xoff, JDIMENSION* width, JDIMENSION skip) {
  if (setjmp(err->jb)) return false;
  if (*xoff != 0 || *width != c->output_width) jpeg_crop_scanline(c, xoff, width);
  if (skip > 0) jpeg_skip_scanlines(c, skip);
  return true;
}

// `cmykRow`: a scratch row of 4 x width bytes when the output is CMYK.
bool readRows(jpeg_decompress_struct* c, ErrorMgr* err, uint8_t* out, size_t stride, int rows, uint8_t* cmykRow,
              size_t width) {
  if (setjmp(err->jb)) return false;
  for (int r = 0; r < rows;) {
    JSAMPROW row = cmykRow ? cmykRow : out + size_t(r) * stride;
    int got = int(jpeg_read_scanlines(c, &row, 1));
    if (cmykRow && got) cmykToRgb(cmykRow, out + size_t(r) * stride, width);
    r += got;
  }
  return true;
}

}  // namespace

// Decodes the part [x0, x1) x [y0, y1) of the image scaled by num/8. `img`
// receives a region that contains it; (ox, oy) is where img's first pixel
// lies in the scaled image. `onHeader(w, h)` runs after the header, before
// decoding, and returns num, x0, y0, x1, y1 (in scaled coordinates).
void decodeJpegRegion(const uint8_t* data, size_t size, int64_t maxPixels, int64_t maxDecoderBytes,
                      const std::function<void(int w, int h, RegionRequest& r)>& onHeader, RgbImage& img, int& ox,
                      int& oy) {
  jpeg_decompress_struct c;
  ErrorMgr err;
  std::memset(&err, 0, sizeof err);
  c.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = onError;
  err.pub.emit_message = onMessage;
  jpeg_create_decompress(&c);
  // A backstop for the check below: libjpeg refuses (it has no backing
  // store) rather than allocating past the limit, small tables included.
  if (maxDecoderBytes > 0) c.mem->max_memory_to_use = long(maxDecoderBytes + (int64_t(32) << 20));
  struct Destroy {
    jpeg_decompress_struct* c;
    ~Destroy() { jpeg_destroy_decompress(c); }
  } destroy{&c};
  if (!readHeader(&c, &err, data, size)) throw ImageError(std::string("corrupt JPEG: ") + err.message);
  const int64_t w = c.image_width, h = c.image_height;
  if (maxPixels > 0 && w * h > maxPixels)
    throw ImageError("image is " + std::to_string(w) + "x" + std::to_string(h) + " = " + std::to_string(w * h) +
                     " pixels, over maxPixels " + std::to_string(maxPixels) + " (decompression bomb guard)");
  bool multi = false;
  if (!multipleScans(&c, &err, &multi)) throw ImageError(std::string("corrupt JPEG: ") + err.message);
  if (multi) {
    // The whole-image coefficient buffer (zeroed before the first scan).
    int64_t coef = 0;
    for (int i = 0; i < c.num_components; i++) {
      const jpeg_component_info& ci = c.comp_info[i];
      const int64_t bw = (int64_t(ci.width_in_blocks) + ci.h_samp_factor - 1) / ci.h_samp_factor * ci.h_samp_factor;
      const int64_t bh = (int64_t(ci.height_in_blocks) + ci.v_samp_factor - 1) / ci.v_samp_factor * ci.v_samp_factor;
      coef += bw * bh * int64_t(sizeof(JBLOCK));
    }
    checkDecoderMemory(coef, int(w), int(h), maxDecoderBytes);
  }
  RegionRequest req;
  onHeader(int(w), int(h), req);
  if (!start(&c, &err, req.num)) throw ImageError(std::string("corrupt JPEG: ") + err.message);
  const int sw = int(c.output_width), sh = int(c.output_height);
  // A margin: at the edges of a cropped or skipped region the fancy
  // upsampler lacks its neighbours (one chroma sample = 2 pixels for 4:2:0),
  // so those pixels differ from a full decode; past the margin the requested
  // pixels are exact (checked against PIL in test/data/transforms.test.ts).
  const int margin = 4;
  int x0 = std::max(0, req.x0 - margin), y0 = std::max(0, req.y0 - margin);
  int x1 = std::min(sw, req.x1 + margin), y1 = std::min(sh, req.y1 + margin);
  if (x1 <= x0 || y1 <= y0) {
    x0 = y0 = 0;
    x1 = sw;
    y1 = sh;
  }
  JDIMENSION xoff = JDIMENSION(x0), width = JDIMENSION(x1 - x0);
  if (!cropAndSkip(&c, &err, &xoff, &width, JDIMENSION(y0))) throw ImageError(std::string("corrupt JPEG: ") + err.message);
  img.width = int(width);
  img.height = y1 - y0;
  img.pixels.resize(size_t(img.width) * img.height * 3);
  std::vector<uint8_t> cmykRow(c.out_color_space == JCS_CMYK ? size_t(img.width) * 4 : 0);
  if (!readRows(&c, &err, img.pixels.data(), size_t(img.width) * 3, img.height,
                cmykRow.empty() ? nullptr : cmykRow.data(), size_t(img.width)))
    throw ImageError(std::string("corrupt JPEG: ") + err.message);
  if (err.truncated) throw ImageError(std::string("truncated JPEG: ") + err.message);
  // Stopping before the last row is fine: the source is in memory.
  jpeg_abort_decompress(&c);
  ox = int(xoff);
  oy = y0;
}

}  // namespace tl::data
#endif
