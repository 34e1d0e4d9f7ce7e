// The JS-visible tensor handle. A handle owns one torch::Tensor; its size is
// reported to V8 so the GC knows how much native memory a small JS object
// keeps alive, and dispose() frees it at once.
#pragma once
#include <memory>

#include "common.h"

namespace tl {

class Executor;

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  // Wraps a tensor made in C++ into a new JS handle. `owned` = false for
  // aliases of memory someone else already reports (a model's parameters).
  static Napi::Object New(Napi::Env env, torch::Tensor t, bool owned = true);
  // An alias of a model's weight: `owner` is the model's step executor, so
  // work that reads the tensor (checkpoint snapshots) can queue behind the
  // steps that write it.
  static Napi::Object NewAlias(Napi::Env env, torch::Tensor t, std::shared_ptr<Executor> owner);
  // The executor that writes the tensor behind a JS handle, or null.
  static std::shared_ptr<Executor> OwnerOf(Napi::Value v);
  // The tensor behind a JS handle; throws TypeError for anything else and
  // Error for a disposed handle.
  static torch::Tensor From(Napi::Value v, const char* name);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  void set(torch::Tensor t, bool owned);
  void release();
  const torch::Tensor& live() const;

  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Nbytes(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value ToArrayBuffer(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value RequiresGrad(const Napi::CallbackInfo& info);

  torch::Tensor tensor_;
  std::shared_ptr<Executor> owner_;
  int64_t reported_ = 0;
  bool disposed_ = false;
};

void InitTensorFunctions(Napi::Env env, Napi::Object exports);

}  // namespace tl
