// N-API classes of the data loader (see loader.plain.cc). Free of torch.
#pragma once
#include <napi.h>

#include <memory>

#include "image.h"
#include "worker_pool.h"

namespace tl::data {

// One batch buffer (N x 3 x H x W, float32 or uint8) that pipeline runs write
// into; toTensor(keep?) hands it to LibTorch without a copy.
class ImageBatch : public Napi::ObjectWrap<ImageBatch> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object NewInstance(Napi::Env env);
  explicit ImageBatch(const Napi::CallbackInfo& info);
  ~ImageBatch() override;
  void allocate(int n, const Plan& plan);
  uint8_t* data() const { return data_; }
  uint8_t* slot(int i) const { return data_ + sampleBytes_ * size_t(i); }
  int size() const { return n_; }
  int busy_ = 0;  // runs in flight (JS thread only)

 private:
  Napi::Value ToTensor(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
  size_t sampleBytes_ = 0;
  int n_ = 0, h_ = 0, w_ = 0;
  bool uint8_ = false;
  bool pinned_ = false;
};

// The transform plan plus its worker threads.
class DataPipeline : public Napi::ObjectWrap<DataPipeline> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit DataPipeline(const Napi::CallbackInfo& info);
  ~DataPipeline() override;

 private:
  Napi::Value NewBatch(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value NumWorkers(const Napi::CallbackInfo& info);
  std::shared_ptr<Plan> plan_;
  std::unique_ptr<WorkerPool> pool_;
};

// Batch buffers are recycled (a few, of the same size): a fresh 38 MB
// buffer per batch costs page faults on every first touch.
// With `pinned`, the buffer is page-locked host memory (from the CUDA host
// allocator, through the hooks below) that the workers decode straight into,
// so a copy to the GPU can be asynchronous without a staging copy.
uint8_t* acquireBatchBuffer(size_t bytes, bool pinned);
void releaseBatchBuffer(void* p, size_t bytes, bool pinned);
// Set by the torch side (batch_tensor.cc): allocate returns nullptr when no GPU
// is usable, and the batch falls back to ordinary memory.
struct PinnedHooks {
  void* (*allocate)(size_t bytes) = nullptr;
  void (*release)(void* p) = nullptr;
};
void setPinnedHooks(PinnedHooks hooks);

// batch_tensor.cc (the one torch file): adopts a batch buffer; the tensor
// hands it back to releaseBatchBuffer.
Napi::Value wrapBatchTensor(Napi::Env env, uint8_t* data, size_t bytes, int n, int h, int w, bool uint8, bool pinned);

void InitDataPlain(Napi::Env env, Napi::Object exports);

}  // namespace tl::data
