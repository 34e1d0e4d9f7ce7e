// The only torch translation unit of the data loader: turns a finished batch
// buffer into a tensor (no copy; the tensor frees the buffer).
#include "../tensor.h"
#include "loader.h"

#include <cstdlib>

namespace tl::data {

Napi::Value wrapBatchTensor(Napi::Env env, uint8_t* data, size_t bytes, int n, int h, int w, bool uint8) {
  torch::Tensor t;
  try {
    t = torch::from_blob(data, {n, 3, h, w}, [bytes](void* p) { releaseBatchBuffer(p, bytes); },
                         torch::TensorOptions().dtype(uint8 ? torch::kUInt8 : torch::kFloat32));
  } catch (...) {
    releaseBatchBuffer(data, bytes);
    rethrowAsJs(env);
  }
  return TensorHandle::New(env, t);
}

}  // namespace tl::data

namespace tl {

void InitData(Napi::Env env, Napi::Object exports) {
  Napi::Object data = Napi::Object::New(env);
  data::InitDataPlain(env, data);
  exports.Set("data", data);
}

}  // namespace tl
