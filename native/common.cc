#include "common.h"

#include <atomic>
#include <cstdlib>

namespace tl {

std::string errorMessage(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  // LibTorch 1.x appends "Exception raised from <fn> at <file>:<line>" to the message.
  auto cut = msg.find("\nException raised from ");
  if (cut != std::string::npos) msg.resize(cut);
  return msg;
}

Napi::Error currentErrorAsJs(Napi::Env env, std::exception_ptr err) {
  try {
    std::rethrow_exception(err);
  } catch (const Napi::Error& e) {
    return e;
  } catch (const ArgError& e) {
    return Napi::TypeError::New(env, e.what());
  } catch (const CodedError& e) {
    auto err = Napi::Error::New(env, e.what());
    err.Set("code", Napi::String::New(env, e.code));
    return err;
  } catch (const c10::Error& e) {
    return Napi::Error::New(env, errorMessage(e));
  } catch (const std::bad_alloc&) {
    return Napi::Error::New(env, "torchline: out of memory");
  } catch (const std::exception& e) {
    return Napi::Error::New(env, e.what());
  } catch (...) {
    return Napi::Error::New(env, "torchline: unknown native exception");
  }
}

void rethrowAsJs(Napi::Env env) { throw currentErrorAsJs(env, std::current_exception()); }

static Napi::Value arg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

double argNumber(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (!v.IsNumber()) throw ArgError(std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t argInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t r = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw ArgError(std::string(name) + " does not fit in int64");
    return r;
  }
  if (!v.IsNumber()) throw ArgError(std::string(name) + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw ArgError(std::string(name) + " must be an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

bool argBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (!v.IsBoolean()) throw ArgError(std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (!v.IsString()) throw ArgError(std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object argObject(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (!v.IsObject()) throw ArgError(std::string(name) + " must be an object");
  return v.As<Napi::Object>();
}

std::vector<int64_t> argShape(const Napi::CallbackInfo& info, size_t i, const char* name) {
  auto v = arg(info, i);
  if (!v.IsArray()) throw ArgError(std::string(name) + " must be an array of non-negative integers");
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> shape(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value e = a.Get(k);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d)))
      throw ArgError(std::string(name) + " must be an array of non-negative integers");
    shape[k] = static_cast<int64_t>(d);
  }
  return shape;
}

namespace {
struct DtypeEntry {
  const char* name;
  c10::ScalarType type;
};
const DtypeEntry kDtypes[] = {
    {"float32", torch::kFloat32}, {"float64", torch::kFloat64}, {"float16", torch::kFloat16},
    {"bfloat16", torch::kBFloat16}, {"uint8", torch::kUInt8},   {"int8", torch::kInt8},
    {"int16", torch::kInt16},     {"int32", torch::kInt32},     {"int64", torch::kInt64},
    {"bool", torch::kBool},
};
}  // namespace

c10::ScalarType dtypeFromName(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw ArgError("unknown dtype '" + name +
                 "': expected float32, float64, float16, bfloat16, uint8, int8, int16, int32, int64 or bool");
}

std::string dtypeName(c10::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return d.name;
  return c10::toString(t);
}

namespace {
// The GPU that a bare "cuda" means in this process, as torch.cuda.set_device
// sets it: LOCAL_RANK under torchrun (each rank its own GPU), else 0.
std::atomic<int> processCudaDevice{-1};
}  // namespace

int defaultCudaIndex() {
  int d = processCudaDevice.load();
  if (d >= 0) return d;
  const char* lr = std::getenv("LOCAL_RANK");
  int idx = (lr && *lr) ? std::atoi(lr) : 0;
  return idx >= 0 ? idx : 0;
}

void setDefaultCudaIndex(int index) { processCudaDevice.store(index); }

c10::Device deviceFromString(const std::string& s) {
  c10::Device d(c10::kCPU);
  try {
    d = c10::Device(s);
  } catch (const c10::Error&) {
    throw std::invalid_argument("invalid device '" + s + "': expected \"cpu\", \"cuda\" or \"cuda:<index>\"");
  }
  if (!d.is_cuda()) return d;
  if (!d.has_index()) d = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(defaultCudaIndex()));
  if (torch::cuda::is_available() && d.index() >= static_cast<int>(torch::cuda::device_count()))
    throw std::invalid_argument("device '" + s + "' resolves to cuda:" + std::to_string(d.index()) + " but there are " +
                                std::to_string(torch::cuda::device_count()) + " CUDA device(s)");
  return d;
}

std::string shapeString(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); i++) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace tl
