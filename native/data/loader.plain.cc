// The data loader's native side: a thread pool that decodes and transforms
// the samples of a batch straight into one NCHW buffer, with no JS per image.
// A batch run settles a Promise through a thread-safe function, like
// native/executor.cc. No torch here (fast to compile); batch_tensor.cc wraps
// the finished buffer into a tensor.
#include "loader.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <algorithm>

namespace tl::data {

namespace {

std::string str(Napi::Value v) { return v.As<Napi::String>().Utf8Value(); }

[[noreturn]] void typeError(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

double num(Napi::Env env, Napi::Object o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) typeError(env, std::string("transform field ") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

void pair(Napi::Env env, Napi::Object o, const char* key, double out[2]) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return;
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2)
    typeError(env, std::string("transform field ") + key + " must be [lo, hi]");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 2; i++) out[i] = a.Get(i).As<Napi::Number>().DoubleValue();
}

void triple(Napi::Env env, Napi::Object o, const char* key, float out[3]) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3)
    typeError(env, std::string("Normalize ") + key + " must have 3 numbers (RGB)");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 3; i++) out[i] = float(a.Get(i).As<Napi::Number>().DoubleValue());
}

// size: n or [h, w]
void size(Napi::Env env, Napi::Object o, int& h, int& w, bool allowInt) {
  Napi::Value v = o.Get("size");
  if (v.IsNumber()) {
    h = v.As<Napi::Number>().Int32Value();
    w = allowInt ? 0 : h;
  } else if (v.IsArray() && v.As<Napi::Array>().Length() == 2) {
    h = v.As<Napi::Array>().Get(0u).As<Napi::Number>().Int32Value();
    w = v.As<Napi::Array>().Get(1u).As<Napi::Number>().Int32Value();
  } else {
    typeError(env, "transform size must be a number or [h, w]");
  }
  if (h <= 0 || w < 0 || (!allowInt && w == 0)) typeError(env, "transform size must be positive");
}

Plan parsePlan(Napi::Env env, Napi::Object spec) {
  Plan plan;
  Napi::Value opsV = spec.Get("ops");
  if (!opsV.IsArray()) typeError(env, "spec.ops must be an array");
  auto ops = opsV.As<Napi::Array>();
  for (uint32_t i = 0; i < ops.Length(); i++) {
    Napi::Object o = ops.Get(i).As<Napi::Object>();
    std::string kind = str(o.Get("op"));
    Op op;
    if (kind == "RandomResizedCrop") {
      op.kind = Op::RandomResizedCrop;
      size(env, o, op.h, op.w, false);
      pair(env, o, "scale", op.scale);
      pair(env, o, "ratio", op.ratio);
    } else if (kind == "Resize") {
      op.kind = Op::Resize;
      size(env, o, op.h, op.w, true);
      op.maxSize = int(num(env, o, "maxSize", 0));
    } else if (kind == "CenterCrop") {
      op.kind = Op::CenterCrop;
      size(env, o, op.h, op.w, false);
    } else if (kind == "RandomHorizontalFlip") {
      op.kind = Op::HorizontalFlip;
      op.p = num(env, o, "p", 0.5);
    } else if (kind == "Normalize") {
      op.kind = Op::Normalize;
      triple(env, o, "mean", op.mean);
      triple(env, o, "std", op.std);
    } else {
      typeError(env, "unknown transform op " + kind);
    }
    plan.ops.push_back(op);
  }
  plan.outH = int(num(env, spec, "outH", 0));
  plan.outW = int(num(env, spec, "outW", 0));
  if (plan.outH <= 0 || plan.outW <= 0) typeError(env, "spec.outH/outW must be positive");
  plan.uint8Out = spec.Get("uint8").ToBoolean().Value();
  plan.pinMemory = spec.Get("pinMemory").ToBoolean().Value();
  Napi::Value dct = spec.Get("dctScaling");
  plan.dctScaling = dct.IsUndefined() ? true : dct.ToBoolean().Value();
  plan.maxPixels = int64_t(num(env, spec, "maxPixels", 0));
  const double maxDecoder = num(env, spec, "maxDecoderBytes", double(kDefaultMaxDecoderBytes));
  if (!(maxDecoder >= 0)) typeError(env, "spec.maxDecoderBytes must be >= 0");
  plan.maxDecoderBytes = int64_t(maxDecoder);
  Napi::Value exif = spec.Get("exifTranspose");
  plan.exifTranspose = exif.IsUndefined() ? true : exif.ToBoolean().Value();
  return plan;
}

}  // namespace

// ------------------------------------------------------------------ batch --

namespace {
struct FreeBuffer {
  void* p;
  size_t bytes;
  bool pinned;
};
std::mutex bufferMu;
std::vector<FreeBuffer> freeBuffers;
PinnedHooks pinnedHooks;
constexpr size_t kKeepBuffers = 4;

void freeBuffer(const FreeBuffer& b) {
  if (b.pinned) pinnedHooks.release(b.p);
  else std::free(b.p);
}
}  // namespace

void setPinnedHooks(PinnedHooks hooks) {
  std::lock_guard<std::mutex> lock(bufferMu);
  pinnedHooks = hooks;
}

uint8_t* acquireBatchBuffer(size_t bytes, bool pinned) {
  {
    std::lock_guard<std::mutex> lock(bufferMu);
    for (size_t i = 0; i < freeBuffers.size(); i++)
      if (freeBuffers[i].bytes == bytes && freeBuffers[i].pinned == pinned) {
        void* p = freeBuffers[i].p;
        freeBuffers.erase(freeBuffers.begin() + long(i));
        return static_cast<uint8_t*>(p);
      }
  }
  if (pinned) {
    void* p = pinnedHooks.allocate ? pinnedHooks.allocate(bytes) : nullptr;
    if (p) return static_cast<uint8_t*>(p);
    throw std::runtime_error("no pinned memory");  // callers check pinnedAvailable() first
  }
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}

void releaseBatchBuffer(void* p, size_t bytes, bool pinned) {
  if (!p) return;
  FreeBuffer drop{p, bytes, pinned};
  {
    std::lock_guard<std::mutex> lock(bufferMu);
    if (freeBuffers.size() < kKeepBuffers) {
      freeBuffers.push_back(drop);
      return;
    }
    // Full: drop the oldest (it may be of a size no longer used).
    std::swap(drop, freeBuffers.front());
    std::rotate(freeBuffers.begin(), freeBuffers.begin() + 1, freeBuffers.end());
  }
  freeBuffer(drop);
}

namespace {
// The ImageBatch constructor of each environment (main thread, worker
// threads): a reference must not cross environments.
std::mutex ctorMu;
std::unordered_map<napi_env, Napi::FunctionReference*> ctors;
}  // namespace

Napi::Object ImageBatch::NewInstance(Napi::Env env) {
  Napi::FunctionReference* ref;
  {
    std::lock_guard<std::mutex> lock(ctorMu);
    ref = ctors.at(env);
  }
  return ref->New({});
}

void ImageBatch::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "ImageBatch",
                                 {InstanceMethod<&ImageBatch::ToTensor>("toTensor"),
                                  InstanceMethod<&ImageBatch::Dispose>("dispose")});
  auto* ref = new Napi::FunctionReference(Napi::Persistent(f));
  {
    std::lock_guard<std::mutex> lock(ctorMu);
    ctors[env] = ref;
  }
  napi_env raw = env;
  env.AddCleanupHook([raw, ref] {
    std::lock_guard<std::mutex> lock(ctorMu);
    ctors.erase(raw);
    delete ref;
  });
  exports.Set("ImageBatch", f);
}

ImageBatch::ImageBatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ImageBatch>(info) {}

ImageBatch::~ImageBatch() { releaseBatchBuffer(data_, bytes_, pinned_); }

void ImageBatch::allocate(int n, const Plan& plan) {
  n_ = n;
  h_ = plan.outH;
  w_ = plan.outW;
  uint8_ = plan.uint8Out;
  sampleBytes_ = plan.sampleBytes();
  bytes_ = std::max<size_t>(64, (sampleBytes_ * n + 63) / 64 * 64);
  pinned_ = false;
  if (plan.pinMemory) {
    // Pinned only where a GPU is usable; elsewhere pinMemory is a no-op, as in torch.
    try {
      data_ = acquireBatchBuffer(bytes_, true);
      pinned_ = true;
      return;
    } catch (const std::runtime_error&) {
    }
  }
  data_ = acquireBatchBuffer(bytes_, false);
}

Napi::Value ImageBatch::ToTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (busy_ > 0) throw Napi::Error::New(env, "ImageBatch.toTensor: a decode is still running into this batch");
  if (!data_) throw Napi::Error::New(env, "ImageBatch.toTensor: already taken");
  // keep: the slots to keep, in order (skipped samples are dropped).
  int kept = n_;
  if (info.Length() > 0 && info[0].IsArray()) {
    auto keep = info[0].As<Napi::Array>();
    kept = int(keep.Length());
    for (int i = 0; i < kept; i++) {
      int slot = keep.Get(uint32_t(i)).As<Napi::Number>().Int32Value();
      if (slot < i || slot >= n_) throw Napi::RangeError::New(env, "ImageBatch.toTensor: keep must be increasing slots");
      if (slot != i) std::memmove(data_ + sampleBytes_ * i, data_ + sampleBytes_ * slot, sampleBytes_);
    }
  }
  uint8_t* data = data_;
  data_ = nullptr;
  return wrapBatchTensor(env, data, bytes_, kept, h_, w_, uint8_, pinned_);
}

Napi::Value ImageBatch::Dispose(const Napi::CallbackInfo& info) {
  if (busy_ == 0) {
    releaseBatchBuffer(data_, bytes_, pinned_);
    data_ = nullptr;
  }
  return info.Env().Undefined();
}

// ------------------------------------------------------------- pipeline --

namespace {

struct Item {
  enum Kind { None, Path, Bytes, Rgb, Ocv } kind = None;
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  int width = 0, height = 0, mode = 0;
  int slot = 0;
  uint64_t seed = 0;
  std::string status;  // "" ok, "decline:<why>", "error:<why>", "fatal:<why>"
};

struct BatchRun {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference batchRef;
  Napi::ObjectReference itemsRef;  // keeps the JS buffers alive
  Napi::ObjectReference pipelineRef;
  ImageBatch* batch = nullptr;
  std::vector<Item> items;
  std::atomic<int> remaining{0};
  napi_threadsafe_function tsfn = nullptr;
  explicit BatchRun(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void settle(napi_env rawEnv, napi_value, void*, void* data) {
  auto* run = static_cast<BatchRun*>(data);
  run->batch->busy_--;
  if (rawEnv == nullptr) {
    // The environment is being torn down: its references die with it.
    run->batchRef.SuppressDestruct();
    run->itemsRef.SuppressDestruct();
    run->pipelineRef.SuppressDestruct();
  } else {
    Napi::Env env(rawEnv);
    Napi::HandleScope scope(env);
    auto out = Napi::Array::New(env, run->items.size());
    for (size_t i = 0; i < run->items.size(); i++) out.Set(uint32_t(i), Napi::String::New(env, run->items[i].status));
    run->deferred.Resolve(out);
  }
  delete run;
}

void processItem(const Plan& plan, ImageBatch* batch, Item& it) {
  uint8_t* out = batch->slot(it.slot);
  try {
    if (it.kind == Item::Rgb) {
      processRgb(plan, it.data, it.width, it.height, it.seed, out);
      return;
    }
    if (it.kind == Item::Ocv) {
      processOcv(plan, it.data, it.size, it.width, it.height, it.mode, it.seed, out);
      return;
    }
    std::vector<uint8_t> file;
    const uint8_t* data = it.data;
    size_t size = it.size;
    if (it.kind == Item::Path) {
      file = readFile(it.path);
      data = file.data();
      size = file.size();
    }
    Sniff s = sniffJpeg(data, size, plan.exifTranspose);
    if (!s.fastPath) {
      it.status = "decline:" + s.reason;
      return;
    }
    if (!s.hasEnd) {
      // Decided here, not by how far the crop makes the decoder read.
      it.status = "error:truncated JPEG (no end-of-image marker)";
      return;
    }
    processJpeg(plan, data, size, it.seed, out);
  } catch (const ImageError& e) {
    it.status = std::string("error:") + e.what();
  } catch (const std::bad_alloc&) {
    it.status = "error:out of memory";
  } catch (const std::exception& e) {
    it.status = std::string("fatal:") + e.what();
  } catch (...) {
    it.status = "fatal:unknown error";
  }
}

// After each image: a worker keeps scratch buffers for the next one, but
// not the peak of one huge image.
void trimScratch() {
  trimImageScratch();
  trimResampleScratch();
}

}  // namespace

Napi::Object DataPipeline::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "DataPipeline",
                                 {InstanceMethod<&DataPipeline::NewBatch>("newBatch"),
                                  InstanceMethod<&DataPipeline::Run>("run"),
                                  InstanceMethod<&DataPipeline::NumWorkers>("numWorkers")});
  exports.Set("DataPipeline", f);
  return exports;
}

// new DataPipeline(spec, numWorkers)
DataPipeline::DataPipeline(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DataPipeline>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsNumber())
    typeError(env, "DataPipeline(spec, numWorkers)");
  plan_ = std::make_shared<Plan>(parsePlan(env, info[0].As<Napi::Object>()));
  int n = info[1].As<Napi::Number>().Int32Value();
  if (n < 1 || n > 256) throw Napi::RangeError::New(env, "numWorkers must be 1..256");
  try {
    pool_ = std::make_unique<WorkerPool>(n);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("DataPipeline: ") + e.what());
  }
}

DataPipeline::~DataPipeline() = default;

Napi::Value DataPipeline::NumWorkers(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), pool_->size());
}

Napi::Value DataPipeline::NewBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) typeError(env, "newBatch(n)");
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 0 || n > (1 << 20)) throw Napi::RangeError::New(env, "newBatch: bad batch size");
  Napi::Object obj = ImageBatch::NewInstance(env);
  ImageBatch::Unwrap(obj)->allocate(n, *plan_);
  return obj;
}

// run(batch, items, slots, seeds) -> Promise<string[]>
//   items[i]: path string | Uint8Array (encoded file) | { rgb: Uint8Array, width, height }
//             | { bgr: Uint8Array, width, height, mode } (a Spark image row: OpenCV mode, BGR(A) pixels)
//   slots: number[] (slot of each item), seeds: BigUint64Array (one per item)
Napi::Value DataPipeline::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsArray() || !info[2].IsArray() ||
      !info[3].IsTypedArray())
    typeError(env, "run(batch, items, slots, seeds)");
  Napi::Object batchObj = info[0].As<Napi::Object>();
  ImageBatch* batch = ImageBatch::Unwrap(batchObj);
  if (!batch || !batch->data()) throw Napi::Error::New(env, "run: the batch was already taken");
  auto items = info[1].As<Napi::Array>();
  auto slots = info[2].As<Napi::Array>();
  auto seedsArr = info[3].As<Napi::TypedArray>();
  if (seedsArr.TypedArrayType() != napi_biguint64_array) typeError(env, "run: seeds must be a BigUint64Array");
  auto seeds = seedsArr.As<Napi::TypedArrayOf<uint64_t>>();
  const uint32_t n = items.Length();
  if (slots.Length() != n || seeds.ElementLength() != n) typeError(env, "run: items, slots and seeds differ in length");

  auto* run = new BatchRun(env);
  run->batch = batch;
  run->items.resize(n);
  try {
    for (uint32_t i = 0; i < n; i++) {
      Item& it = run->items[i];
      it.slot = slots.Get(i).As<Napi::Number>().Int32Value();
      if (it.slot < 0 || it.slot >= batch->size()) throw Napi::RangeError::New(env, "run: slot out of range");
      it.seed = seeds[i];
      Napi::Value v = items.Get(i);
      if (v.IsString()) {
        it.kind = Item::Path;
        it.path = v.As<Napi::String>().Utf8Value();
      } else if (v.IsTypedArray()) {
        auto a = v.As<Napi::Uint8Array>();
        it.kind = Item::Bytes;
        it.data = a.Data();
        it.size = a.ByteLength();
      } else if (v.IsObject() && v.As<Napi::Object>().Get("rgb").IsTypedArray()) {
        Napi::Object o = v.As<Napi::Object>();
        auto a = o.Get("rgb").As<Napi::Uint8Array>();
        it.kind = Item::Rgb;
        it.data = a.Data();
        it.width = o.Get("width").As<Napi::Number>().Int32Value();
        it.height = o.Get("height").As<Napi::Number>().Int32Value();
        if (it.width <= 0 || it.height <= 0 || a.ByteLength() < size_t(it.width) * it.height * 3)
          throw Napi::RangeError::New(env, "run: rgb item smaller than width*height*3");
      } else if (v.IsObject() && v.As<Napi::Object>().Get("bgr").IsTypedArray()) {
        Napi::Object o = v.As<Napi::Object>();
        auto a = o.Get("bgr").As<Napi::Uint8Array>();
        it.kind = Item::Ocv;
        it.data = a.Data();
        it.size = a.ByteLength();
        it.width = o.Get("width").ToNumber().Int32Value();
        it.height = o.Get("height").ToNumber().Int32Value();
        it.mode = o.Get("mode").ToNumber().Int32Value();  // size and mode are checked per item (onError)
      } else {
        typeError(env, "run: an item must be a path, a Uint8Array, { rgb, width, height } or { bgr, width, height, mode }");
      }
    }
  } catch (...) {
    delete run;
    throw;
  }
  run->batchRef = Napi::Persistent(batchObj);
  run->itemsRef = Napi::Persistent(items.As<Napi::Object>());
  run->pipelineRef = Napi::Persistent(Value());
  Napi::Promise promise = run->deferred.Promise();
  if (napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "torchline:data"), 0, 1, nullptr,
                                      nullptr, nullptr, settle, &run->tsfn) != napi_ok) {
    delete run;
    throw Napi::Error::New(env, "torchline: cannot create a thread-safe function");
  }
  batch->busy_++;
  if (n == 0) {
    napi_call_threadsafe_function(run->tsfn, run, napi_tsfn_blocking);
    napi_release_threadsafe_function(run->tsfn, napi_tsfn_release);
    return promise;
  }
  run->remaining = int(n);
  std::shared_ptr<Plan> plan = plan_;
  for (uint32_t i = 0; i < n; i++) {
    pool_->push([run, plan, i] {
      processItem(*plan, run->batch, run->items[i]);
      trimScratch();
      if (--run->remaining == 0) {
        napi_threadsafe_function tsfn = run->tsfn;
        if (napi_call_threadsafe_function(tsfn, run, napi_tsfn_blocking) != napi_ok) {
          // The environment is going away; nothing to settle.
        }
        napi_release_threadsafe_function(tsfn, napi_tsfn_release);
      }
    });
  }
  return promise;
}

// ------------------------------------------------------ standalone helpers --

namespace {

// decodeJpeg(bytes, scaleNum = 8, maxDecoderBytes?) -> { width, height, rgb: Buffer }; sync, for tests.
Napi::Value DecodeJpegSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    typeError(env, "decodeJpeg(bytes: Uint8Array, scaleNum?)");
  auto a = info[0].As<Napi::Uint8Array>();
  int num = 8;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) typeError(env, "decodeJpeg: scaleNum must be a number");
    double d = info[1].As<Napi::Number>().DoubleValue();
    // 0 would ask TurboJPEG for its "full size" default into a 0x0 buffer.
    if (!(d >= 1 && d <= 16 && d == double(int(d))) || !validScaleNum(int(d)))
      throw Napi::RangeError::New(env, "decodeJpeg: scaleNum must be an integer n in 1..16 (scale n/8), got " +
                                           Napi::Value(info[1]).ToString().Utf8Value());
    num = int(d);
  }
  int64_t maxDecoder = kDefaultMaxDecoderBytes;
  if (info.Length() > 2 && info[2].IsNumber()) maxDecoder = info[2].As<Napi::Number>().Int64Value();
  try {
    RgbImage img = decodeJpeg(a.Data(), a.ByteLength(), num, 0, maxDecoder);
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", img.width);
    o.Set("height", img.height);
    o.Set("rgb", Napi::Buffer<uint8_t>::Copy(env, img.pixels.data(), img.pixels.size()));
    return o;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// sniffJpeg(bytes, exifTranspose = true) -> { isJpeg, fastPath, reason, width, height, ... }
Napi::Value SniffJpegSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    typeError(env, "sniffJpeg(bytes: Uint8Array)");
  auto a = info[0].As<Napi::Uint8Array>();
  Sniff s = sniffJpeg(a.Data(), a.ByteLength(), info.Length() > 1 ? info[1].ToBoolean().Value() : true);
  Napi::Object o = Napi::Object::New(env);
  o.Set("isJpeg", s.isJpeg);
  o.Set("fastPath", s.fastPath);
  o.Set("reason", s.reason);
  o.Set("width", s.width);
  o.Set("height", s.height);
  o.Set("hasEnd", s.hasEnd);
  o.Set("cmyk", s.cmyk);
  o.Set("orientation", s.orientation);
  o.Set("coefBytes", double(s.coefBytes));
  return o;
}

// sampleSeeds(seed, epoch, indices: number[]) -> BigUint64Array
Napi::Value SampleSeeds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsArray())
    typeError(env, "sampleSeeds(seed, epoch, indices)");
  uint64_t seed = uint64_t(info[0].As<Napi::Number>().Int64Value());
  uint64_t epoch = uint64_t(info[1].As<Napi::Number>().Int64Value());
  auto idx = info[2].As<Napi::Array>();
  auto out = Napi::TypedArrayOf<uint64_t>::New(env, idx.Length(), napi_biguint64_array);
  for (uint32_t i = 0; i < idx.Length(); i++)
    out[i] = sampleSeed(seed, epoch, uint64_t(idx.Get(i).As<Napi::Number>().Int64Value()));
  return out;
}

// planGeometry(spec, width, height, seed: bigint) -> the crop/resize/flip a sample gets (tests).
Napi::Value PlanGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[3].IsBigInt()) typeError(env, "planGeometry(spec, w, h, seed)");
  Plan plan = parsePlan(env, info[0].As<Napi::Object>());
  bool lossless = false;
  SampleRng rng(info[3].As<Napi::BigInt>().Uint64Value(&lossless));
  Geometry g = planGeometry(plan, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), rng);
  Napi::Object o = Napi::Object::New(env);
  o.Set("cropX", g.cropX);
  o.Set("cropY", g.cropY);
  o.Set("cropW", g.cropW);
  o.Set("cropH", g.cropH);
  o.Set("gridW", g.gridW);
  o.Set("gridH", g.gridH);
  o.Set("outX", g.outX);
  o.Set("outY", g.outY);
  o.Set("outW", g.outW);
  o.Set("outH", g.outH);
  o.Set("flip", g.flip);
  return o;
}

// Decode-only throughput over files on a fixed number of threads (bench limit).
Napi::Value DecodeBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber())
    typeError(env, "decodeBench(buffers, threads, rounds)");
  auto arr = info[0].As<Napi::Array>();
  std::vector<std::vector<uint8_t>> bufs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    auto a = arr.Get(i).As<Napi::Uint8Array>();
    bufs.emplace_back(a.Data(), a.Data() + a.ByteLength());
  }
  int threads = info[1].As<Napi::Number>().Int32Value(), rounds = info[2].As<Napi::Number>().Int32Value();
  std::atomic<size_t> next{0};
  const size_t total = bufs.size() * size_t(rounds);
  auto t0 = std::chrono::steady_clock::now();
  if (threads < 1 || threads > 256 || rounds < 0) throw Napi::RangeError::New(env, "decodeBench: threads 1..256, rounds >= 0");
  std::vector<std::thread> ts;
  auto joinAll = [&] {
    for (auto& t : ts) t.join();
  };
  try {
  for (int t = 0; t < threads; t++)
    ts.emplace_back([&] {
      for (size_t k; (k = next++) < total;) {
        auto& b = bufs[k % bufs.size()];
        try {
          decodeJpeg(b.data(), b.size());
        } catch (...) {
        }
      }
    });
  } catch (const std::exception& e) {
    next = total;  // the started threads stop at once
    joinAll();
    throw Napi::Error::New(env, std::string("decodeBench: cannot start its threads: ") + e.what());
  }
  joinAll();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Napi::Number::New(env, double(total) / secs);
}

}  // namespace

void InitDataPlain(Napi::Env env, Napi::Object exports) {
  ImageBatch::Init(env, exports);
  DataPipeline::Init(env, exports);
  exports.Set("decodeJpeg", Napi::Function::New(env, DecodeJpegSync, "decodeJpeg"));
  exports.Set("sniffJpeg", Napi::Function::New(env, SniffJpegSync, "sniffJpeg"));
  exports.Set("sampleSeeds", Napi::Function::New(env, SampleSeeds, "sampleSeeds"));
  exports.Set("planGeometry", Napi::Function::New(env, PlanGeometry, "planGeometry"));
  exports.Set("decodeBench", Napi::Function::New(env, DecodeBench, "decodeBench"));
}

}  // namespace tl::data
