// torch::optim optimizers (Adam, AdamW, SGD) with parameter groups, exposed to
// JS with torch.optim's option names. Also holds the fp16 GradScaler state,
// since scaling belongs to the optimizer step it guards.
#pragma once
#include <atomic>
#include <memory>

#include "common.h"

namespace tl {

class OptimizerHandle : public Napi::ObjectWrap<OptimizerHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static OptimizerHandle* From(Napi::Value v, const char* name);
  explicit OptimizerHandle(const Napi::CallbackInfo& info);

  torch::optim::Optimizer& optimizer() { return *opt_; }

  // One optimizer step (fused_step.cc): fused kernels unless `fused` is off.
  // With foundInf set on the device, the kernels skip the update; undoStep()
  // then rolls back the step counts so the state equals "never stepped".
  void step(const std::optional<torch::Tensor>& gradScale = std::nullopt,
            const std::optional<torch::Tensor>& foundInf = std::nullopt);
  void undoStep();
  // zero_grad(set_to_none=True) without torch::optim's detach_(): under a
  // process group the gradients are views into the Reducer's buckets (DDP's
  // gradient_as_bucket_view), which cannot be detached in place. They never
  // carry a graph here (no create_graph), so dropping them is enough.
  void zeroGrad();
  bool fused = true;
  std::vector<torch::Tensor> stepped;  // the parameters the last step updated
  bool freshMomentum = false;          // the last SGD step created the momentum buffers
  const std::string& kind() const { return kind_; }

  // Dynamic loss scaling for fp16 autocast (torch.cuda.amp.GradScaler's
  // defaults: init 2^16, growth 2 every 2000 clean steps, backoff 0.5).
  torch::Tensor scale, growthTracker;
  double growthFactor = 2.0, backoffFactor = 0.5;
  int64_t growthInterval = 2000;

  // Steps queued or running with this optimizer (trainStep counts them on
  // the JS thread). The sync methods that read or write the state the step
  // mutates refuse to run meanwhile.
  std::atomic<int> stepsInFlight{0};
  void requireIdle(const char* what) const;

 private:
  Napi::Value Groups(const Napi::CallbackInfo& info);
  Napi::Value SetGroupOption(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value ScalerState(const Napi::CallbackInfo& info);

  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::string kind_;
};

}  // namespace tl
