#include "distributed/sync_batchnorm.h"

#include <torch/csrc/autograd/custom_function.h>

namespace tl {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Collective state the backward needs; saved as a raw pointer because the
// process group outlives the step (the model's Norm2d holds it).
struct Comm {
  c10d::ProcessGroup* pg;
  std::chrono::milliseconds timeout;
};

void allReduceSum(const Comm& c, torch::Tensor& t) {
  std::vector<torch::Tensor> v{t};
  if (!c.pg->allreduce(v, c10d::AllreduceOptions{})->wait(c.timeout))
    throw std::runtime_error("SyncBatchNorm: all-reduce did not complete");
}

torch::Tensor channel(const torch::Tensor& t) { return t.view({1, -1, 1, 1}); }

// Forward: per-channel count, sum and sum of squares (accumulated in float64,
// so E[x^2] - E[x]^2 keeps its precision) all-reduced in one collective;
// normalise with the global mean and biased variance; running statistics
// take the unbiased one. Backward: the standard BatchNorm gradient, with
// the two per-channel sums it needs all-reduced; the weight and bias
// gradients stay local (the Reducer averages them like any other gradient).
struct SyncBN : torch::autograd::Function<SyncBN> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::nn::BatchNorm2dImpl* bn, Comm comm) {
    const int64_t C = x.size(1);
    const auto dims = std::vector<int64_t>{0, 2, 3};
    auto stats = torch::cat({torch::full({1}, static_cast<double>(x.numel() / C),
                                         x.options().dtype(torch::kDouble)),
                             x.sum(dims, false, torch::kDouble), (x.to(torch::kFloat) * x.to(torch::kFloat))
                                                                     .sum(dims, false, torch::kDouble)});
    allReduceSum(comm, stats);
    const double n = stats[0].item<double>();
    auto mean = stats.narrow(0, 1, C) / n;
    auto var = (stats.narrow(0, 1 + C, C) / n - mean * mean).clamp_min(0);
    const double eps = bn->options.eps();
    {
      torch::NoGradGuard noGrad;
      auto& o = bn->options;
      if (o.track_running_stats()) {
        bn->num_batches_tracked += 1;
        double m = o.momentum() ? *o.momentum() : 1.0 / bn->num_batches_tracked.item<double>();
        auto unbiased = n > 1 ? var * (n / (n - 1)) : var;
        bn->running_mean.mul_(1 - m).add_(mean.to(bn->running_mean.scalar_type()), m);
        bn->running_var.mul_(1 - m).add_(unbiased.to(bn->running_var.scalar_type()), m);
      }
    }
    auto meanF = mean.to(torch::kFloat);
    auto invstd = (var + eps).rsqrt().to(torch::kFloat);
    auto xhat = (x.to(torch::kFloat) - channel(meanF)) * channel(invstd);
    auto out = weight.defined() ? xhat * channel(weight.to(torch::kFloat)) + channel(bias.to(torch::kFloat)) : xhat;
    ctx->save_for_backward({x, weight, meanF, invstd});
    ctx->saved_data["n"] = n;
    ctx->saved_data["pg"] = reinterpret_cast<int64_t>(comm.pg);
    ctx->saved_data["timeout"] = static_cast<int64_t>(comm.timeout.count());
    return out.to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto x = saved[0].to(torch::kFloat), weight = saved[1], mean = saved[2], invstd = saved[3];
    Comm comm{reinterpret_cast<c10d::ProcessGroup*>(ctx->saved_data["pg"].toInt()),
              std::chrono::milliseconds(ctx->saved_data["timeout"].toInt())};
    const double n = ctx->saved_data["n"].toDouble();
    auto dy = grads[0].to(torch::kFloat);
    const auto dims = std::vector<int64_t>{0, 2, 3};
    auto xmu = x - channel(mean);
    auto sumDy = dy.sum(dims);
    auto sumDyXmu = (dy * xmu).sum(dims);
    torch::Tensor gradWeight, gradBias;
    if (weight.defined()) {
      gradWeight = (sumDyXmu * invstd).to(weight.scalar_type());
      gradBias = sumDy.to(weight.scalar_type());
    }
    const int64_t C = sumDy.size(0);
    auto both = torch::cat({sumDy, sumDyXmu});
    allReduceSum(comm, both);
    auto meanDy = both.narrow(0, 0, C) / n;
    auto meanDyXmu = both.narrow(0, C, C) / n;
    auto scale = weight.defined() ? invstd * weight.to(torch::kFloat) : invstd;
    auto dx = (dy - channel(meanDy) - xmu * channel(invstd * invstd * meanDyXmu)) * channel(scale);
    return {dx.to(saved[0].scalar_type()), gradWeight, gradBias, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor syncBatchNorm(const c10::intrusive_ptr<c10d::ProcessGroup>& pg, std::chrono::milliseconds timeout,
                            torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x) {
  if (x.dim() != 4) throw std::invalid_argument("SyncBatchNorm expects a 4-D input [N, C, H, W]");
  return SyncBN::apply(x, bn.weight, bn.bias, &bn, Comm{pg.get(), timeout});
}

}  // namespace tl
