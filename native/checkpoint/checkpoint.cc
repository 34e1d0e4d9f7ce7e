// Zero-copy bridges between checkpoint files and tensor memory. Loading
// reads each storage straight from the file into the memory of a fresh
// tensor (one copy, as PyTorch does) instead of file -> JS buffer -> tensor;
// views of a storage become as_strided views sharing it, as in PyTorch.
// All parsing and validation stays in TypeScript (lib/checkpoint/).
#include "../addon.h"
#include "../common.h"
#include "../tensor.h"

namespace tl {

namespace {

// An ArrayBuffer over a CPU tensor's bytes. It holds a reference to the
// tensor, so the memory outlives neither the buffer nor the tensor.
Napi::Value aliasBytes(Napi::Env env, const torch::Tensor& t) {
  size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  if (n == 0) return Napi::ArrayBuffer::New(env, 0);
  auto* keep = new torch::Tensor(t);
  return Napi::ArrayBuffer::New(
      env, t.data_ptr(), n, [](Napi::Env, void*, torch::Tensor* k) { delete k; }, keep);
}

// checkpointStorage(numel, dtype) -> [handle, ArrayBuffer]: an uninitialised
// 1-D CPU tensor and a writable view of its bytes for the reader to fill.
Napi::Value Storage(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  int64_t numel = argInt(info, 0, "numel");
  if (numel < 0) throw ArgError("numel must be >= 0");
  auto dtype = dtypeFromName(argString(info, 1, "dtype"));
  auto t = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
  auto out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, TensorHandle::New(info.Env(), t));
  out.Set(1u, aliasBytes(info.Env(), t));
  return out;
  TL_GUARD_END(info.Env())
}

// checkpointView(storage, size, stride, offset) -> handle sharing the storage.
Napi::Value View(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto s = TensorHandle::From(info[0], "storage");
  auto size = argShape(info, 1, "size");
  auto stride = argShape(info, 2, "stride");
  int64_t offset = argInt(info, 3, "offset");
  if (size.size() != stride.size()) throw ArgError("size and stride differ in length");
  if (offset < 0) throw ArgError("offset must be >= 0");
  // as_strided checks the view against the storage's size too (c10 error).
  return TensorHandle::New(info.Env(), s.as_strided(size, stride, offset));
  TL_GUARD_END(info.Env())
}

// checkpointBytes(tensor) -> ArrayBuffer of its elements, row-major, for the
// writer: the tensor's own memory when it is a contiguous CPU tensor (no
// copy), else a contiguous CPU copy.
Napi::Value Bytes(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto t = TensorHandle::From(info[0], "tensor");
  return aliasBytes(info.Env(), t.to(torch::kCPU).contiguous());
  TL_GUARD_END(info.Env())
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("checkpointStorage", Napi::Function::New<Storage>(env, "checkpointStorage"));
  exports.Set("checkpointView", Napi::Function::New<View>(env, "checkpointView"));
  exports.Set("checkpointBytes", Napi::Function::New<Bytes>(env, "checkpointBytes"));
}

}  // namespace tl
