// Shared by every torch translation unit: error translation across the N-API
// boundary, argument checks, dtype names.
#pragma once
#include <torch/torch.h>
#include <napi.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace tl {

// Thrown for a JS argument of the wrong type; becomes a JS TypeError.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error with a stable `code` property in JS (e.g. ERR_NONFINITE_LOSS), for
// failures callers are expected to handle rather than just print.
struct CodedError : std::runtime_error {
  CodedError(std::string code, const std::string& msg) : std::runtime_error(msg), code(std::move(code)) {}
  std::string code;
};

// The message of a c10::Error without LibTorch's C++ backtrace.
std::string errorMessage(const c10::Error& e);

// Called from a catch(...) block: rethrows the active exception as a
// Napi::Error (TypeError for ArgError) so node-addon-api raises it in JS.
// Nothing that crosses into JS may escape as a C++ exception: that aborts.
[[noreturn]] void rethrowAsJs(Napi::Env env);
// The same, but returns the JS error object (for rejecting a promise).
Napi::Error currentErrorAsJs(Napi::Env env, std::exception_ptr err);

#define TL_GUARD_BEGIN try {
#define TL_GUARD_END(env) \
  }                       \
  catch (...) {           \
    ::tl::rethrowAsJs(env); \
  }

// Argument helpers: each throws ArgError naming the argument and what it expected.
double argNumber(const Napi::CallbackInfo& info, size_t i, const char* name);
int64_t argInt(const Napi::CallbackInfo& info, size_t i, const char* name);
bool argBool(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<int64_t> argShape(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object argObject(const Napi::CallbackInfo& info, size_t i, const char* name);

// PyTorch dtype names ("float32", "int64", ...) <-> ScalarType.
c10::ScalarType dtypeFromName(const std::string& name);
std::string dtypeName(c10::ScalarType t);
// "cuda" without an index means this process's GPU (cuda.setDevice, else
// LOCAL_RANK, else 0), so every torchrun rank lands on its own device.
c10::Device deviceFromString(const std::string& s);
int defaultCudaIndex();
void setDefaultCudaIndex(int index);

std::string shapeString(c10::IntArrayRef sizes);

}  // namespace tl
