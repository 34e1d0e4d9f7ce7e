// The optimizer step as one fused kernel per parameter group (LibTorch 2.x's
// _fused_adam_/_fused_adamw_/_fused_sgd_, what torch.optim runs with
// fused=True): one pass over all parameters instead of ~10 kernels per
// parameter. State stays in torch::optim's per-parameter structures, so
// state dicts, checkpoints and the unfused path read and write the same state.
//
// found_inf (a 1-element float tensor on the parameters' device) makes the
// kernels skip the update without a host read: a non-finite loss or an fp16
// overflow is decided on the device and only read back once, after the step.
#include "optim/optimizer.h"

namespace tl {

namespace {

template <class State>
State& adamState(torch::optim::Optimizer& opt, const torch::Tensor& p, bool amsgrad) {
  auto& state = opt.state();
  auto key = static_cast<std::decay_t<decltype(state)>::key_type>(p.unsafeGetTensorImpl());
  auto it = state.find(key);
  if (it == state.end()) {
    auto s = std::make_unique<State>();
    s->step(0);
    s->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
    s->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
    if (amsgrad) s->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
    it = state.emplace(key, std::move(s)).first;
  }
  auto& s = static_cast<State&>(*it->second);
  if (amsgrad && !(s.max_exp_avg_sq().defined() && s.max_exp_avg_sq().numel() == p.numel()))
    s.max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
  return s;
}

// The fused kernels walk a parameter, its gradient and its state in memory
// order: all must share the parameter's strides (channels_last weights whose
// state came from a checkpoint in NCHW, or a gradient in another layout).
torch::Tensor sameLayout(const torch::Tensor& t, const torch::Tensor& p) {
  if (!t.defined() || t.strides() == p.strides()) return t;
  return torch::empty_like(p).copy_(t);
}

template <class Options, class State>
void adamGroups(OptimizerHandle& h, bool decoupled, const std::optional<torch::Tensor>& gradScale,
                const std::optional<torch::Tensor>& foundInf) {
  auto& opt = h.optimizer();
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    std::vector<torch::Tensor> params, grads, m, v, vmax, steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& s = adamState<State>(opt, p, o.amsgrad());
      s.step(s.step() + 1);
      s.exp_avg(sameLayout(s.exp_avg(), p));
      s.exp_avg_sq(sameLayout(s.exp_avg_sq(), p));
      if (o.amsgrad()) s.max_exp_avg_sq(sameLayout(s.max_exp_avg_sq(), p));
      params.push_back(p);
      grads.push_back(sameLayout(p.grad(), p));
      m.push_back(s.exp_avg());
      v.push_back(s.exp_avg_sq());
      if (o.amsgrad()) vmax.push_back(s.max_exp_avg_sq());
      // The kernels read the step count from a tensor; ours is the integer in the state.
      steps.push_back(torch::full({}, static_cast<double>(s.step()), torch::TensorOptions().dtype(torch::kFloat32).device(p.device())));
      h.stepped.push_back(p);
    }
    if (params.empty()) continue;
    auto [b1, b2] = o.betas();
    if (decoupled)
      at::_fused_adamw_(params, grads, m, v, vmax, steps, o.lr(), b1, b2, o.weight_decay(), o.eps(), o.amsgrad(), false,
                        gradScale, foundInf);
    else
      at::_fused_adam_(params, grads, m, v, vmax, steps, o.lr(), b1, b2, o.weight_decay(), o.eps(), o.amsgrad(), false,
                       gradScale, foundInf);
  }
}

void sgdGroups(OptimizerHandle& h, const std::optional<torch::Tensor>& gradScale,
               const std::optional<torch::Tensor>& foundInf) {
  auto& opt = h.optimizer();
  auto& state = opt.state();
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads, bufs;
    bool first = true;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(sameLayout(p.grad(), p));
      if (o.momentum() == 0) continue;
      auto key = static_cast<std::decay_t<decltype(state)>::key_type>(p.unsafeGetTensorImpl());
      auto it = state.find(key);
      if (it == state.end()) it = state.emplace(key, std::make_unique<torch::optim::SGDParamState>()).first;
      auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) {
        first = false;
        s.momentum_buffer(sameLayout(s.momentum_buffer(), p));
      }
      bufs.push_back(s.momentum_buffer());
    }
    if (params.empty()) continue;
    if (o.momentum() != 0) {
      // torch.optim's rule: the first step (no buffer anywhere) initialises every buffer from the gradient.
      for (size_t i = 0; i < bufs.size(); i++) {
        if (!bufs[i].defined()) {
          bufs[i] = torch::empty_like(grads[i], at::MemoryFormat::Preserve);
          auto key = static_cast<std::decay_t<decltype(state)>::key_type>(params[i].unsafeGetTensorImpl());
          static_cast<torch::optim::SGDParamState&>(*state.at(key)).momentum_buffer(bufs[i]);
          if (!first) bufs[i].copy_(grads[i]);  // a parameter that joined late starts like torch's per-tensor path
        }
      }
      if (first) h.freshMomentum = true;
    }
    at::_fused_sgd_(params, grads, bufs, o.weight_decay(), o.momentum(), o.lr(), o.dampening(), o.nesterov(), false,
                    first && o.momentum() != 0, gradScale, foundInf);
  }
}

}  // namespace

void OptimizerHandle::step(const std::optional<torch::Tensor>& gradScale, const std::optional<torch::Tensor>& foundInf) {
  stepped.clear();
  freshMomentum = false;
  if (!fused) {
    opt_->step();
    return;
  }
  if (kind_ == "adam") adamGroups<torch::optim::AdamOptions, torch::optim::AdamParamState>(*this, false, gradScale, foundInf);
  else if (kind_ == "adamw") adamGroups<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*this, true, gradScale, foundInf);
  else sgdGroups(*this, gradScale, foundInf);
}

// The kernels skipped the update (found_inf was set): the state's step counts
// go back, and momentum buffers that this step created are dropped, as
// torch.optim's fused path leaves them.
void OptimizerHandle::undoStep() {
  auto& state = opt_->state();
  if (kind_ == "sgd") {
    if (!freshMomentum) return;
    for (auto& g : opt_->param_groups())
      for (auto& p : g.params()) {
        auto it = state.find(static_cast<std::decay_t<decltype(state)>::key_type>(p.unsafeGetTensorImpl()));
        if (it != state.end()) static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer(torch::Tensor());
      }
    return;
  }
  for (auto& p : stepped) {
    auto it = state.find(static_cast<std::decay_t<decltype(state)>::key_type>(p.unsafeGetTensorImpl()));
    if (it == state.end()) continue;
    if (kind_ == "adam") {
      auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
      s.step(s.step() - 1);
    } else {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      s.step(s.step() - 1);
    }
  }
}

}  // namespace tl
