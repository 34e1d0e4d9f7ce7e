// One training or evaluation step, run on the model's own thread:
// to(device) -> forward (autocast) -> cross-entropy -> backward -> clip -> step,
// resolving with plain numbers. The JS thread never waits on it.
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <optional>

#include "addon.h"
#include "models/module.h"
#include "optim/optimizer.h"
#include "tensor.h"

namespace tl {

namespace F = torch::nn::functional;

namespace {

enum class Amp { Off, Fp16, Bf16 };

struct StepOptions {
  double labelSmoothing = 0;
  double clipGradNorm = 0;
  Amp amp = Amp::Off;
};

StepOptions parseOptions(const Napi::CallbackInfo& info, size_t i) {
  StepOptions o;
  if (i >= info.Length() || info[i].IsUndefined()) return o;
  auto js = argObject(info, i, "options");
  if (js.Has("labelSmoothing")) o.labelSmoothing = js.Get("labelSmoothing").ToNumber().DoubleValue();
  if (js.Has("clipGradNorm")) o.clipGradNorm = js.Get("clipGradNorm").ToNumber().DoubleValue();
  if (!(o.labelSmoothing >= 0 && o.labelSmoothing <= 1))
    throw std::invalid_argument("labelSmoothing must be in [0, 1], got " + std::to_string(o.labelSmoothing));
  if (!(o.clipGradNorm >= 0)) throw std::invalid_argument("clipGradNorm must be >= 0");
  if (js.Has("amp") && !js.Get("amp").IsUndefined()) {
    Napi::Value a = js.Get("amp");
    std::string s = a.IsBoolean() ? (a.As<Napi::Boolean>().Value() ? "fp16" : "off") : a.ToString().Utf8Value();
    if (s == "fp16" || s == "float16") o.amp = Amp::Fp16;
    else if (s == "bf16" || s == "bfloat16") o.amp = Amp::Bf16;
    else if (s != "off") throw std::invalid_argument("amp must be 'fp16', 'bf16' or false, got '" + s + "'");
  }
  return o;
}

// Autocast for the current thread. The API moved in LibTorch 2.4 (per-device
// setters); both spellings are kept behind the version macros.
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType dev, Amp amp) : dev_(dev), on_(amp != Amp::Off) {
    if (!on_) return;
    auto dtype = amp == Amp::Fp16 ? at::kHalf : at::kBFloat16;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(dev_, true);
    at::autocast::set_autocast_dtype(dev_, dtype);
#else
    if (dev_ == c10::kCUDA) {
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(dev_, false);
#else
    if (dev_ == c10::kCUDA) at::autocast::set_enabled(false);
    else at::autocast::set_cpu_enabled(false);
#endif
  }

 private:
  c10::DeviceType dev_;
  bool on_;
};

struct Batch {
  torch::Tensor images, labels;
};

// Checks on the JS thread, so bad input fails before anything is queued, with
// a message naming what was expected.
Batch checkBatch(ModelHandle& m, const Napi::CallbackInfo& info, size_t i) {
  Batch b{TensorHandle::From(info[i], "images"), TensorHandle::From(info[i + 1], "labels")};
  const auto& x = b.images;
  const auto& y = b.labels;
  if (x.dim() != 4 || x.size(1) != 3)
    throw std::invalid_argument("images must have shape [N, 3, H, W], got " + shapeString(x.sizes()));
  if (!x.is_floating_point())
    throw std::invalid_argument("images must be floating point (float32, normalised), got " + dtypeName(x.scalar_type()));
  if (x.size(0) == 0) throw std::invalid_argument("empty batch");
  if (y.dim() != 1 || y.size(0) != x.size(0))
    throw std::invalid_argument("labels must have shape [" + std::to_string(x.size(0)) + "] to match images " +
                                shapeString(x.sizes()) + ", got " + shapeString(y.sizes()));
  if (y.is_floating_point() || y.scalar_type() == torch::kBool)
    throw std::invalid_argument("labels must be integer class indices (int64), got " + dtypeName(y.scalar_type()));
  if (!x.device().is_cpu() && x.device() != m.device())
    throw std::invalid_argument("images are on " + x.device().str() + " but the model is on " + m.device().str());
  int64_t classes = m.numClasses();
  auto lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  if (lo < 0 || (classes > 0 && hi >= classes))
    throw std::invalid_argument("labels must be in [0, " + std::to_string(classes) + "), got values in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return b;
}

torch::Tensor toModel(ModelHandle& m, const torch::Tensor& x, c10::ScalarType dtype) {
  // non_blocking only helps from pinned memory to a GPU; it is a no-op otherwise.
  auto out = x.to(m.device(), dtype, /*non_blocking=*/m.device().is_cuda());
  if (m.channelsLast() && out.dim() == 4) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return out;
}

struct Metrics {
  double loss = 0;
  int64_t correct1 = 0, correct5 = 0, n = 0;
  double gradNorm = -1;
  bool stepped = true;
  torch::Tensor predictions;
};

// Top-1 and top-5 hit counts as device tensors (read later with the loss).
struct Hits {
  torch::Tensor top1, top5, predictions;
};

Hits accuracy(const torch::Tensor& logits, const torch::Tensor& y) {
  torch::NoGradGuard noGrad;
  int64_t k = std::min<int64_t>(5, logits.size(1));
  auto top = std::get<1>(logits.topk(k, 1));
  auto hit = top.eq(y.view({-1, 1}));
  return {hit.select(1, 0).sum(), hit.any(1).sum(), top.select(1, 0)};
}

// torch.nn.utils.clip_grad_norm_ (foreach form) without reading the norm back:
// scales by min(1, max / (norm + 1e-6)) on the device and returns the norm.
torch::Tensor clipGradNorm(const std::vector<torch::Tensor>& params, double maxNorm) {
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({}, torch::kFloat32);
  auto norms = at::_foreach_norm(grads, 2);
  auto total = at::linalg_vector_norm(at::stack(norms), 2);
  auto coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  at::_foreach_mul_(grads, coef);
  return total;
}

Napi::Object metricsToJs(Napi::Env env, const Metrics& r) {
  auto o = Napi::Object::New(env);
  o.Set("loss", r.loss);
  o.Set("correct1", static_cast<double>(r.correct1));
  o.Set("correct5", static_cast<double>(r.correct5));
  o.Set("n", static_cast<double>(r.n));
  if (r.gradNorm >= 0) o.Set("gradNorm", r.gradNorm);
  o.Set("stepped", r.stepped);
  if (r.predictions.defined()) {
    auto arr = Napi::Int32Array::New(env, r.predictions.numel());
    std::memcpy(arr.Data(), r.predictions.data_ptr<int32_t>(), r.predictions.numel() * sizeof(int32_t));
    o.Set("predictions", arr);
  }
  return o;
}

[[noreturn]] void nonFiniteLoss(double loss, bool everyRank) {
  throw CodedError("ERR_NONFINITE_LOSS", "non-finite loss (" + std::to_string(loss) +
                                             (everyRank ? " here; checked on every rank" : "") +
                                             "): the step was not applied; lower the learning rate, "
                                             "check the data or enable gradient clipping");
}

// trainStep(model, optimizer, images, labels, options) -> Promise<metrics>
//
// The step reads the device once, after the optimizer step: the loss, the hit
// counts, the grad norm and the skip flag travel together. Whether to skip
// (a non-finite loss, or an fp16 overflow) is decided on the device and handed
// to the fused optimizer kernels as found_inf, so nothing waits for the host.
// Data parallel steps and the unfused optimizer still read the loss before the
// update: every rank must agree, and torch::optim's loop cannot skip by itself.
Napi::Value TrainStep(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  ModelHandle* m = ModelHandle::From(info[0], "model");
  OptimizerHandle* o = OptimizerHandle::From(info[1], "optimizer");
  Batch b = checkBatch(*m, info, 2);
  StepOptions opts = parseOptions(info, 4);
  if (opts.amp == Amp::Fp16 && !m->device().is_cuda())
    throw std::invalid_argument("amp 'fp16' needs a CUDA device; on CPU use amp 'bf16' or none");
  // The optimizer's JS object must outlive the step too.
  auto* keepOpt = new Napi::ObjectReference(Napi::Persistent(info[1].As<Napi::Object>()));
  o->stepsInFlight++;
  return m->runStep(info, [m, o, b, opts, keepOpt]() -> Finisher {
    auto release = [keepOpt](Napi::Env) { delete keepOpt; };
    Metrics r;
    auto& opt = o->optimizer();
    auto sync = m->gradSync;
    bool reducing = false;  // between sync->beforeBackward and afterBackward
    try {
      c10::DeviceGuard deviceGuard(m->device());
      auto x = toModel(*m, b.images, torch::kFloat32);
      auto y = b.labels.to(m->device(), torch::kLong);
      const bool fp16 = opts.amp == Amp::Fp16;
      if (sync) sync->beforeForward();
      // DDP's broadcast_buffers: every rank starts the forward with rank 0's BN statistics.
      if (sync && sync->syncBuffers) sync->broadcastBuffers(m->buffers());
      o->zeroGrad();
      torch::Tensor logits, loss;
      {
        AutocastScope autocast(m->device().type(), opts.amp);
        logits = m->forward(x);
        loss = F::cross_entropy(logits.to(torch::kFloat32), y,
                                F::CrossEntropyFuncOptions().label_smoothing(opts.labelSmoothing));
      }
      const bool hostCheck = (sync || !o->fused) && !fp16;
      if (hostCheck) {
        r.loss = loss.item<double>();
        if (sync ? sync->anyNonFinite(r.loss) : !std::isfinite(r.loss)) nonFiniteLoss(r.loss, bool(sync));
      }
      std::vector<torch::Tensor> params;
      for (auto& g : opt.param_groups())
        for (auto& p : g.params())
          if (p.requires_grad()) params.push_back(p);
      // With a process group, c10d's Reducer all-reduces gradient buckets from
      // autograd hooks while backward is still running; when backward returns
      // every gradient is the average over ranks.
      auto backward = [&](const torch::Tensor& out) {
        if (sync) {
          sync->beforeBackward(out);
          reducing = true;
        }
        out.backward();
        if (sync) {
          reducing = false;
          sync->afterBackward();
        }
      };
      auto flagOpts = torch::TensorOptions().dtype(torch::kFloat32).device(m->device());
      torch::Tensor found, gradNorm;
      if (fp16) {
        // GradScaler: scale the loss, unscale the grads, skip the step on inf/nan, adapt the scale.
        if (o->scale.device() != m->device()) {
          o->scale = o->scale.to(m->device());
          o->growthTracker = o->growthTracker.to(m->device());
        }
        auto scaled = loss * o->scale;
        backward(scaled);
        std::vector<torch::Tensor> grads;
        for (auto& p : params)
          if (p.grad().defined()) grads.push_back(p.grad());
        found = torch::zeros({1}, flagOpts);
        at::_amp_foreach_non_finite_check_and_unscale_(grads, found, o->scale.reciprocal());
        if (!o->fused && found.item<float>() > 0) {
          // torch::optim cannot skip on the device: decide here.
        } else {
          if (opts.clipGradNorm > 0) gradNorm = clipGradNorm(params, opts.clipGradNorm);
          o->step(std::nullopt, found);
        }
        at::_amp_update_scale_(o->scale, o->growthTracker, found, o->growthFactor, o->backoffFactor,
                               o->growthInterval);
      } else {
        backward(loss);
        if (!hostCheck) found = loss.detach().isfinite().logical_not().to(torch::kFloat32).view({1});
        if (opts.clipGradNorm > 0) gradNorm = clipGradNorm(params, opts.clipGradNorm);
        o->step(std::nullopt, found.defined() ? std::optional<torch::Tensor>(found) : std::nullopt);
      }
      auto hits = accuracy(logits, y);
      auto zero = torch::zeros({1}, flagOpts);
      auto stats = torch::cat({loss.detach().to(torch::kFloat32).view({1}), hits.top1.to(torch::kFloat32).view({1}),
                               hits.top5.to(torch::kFloat32).view({1}), found.defined() ? found : zero,
                               gradNorm.defined() ? gradNorm.to(torch::kFloat32).view({1}) : zero - 1})
                       .to(torch::kCPU);
      auto v = stats.accessor<float, 1>();
      if (!hostCheck) r.loss = v[0];
      r.correct1 = static_cast<int64_t>(v[1]);
      r.correct5 = static_cast<int64_t>(v[2]);
      r.n = y.size(0);
      r.gradNorm = v[4];
      const bool skipped = v[3] > 0;
      if (skipped && o->fused) o->undoStep();
      if (fp16) r.stepped = !skipped;
      else if (skipped) nonFiniteLoss(r.loss, false);
    } catch (...) {
      if (reducing) sync->failed();
      o->zeroGrad();
      auto err = std::current_exception();
      return [release, err](Napi::Env env) -> Napi::Value {
        release(env);
        std::rethrow_exception(err);
      };
    }
    return [release, r](Napi::Env env) -> Napi::Value {
      release(env);
      return metricsToJs(env, r);
    };
  }, [o] { o->stepsInFlight--; });
  TL_GUARD_END(info.Env())
}

// evalStep(model, images, labels, options) -> Promise<metrics + predictions>.
// No autograd graph; the model's train/eval mode is the caller's choice.
Napi::Value EvalStep(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  ModelHandle* m = ModelHandle::From(info[0], "model");
  Batch b = checkBatch(*m, info, 1);
  StepOptions opts = parseOptions(info, 3);
  return m->runStep(info, [m, b, opts]() -> Finisher {
    torch::NoGradGuard noGrad;
    c10::DeviceGuard deviceGuard(m->device());
    Metrics r;
    auto x = toModel(*m, b.images, torch::kFloat32);
    auto y = b.labels.to(m->device(), torch::kLong);
    torch::Tensor logits;
    {
      AutocastScope autocast(m->device().type(), opts.amp);
      logits = m->forward(x).to(torch::kFloat32);
    }
    auto loss = F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(opts.labelSmoothing));
    auto hits = accuracy(logits, y);
    auto stats = torch::stack({loss.to(torch::kFloat64), hits.top1.to(torch::kFloat64), hits.top5.to(torch::kFloat64)})
                     .to(torch::kCPU);
    auto v = stats.accessor<double, 1>();
    r.loss = v[0];
    r.correct1 = static_cast<int64_t>(v[1]);
    r.correct5 = static_cast<int64_t>(v[2]);
    r.n = y.size(0);
    r.predictions = hits.predictions.to(torch::kCPU, torch::kInt32).contiguous();
    r.stepped = false;
    return [r](Napi::Env env) -> Napi::Value { return metricsToJs(env, r); };
  });
  TL_GUARD_END(info.Env())
}

Napi::Value SetCudnnBenchmark(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  at::globalContext().setBenchmarkCuDNN(argBool(info, 0, "benchmark"));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

}  // namespace

void InitTrain(Napi::Env env, Napi::Object exports) {
  exports.Set("trainStep", Napi::Function::New<TrainStep>(env, "trainStep"));
  exports.Set("evalStep", Napi::Function::New<EvalStep>(env, "evalStep"));
  exports.Set("setCudnnBenchmark", Napi::Function::New<SetCudnnBenchmark>(env, "setCudnnBenchmark"));
}

}  // namespace tl
