// The only torch translation unit of the data loader: turns a finished batch
// buffer into a tensor (no copy; the tensor frees the buffer).
#include "../tensor.h"
#include "loader.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>

namespace tl::data {

namespace {

// Pinned batch buffers come from LibTorch's CUDA host allocator (cached, and
// known to it, so is_pinned() holds and copies are asynchronous). Its DataPtrs
// are kept here by address until the batch buffer is released.
// Never destroyed: at process exit the CUDA driver may already be gone, and
// freeing pinned memory then throws (cudaErrorCudartUnloading) and aborts.
std::mutex pinnedMu;
auto& pinnedLive = *new std::unordered_map<void*, c10::DataPtr>();

void* pinnedAllocate(size_t bytes) {
  if (!torch::cuda::is_available()) return nullptr;
  c10::DataPtr dp = at::detail::getCUDAHooks().getPinnedMemoryAllocator()->allocate(bytes);
  void* p = dp.get();
  std::lock_guard<std::mutex> lock(pinnedMu);
  pinnedLive.emplace(p, std::move(dp));
  return p;
}

void pinnedRelease(void* p) {
  c10::DataPtr dp;
  {
    std::lock_guard<std::mutex> lock(pinnedMu);
    auto it = pinnedLive.find(p);
    if (it == pinnedLive.end()) return;
    dp = std::move(it->second);
    pinnedLive.erase(it);
  }
}

}  // namespace

Napi::Value wrapBatchTensor(Napi::Env env, uint8_t* data, size_t bytes, int n, int h, int w, bool uint8, bool pinned) {
  torch::Tensor t;
  try {
    t = torch::from_blob(data, {n, 3, h, w}, [bytes, pinned](void* p) { releaseBatchBuffer(p, bytes, pinned); },
                         torch::TensorOptions().dtype(uint8 ? torch::kUInt8 : torch::kFloat32));
  } catch (...) {
    releaseBatchBuffer(data, bytes, pinned);
    rethrowAsJs(env);
  }
  TL_GUARD_BEGIN
  return TensorHandle::New(env, t);
  TL_GUARD_END(env)
}

namespace {

// normalize(images uint8 NCHW, mean[3], std[3], device) -> float32 on device:
// ToTensor + Normalize after the copy, so a uint8 batch crosses the bus (4x
// less than float32) and the GPU does the arithmetic. Same float32 ops as the
// CPU path, so on CPU the result equals the float loader's output exactly.
Napi::Value Normalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TL_GUARD_BEGIN
  torch::Tensor x = TensorHandle::From(info[0], "images");
  if (x.scalar_type() != torch::kUInt8 || x.dim() != 4 || x.size(1) != 3)
    throw ArgError("normalize: images must be a uint8 (N, 3, H, W) tensor");
  auto floats = [&](size_t i, const char* name) {
    if (i >= info.Length() || !info[i].IsArray() || info[i].As<Napi::Array>().Length() != 3)
      throw ArgError(std::string("normalize: ") + name + " needs 3 numbers");
    auto a = info[i].As<Napi::Array>();
    std::vector<float> v(3);
    for (uint32_t k = 0; k < 3; k++) v[k] = a.Get(k).As<Napi::Number>().FloatValue();
    return torch::tensor(v).view({1, 3, 1, 1});
  };
  torch::Device device = deviceFromString(argString(info, 3, "device"));
  bool nonBlocking = x.is_pinned();
  torch::Tensor m = floats(1, "mean").to(device), s = floats(2, "std").to(device);
  torch::Tensor y = x.to(device, nonBlocking).to(torch::kFloat32).div_(255).sub_(m).div_(s);
  return TensorHandle::New(env, y);
  TL_GUARD_END(env)
}

}  // namespace

}  // namespace tl::data

namespace tl {

void InitData(Napi::Env env, Napi::Object exports) {
  data::setPinnedHooks({data::pinnedAllocate, data::pinnedRelease});
  Napi::Object data = Napi::Object::New(env);
  data::InitDataPlain(env, data);
  data.Set("normalize", Napi::Function::New(env, data::Normalize, "normalize"));
  exports.Set("data", data);
}

}  // namespace tl
