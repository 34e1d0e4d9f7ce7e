#include "models/fused_norm.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "models/batch_norm_act.h"
#include "tensor.h"

namespace tl {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<bool> enabled{true};

bnact::Type typeOf(const torch::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? bnact::Type::BF16 : bnact::Type::F32;
}

// Rows per task: at least ~32K elements, so splitting costs nothing measurable.
int64_t grainRows(int64_t C) { return std::max<int64_t>(1, 32768 / C); }

// A row range of a channels-last tensor.
struct Rows {
  const torch::Tensor* t;
  int64_t rowBytes;
  const void* at(int64_t r) const {
    return t->defined() ? static_cast<const char*>(t->data_ptr()) + r * rowBytes : nullptr;
  }
  void* mut(int64_t r) const { return t->defined() ? static_cast<char*>(t->data_ptr()) + r * rowBytes : nullptr; }
};

// Runs f(begin, end, sumA, sumB) over row ranges on LibTorch's intra-op
// threads, each thread adding into its own float64 sums, and returns the
// totals: [0, C) of the first sum, [C, 2C) of the second.
template <class F>
std::vector<double> reduceOverRows(int64_t rows, int64_t C, F f) {
  const int threads = std::max(1, at::get_num_threads());
  std::vector<double> part(size_t(threads) * 2 * C, 0.0);
  at::parallel_for(0, rows, grainRows(C), [&](int64_t begin, int64_t end) {
    const int tid = at::get_thread_num();
    TORCH_CHECK(tid >= 0 && tid < threads, "fused BatchNorm: thread ", tid, " outside the pool of ", threads);
    double* s = part.data() + size_t(tid) * 2 * C;
    f(begin, end, s, s + C);
  });
  std::vector<double> total(size_t(2 * C), 0.0);
  for (int t = 0; t < threads; t++)
    for (int64_t i = 0; i < 2 * C; i++) total[i] += part[size_t(t) * 2 * C + i];
  return total;
}

// Saved per-channel float32 rows of `stats` [4, C].
enum StatRow { kMean = 0, kInvstd = 1, kScale = 2, kShift = 3 };

// The forward and backward of relu(bn(x) + residual); the autograd nodes below
// differ only in whether there is a residual input (custom autograd functions
// take no undefined tensors).
struct Fused {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::nn::BatchNorm2dImpl* bn, bool relu) {
    const int64_t C = x.size(1), rows = x.numel() / C;
    const auto type = typeOf(x);
    const Rows xr{&x, int64_t(x.element_size()) * C};

    // Statistics, centred on the first row (a sample of each channel).
    std::vector<float> center(C);
    if (type == bnact::Type::BF16) std::copy_n(x.data_ptr<at::BFloat16>(), C, center.begin());
    else std::copy_n(x.data_ptr<float>(), C, center.begin());
    auto sums = reduceOverRows(rows, C, [&](int64_t b, int64_t e, double* s, double* q) {
      bnact::accumulateStats(type, xr.at(b), e - b, C, center.data(), s, q);
    });

    const double n = double(rows), eps = bn->options.eps();
    auto stats = torch::empty({4, C}, torch::kFloat);
    float* st = stats.data_ptr<float>();
    const float* w = weight.data_ptr<float>();
    const float* bi = bias.data_ptr<float>();
    auto unbiasedVar = torch::empty({C}, torch::kFloat);
    float* uv = unbiasedVar.data_ptr<float>();
    for (int64_t c = 0; c < C; c++) {
      // Clamp rounding below zero, but let a NaN through (std::max would drop it).
      const double d = sums[c] / n, v = sums[C + c] / n - d * d, var = v < 0 ? 0 : v;
      const double mean = center[c] + d, invstd = 1.0 / std::sqrt(var + eps);
      st[kMean * C + c] = float(mean);
      st[kInvstd * C + c] = float(invstd);
      st[kScale * C + c] = float(w[c] * invstd);
      st[kShift * C + c] = float(bi[c] - mean * w[c] * invstd);
      uv[c] = float(var * n / (n - 1));
    }
    {
      // What BatchNorm2d's forward does before calling batch_norm.
      torch::NoGradGuard noGrad;
      bn->num_batches_tracked += 1;
      const auto& m = bn->options.momentum();
      const double factor = m ? *m : 1.0 / bn->num_batches_tracked.item<double>();
      bn->running_mean.mul_(1 - factor).add_(stats[kMean], factor);
      bn->running_var.mul_(1 - factor).add_(unbiasedVar, factor);
    }

    auto y = at::empty_like(x);
    const Rows rr{&residual, xr.rowBytes}, yr{&y, xr.rowBytes};
    at::parallel_for(0, rows, grainRows(C), [&](int64_t b, int64_t e) {
      bnact::normalize(type, xr.at(b), rr.at(b), yr.mut(b), e - b, C, st + kScale * C, st + kShift * C, relu);
    });

    const bool maskFromOutput = relu && residual.defined();
    ctx->save_for_backward({x, stats, maskFromOutput ? y : torch::Tensor()});
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["residual"] = residual.defined();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &stats = saved[1], &out = saved[2];
    const bool relu = ctx->saved_data["relu"].toBool(), hasResidual = ctx->saved_data["residual"].toBool();
    const int64_t C = x.size(1), rows = x.numel() / C;
    const auto type = typeOf(x);
    auto dy = grads[0].to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
    const float* st = stats.data_ptr<float>();

    // With a residual the masked gradient is the residual's gradient too: the
    // first pass writes it, the second reads it instead of re-masking dy.
    const auto mask = !relu ? bnact::Mask::None : hasResidual ? bnact::Mask::Output : bnact::Mask::Recompute;
    torch::Tensor g = mask == bnact::Mask::Output ? at::empty_like(x) : torch::Tensor();
    const int64_t rowBytes = int64_t(x.element_size()) * C;
    const Rows dyr{&dy, rowBytes}, xr{&x, rowBytes}, outr{&out, rowBytes}, gr{&g, rowBytes};
    std::vector<float> gradMean(C), gradProj(C);
    bnact::BackwardParams p{st + kMean * C, st + kScale * C, st + kShift * C, gradMean.data(), gradProj.data()};
    auto sums = reduceOverRows(rows, C, [&](int64_t b, int64_t e, double* sG, double* sGX) {
      bnact::backwardReduce(type, dyr.at(b), xr.at(b), outr.at(b), gr.mut(b), e - b, C, mask, p, sG, sGX);
    });

    auto gradWeight = torch::empty({C}, torch::kFloat), gradBias = torch::empty({C}, torch::kFloat);
    float *gw = gradWeight.data_ptr<float>(), *gb = gradBias.data_ptr<float>();
    const double n = double(rows);
    for (int64_t c = 0; c < C; c++) {
      const double invstd = st[kInvstd * C + c];
      gw[c] = float(sums[C + c] * invstd);
      gb[c] = float(sums[c]);
      gradMean[c] = float(sums[c] / n);
      gradProj[c] = float(sums[C + c] * invstd * invstd / n);
    }

    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x);
      const Rows src = g.defined() ? gr : dyr, dxr{&dx, rowBytes};
      const auto srcMask = g.defined() ? bnact::Mask::None : mask;
      at::parallel_for(0, rows, grainRows(C), [&](int64_t b, int64_t e) {
        bnact::backwardInput(type, src.at(b), xr.at(b), nullptr, dxr.mut(b), e - b, C, srcMask, p);
      });
    }
    if (!hasResidual) return {dx, gradWeight, gradBias, torch::Tensor(), torch::Tensor()};
    return {dx, g.defined() ? g : dy, gradWeight, gradBias, torch::Tensor(), torch::Tensor()};
  }
};

struct BatchNormAct : torch::autograd::Function<BatchNormAct> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::nn::BatchNorm2dImpl* bn, bool relu) {
    return Fused::forward(ctx, x, torch::Tensor(), weight, bias, bn, relu);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) { return Fused::backward(ctx, grads); }
};

struct BatchNormAddAct : torch::autograd::Function<BatchNormAddAct> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::nn::BatchNorm2dImpl* bn, bool relu) {
    return Fused::forward(ctx, x, residual, weight, bias, bn, relu);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) { return Fused::backward(ctx, grads); }
};

bool cpuFloat32(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
}

}  // namespace

void setFusedNorm(bool on) { enabled.store(on, std::memory_order_relaxed); }
bool fusedNormEnabled() { return enabled.load(std::memory_order_relaxed); }

namespace {

bool supported(const torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x, const torch::Tensor& residual) {
  if (!bn.is_training() || !bn.options.track_running_stats()) return false;
  if (!x.defined() || x.dim() != 4 || !x.device().is_cpu() || x.layout() != at::kStrided) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  // Channels-last only, not also NCHW-contiguous (C == 1 or H*W == 1): a model
  // in NCHW keeps ATen's arithmetic throughout.
  if (!x.is_contiguous(at::MemoryFormat::ChannelsLast) || x.is_contiguous() || x.numel() == 0) return false;
  const int64_t C = x.size(1);
  // One value per channel: ATen's batch_norm raises its error for it.
  if (x.numel() / C < 2) return false;
  for (const auto* t : {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var})
    if (!cpuFloat32(*t) || t->numel() != C) return false;
  if (residual.defined() && (residual.sizes() != x.sizes() || residual.scalar_type() != x.scalar_type() ||
                             !residual.device().is_cpu() ||
                             !residual.is_contiguous(at::MemoryFormat::ChannelsLast)))
    return false;
  return true;
}

}  // namespace

bool fusedNormApplies(const torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x, const torch::Tensor& residual) {
  return fusedNormEnabled() && supported(bn, x, residual);
}

torch::Tensor fusedNorm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x, const torch::Tensor& residual,
                        bool relu) {
  if (residual.defined()) return BatchNormAddAct::apply(x, residual, bn.weight, bn.bias, &bn, relu);
  return BatchNormAct::apply(x, bn.weight, bn.bias, &bn, relu);
}

namespace {

// For tests: relu(bn(x) + residual) in training mode through the fused path or
// ATen's ops (`fused`), at `dtype`, channels-last, with a fresh BatchNorm2d
// holding the given weight, bias and running statistics; backpropagates dy.
// Returns float32 NCHW copies: y, dx, dresidual (or null), dweight, dbias,
// runningMean, runningVar.
Napi::Value BatchNormActForTest(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto env = info.Env();
  auto x = TensorHandle::From(info[0], "x");
  auto residual = info[1].IsNull() || info[1].IsUndefined() ? torch::Tensor() : TensorHandle::From(info[1], "residual");
  auto weight = TensorHandle::From(info[2], "weight"), bias = TensorHandle::From(info[3], "bias");
  auto runningMean = TensorHandle::From(info[4], "runningMean"), runningVar = TensorHandle::From(info[5], "runningVar");
  auto dy = TensorHandle::From(info[6], "dy");
  auto opts = argObject(info, 7, "options");
  const bool relu = opts.Get("relu").ToBoolean(), fused = opts.Get("fused").ToBoolean();
  const auto dtype = dtypeFromName(opts.Get("dtype").ToString().Utf8Value());
  const double momentum = opts.Get("momentum").ToNumber().DoubleValue();
  const double eps = opts.Get("eps").ToNumber().DoubleValue();

  const int64_t C = x.size(1);
  torch::nn::BatchNorm2d bn(torch::nn::BatchNormOptions(C).momentum(momentum).eps(eps));
  {
    torch::NoGradGuard noGrad;
    bn->weight.copy_(weight);
    bn->bias.copy_(bias);
    bn->running_mean.copy_(runningMean);
    bn->running_var.copy_(runningVar);
  }
  auto cl = [&](const torch::Tensor& t) {
    return t.to(dtype).contiguous(at::MemoryFormat::ChannelsLast).detach().requires_grad_(true);
  };
  auto xi = cl(x);
  auto ri = residual.defined() ? cl(residual) : torch::Tensor();
  torch::Tensor y;
  if (fused) {
    if (!supported(*bn, xi, ri)) throw std::invalid_argument("the fused path does not apply to these inputs");
    y = fusedNorm(*bn, xi, ri, relu);
  } else {
    y = bn->forward(xi);
    if (ri.defined()) y = y + ri;
    if (relu) y = torch::relu(y);
  }
  y.backward(dy.to(dtype).contiguous(at::MemoryFormat::ChannelsLast));
  auto f32 = [&](const torch::Tensor& t) -> Napi::Value {
    if (!t.defined()) return env.Null();
    return TensorHandle::New(env, t.detach().to(torch::kFloat).contiguous());
  };
  auto out = Napi::Object::New(env);
  out.Set("y", f32(y));
  out.Set("dx", f32(xi.grad()));
  out.Set("dresidual", ri.defined() ? f32(ri.grad()) : env.Null());
  out.Set("dweight", f32(bn->weight.grad()));
  out.Set("dbias", f32(bn->bias.grad()));
  out.Set("runningMean", f32(bn->running_mean));
  out.Set("runningVar", f32(bn->running_var));
  return out;
  TL_GUARD_END(info.Env())
}

Napi::Value SetFusedNorm(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  setFusedNorm(argBool(info, 0, "enabled"));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value FusedNormEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fusedNormEnabled());
}

}  // namespace

void InitFusedNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("setFusedNorm", Napi::Function::New<SetFusedNorm>(env, "setFusedNorm"));
  exports.Set("fusedNormEnabled", Napi::Function::New<FusedNormEnabled>(env, "fusedNormEnabled"));
  exports.Set("batchNormActForTest", Napi::Function::New<BatchNormActForTest>(env, "batchNormActForTest"));
}

}  // namespace tl
