// A model as JS sees it: one torch::nn::Module, its own step thread, and the
// bookkeeping (device, busy flag, memory reported to V8) around it.
#pragma once
#include <atomic>
#include <functional>
#include <memory>

#include "common.h"
#include "executor.h"
#include "models/resnet.h"

namespace tl {

// Data-parallel hooks a process group installs on a model (see
// native/distributed): gradients averaged across ranks while backward runs
// (c10d's Reducer, as DDP), buffers synced from rank 0 before each forward.
// A train step calls them in this order: beforeForward, broadcastBuffers,
// forward, anyNonFinite, beforeBackward, backward, afterBackward. A step that
// ends before beforeBackward leaves nothing behind; one that fails after it
// calls failed() so the next step starts clean.
struct GradSync {
  virtual ~GradSync() = default;
  virtual void beforeForward() = 0;
  // `output` is what backward starts from (the loss, scaled under fp16).
  virtual void beforeBackward(const torch::Tensor& output) = 0;
  // Throws when a gradient was not reduced (a parameter that got none).
  virtual void afterBackward() = 0;
  virtual void failed() = 0;
  virtual void broadcastBuffers(const std::vector<torch::Tensor>& buffers) = 0;
  // True when the loss of any rank is not finite: every rank then skips the
  // step together instead of leaving the others waiting in a collective.
  virtual bool anyNonFinite(double loss) = 0;
  bool syncBuffers = true;
};

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static ModelHandle* From(Napi::Value v, const char* name);
  explicit ModelHandle(const Napi::CallbackInfo& info);
  ~ModelHandle() override;

  torch::nn::Module& module() { return *module_; }
  torch::Tensor forward(const torch::Tensor& x) { return forward_(x); }
  const c10::Device& device() const { return device_; }
  bool channelsLast() const { return channelsLast_; }
  int64_t numClasses() const;
  Executor& executor() { return *executor_; }

  // Runs `work` on the model's own thread. While it is in flight the model is
  // busy (sync methods that touch the weights refuse to run) and its JS object
  // is kept alive, so the raw `this` the work uses stays valid. `settled`, if
  // given, runs on the JS thread once the work is done (other busy flags).
  Napi::Promise runStep(const Napi::CallbackInfo& info, Job work, std::function<void()> settled = nullptr);
  void requireIdle(const char* what) const;

  // Parameters and buffers in PyTorch's state_dict order: per module
  // (pre-order), its own parameters, then its own buffers.
  std::vector<std::pair<std::string, torch::Tensor>> stateEntries() const;
  std::vector<std::pair<std::string, torch::Tensor>> namedParameters() const;
  std::vector<torch::Tensor> buffers() const { return module_->buffers(); }

  std::shared_ptr<GradSync> gradSync;

 private:
  void reportMemory();

  Napi::Value Train(const Napi::CallbackInfo& info);
  Napi::Value IsTraining(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value SetChannelsLast(const Napi::CallbackInfo& info);
  Napi::Value NamedParameters(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info);
  Napi::Value ReplaceHead(const Napi::CallbackInfo& info);
  Napi::Value NumClasses(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);

  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<ResNetImpl> resnet_;  // set when the model is a ResNet
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
  // Shared with the aliases of the weights handed to JS (TensorHandle owner),
  // so a checkpoint snapshot of them queues behind this model's steps.
  std::shared_ptr<Executor> executor_;
  c10::Device device_ = c10::Device(c10::kCPU);
  bool channelsLast_ = false;
  std::atomic<int> pending_{0};
  int64_t reported_ = 0;
};

// Wraps a tensor the model owns (a parameter or buffer) for JS without
// reporting its memory again: the model already did.
Napi::Object aliasHandle(Napi::Env env, const torch::Tensor& t);

}  // namespace tl
