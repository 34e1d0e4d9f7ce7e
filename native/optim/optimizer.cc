#include "optim/optimizer.h"

#include <type_traits>

#include "addon.h"
#include "tensor.h"

namespace tl {

namespace {

double num(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw ArgError(std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool flag(const Napi::Object& o, const char* key, bool fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  return o.Get(key).ToBoolean().Value();
}

template <class Options>
void adamOptions(Options& a, const Napi::Object& o) {
  a.lr(num(o, "lr", a.lr()));
  auto betas = a.betas();
  if (o.Has("betas") && o.Get("betas").IsArray()) {
    auto b = o.Get("betas").As<Napi::Array>();
    betas = std::make_tuple(b.Get(0u).ToNumber().DoubleValue(), b.Get(1u).ToNumber().DoubleValue());
  }
  a.betas(betas);
  a.eps(num(o, "eps", a.eps()));
  a.weight_decay(num(o, "weightDecay", a.weight_decay()));
  a.amsgrad(flag(o, "amsgrad", a.amsgrad()));
}

void sgdOptions(torch::optim::SGDOptions& s, const Napi::Object& o) {
  s.lr(num(o, "lr", s.lr()));
  s.momentum(num(o, "momentum", s.momentum()));
  s.dampening(num(o, "dampening", s.dampening()));
  s.weight_decay(num(o, "weightDecay", s.weight_decay()));
  s.nesterov(flag(o, "nesterov", s.nesterov()));
  if (s.nesterov() && (s.momentum() <= 0 || s.dampening() != 0))
    throw std::invalid_argument("Nesterov momentum requires a momentum and zero dampening");
}

void validate(double lr, double eps, double wd) {
  if (!(lr >= 0)) throw std::invalid_argument("Invalid learning rate: " + std::to_string(lr));
  if (!(eps >= 0)) throw std::invalid_argument("Invalid epsilon value: " + std::to_string(eps));
  if (!(wd >= 0)) throw std::invalid_argument("Invalid weight_decay value: " + std::to_string(wd));
}

// Builds the options for one group: the defaults, overridden by the group's.
std::unique_ptr<torch::optim::OptimizerOptions> makeOptions(const std::string& kind, const Napi::Object& defaults,
                                                            const Napi::Object& group) {
  if (kind == "adam" || kind == "adamw") {
    auto apply = [&](auto opts) -> std::unique_ptr<torch::optim::OptimizerOptions> {
      adamOptions(opts, defaults);
      adamOptions(opts, group);
      double b1 = std::get<0>(opts.betas()), b2 = std::get<1>(opts.betas());
      if (!(b1 >= 0 && b1 < 1)) throw std::invalid_argument("Invalid beta parameter at index 0: " + std::to_string(b1));
      if (!(b2 >= 0 && b2 < 1)) throw std::invalid_argument("Invalid beta parameter at index 1: " + std::to_string(b2));
      validate(opts.lr(), opts.eps(), opts.weight_decay());
      return std::make_unique<decltype(opts)>(opts);
    };
    if (kind == "adam") return apply(torch::optim::AdamOptions(1e-3));
    return apply(torch::optim::AdamWOptions(1e-3));  // weight_decay defaults to 1e-2, as torch
  }
  if (kind == "sgd") {
    if (!defaults.Has("lr") && !group.Has("lr")) throw std::invalid_argument("SGD needs a learning rate (lr)");
    torch::optim::SGDOptions s(0.0);
    sgdOptions(s, defaults);
    sgdOptions(s, group);
    validate(s.lr(), 0, s.weight_decay());
    if (s.momentum() < 0) throw std::invalid_argument("Invalid momentum value: " + std::to_string(s.momentum()));
    return std::make_unique<torch::optim::SGDOptions>(s);
  }
  throw std::invalid_argument("unknown optimizer '" + kind + "': expected adam, adamw or sgd");
}

// torch::optim keys per-parameter state by its TensorImpl pointer.
template <class Map>
typename Map::key_type stateKey(const torch::Tensor& p) {
  return static_cast<typename Map::key_type>(p.unsafeGetTensorImpl());
}

using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;

}  // namespace

void OptimizerHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "OptimizerHandle",
                                    {
                                        InstanceMethod<&OptimizerHandle::Groups>("groups"),
                                        InstanceMethod<&OptimizerHandle::SetGroupOption>("setGroupOption"),
                                        InstanceMethod<&OptimizerHandle::ZeroGrad>("zeroGrad"),
                                        InstanceMethod<&OptimizerHandle::State>("state"),
                                        InstanceMethod<&OptimizerHandle::LoadState>("loadState"),
                                        InstanceMethod<&OptimizerHandle::ScalerState>("scalerState"),
                                    });
  addonData(env).optimizerCtor = Napi::Persistent(ctor);
  exports.Set("OptimizerHandle", ctor);
}

OptimizerHandle* OptimizerHandle::From(Napi::Value v, const char* name) {
  return Unwrap(unwrapArg(v, addonData(v.Env()).optimizerCtor, name, "an optimizer"));
}

// new OptimizerHandle(kind, [{ params: [Tensor...], ...groupOptions }], defaults)
OptimizerHandle::OptimizerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OptimizerHandle>(info) {
  TL_GUARD_BEGIN
  kind_ = argString(info, 0, "kind");
  if (!info[1].IsArray()) throw ArgError("parameter groups must be an array");
  auto groupsJs = info[1].As<Napi::Array>();
  Napi::Object defaults = argObject(info, 2, "defaults");
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::unordered_set<void*> seen;
  for (uint32_t g = 0; g < groupsJs.Length(); g++) {
    Napi::Value gv = groupsJs.Get(g);
    if (!gv.IsObject()) throw ArgError("each parameter group must be an object");
    auto go = gv.As<Napi::Object>();
    if (!go.Get("params").IsArray()) throw ArgError("parameter group " + std::to_string(g) + " needs params: Tensor[]");
    auto ps = go.Get("params").As<Napi::Array>();
    std::vector<torch::Tensor> params;
    for (uint32_t i = 0; i < ps.Length(); i++) {
      auto t = TensorHandle::From(ps.Get(i), "parameter");
      if (!t.is_leaf()) throw std::invalid_argument("can't optimize a non-leaf Tensor");
      if (!seen.insert(t.unsafeGetTensorImpl()).second)
        throw std::invalid_argument("some parameters appear in more than one parameter group");
      params.push_back(t);
    }
    if (params.empty()) throw std::invalid_argument("parameter group " + std::to_string(g) + " is empty");
    groups.emplace_back(params, makeOptions(kind_, defaults, go));
  }
  if (groups.empty()) throw std::invalid_argument("optimizer got an empty parameter list");
  // torch.optim's fused=True: one kernel per group. fused: false keeps the per-parameter loop.
  fused = flag(defaults, "fused", true);
  auto defaultsOpts = makeOptions(kind_, defaults, Napi::Object::New(info.Env()));
  if (kind_ == "adam")
    opt_ = std::make_unique<torch::optim::Adam>(groups, static_cast<torch::optim::AdamOptions&>(*defaultsOpts));
  else if (kind_ == "adamw")
    opt_ = std::make_unique<torch::optim::AdamW>(groups, static_cast<torch::optim::AdamWOptions&>(*defaultsOpts));
  else
    opt_ = std::make_unique<torch::optim::SGD>(groups, static_cast<torch::optim::SGDOptions&>(*defaultsOpts));
  scale = torch::full({1}, 65536.0, torch::kFloat32);
  growthTracker = torch::zeros({1}, torch::kInt32);
  TL_GUARD_END(info.Env())
}

void OptimizerHandle::requireIdle(const char* what) const {
  if (stepsInFlight > 0)
    throw std::runtime_error(std::string("cannot ") + what +
                             " while a training step using this optimizer is running; await it first");
}

Napi::Value OptimizerHandle::Groups(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  Napi::Env env = info.Env();
  auto& groups = opt_->param_groups();
  auto arr = Napi::Array::New(env, groups.size());
  for (size_t g = 0; g < groups.size(); g++) {
    auto o = Napi::Object::New(env);
    auto& opts = groups[g].options();
    o.Set("numParams", Napi::Number::New(env, static_cast<double>(groups[g].params().size())));
    if (kind_ == "sgd") {
      auto& s = static_cast<torch::optim::SGDOptions&>(opts);
      o.Set("lr", s.lr());
      o.Set("momentum", s.momentum());
      o.Set("dampening", s.dampening());
      o.Set("weightDecay", s.weight_decay());
      o.Set("nesterov", s.nesterov());
    } else {
      auto fill = [&](auto& a) {
        o.Set("lr", a.lr());
        auto b = Napi::Array::New(env, 2);
        b.Set(0u, std::get<0>(a.betas()));
        b.Set(1u, std::get<1>(a.betas()));
        o.Set("betas", b);
        o.Set("eps", a.eps());
        o.Set("weightDecay", a.weight_decay());
        o.Set("amsgrad", a.amsgrad());
      };
      if (kind_ == "adam") fill(static_cast<torch::optim::AdamOptions&>(opts));
      else fill(static_cast<torch::optim::AdamWOptions&>(opts));
    }
    arr.Set(g, o);
  }
  return arr;
  TL_GUARD_END(info.Env())
}

// setGroupOption(group, key, value): what LR schedulers change between steps
// (lr; momentum or beta1 for OneCycleLR's momentum cycling).
Napi::Value OptimizerHandle::SetGroupOption(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("change an optimizer option");
  int64_t g = argInt(info, 0, "group");
  std::string key = argString(info, 1, "key");
  double v = argNumber(info, 2, "value");
  auto& groups = opt_->param_groups();
  if (g < 0 || g >= static_cast<int64_t>(groups.size()))
    throw std::out_of_range("parameter group " + std::to_string(g) + " does not exist (" +
                            std::to_string(groups.size()) + " groups)");
  auto& opts = groups[g].options();
  if (key == "lr") {
    opts.set_lr(v);
  } else if (kind_ == "sgd" && key == "momentum") {
    static_cast<torch::optim::SGDOptions&>(opts).momentum(v);
  } else if (kind_ != "sgd" && key == "beta1") {
    auto set = [&](auto& a) { a.betas(std::make_tuple(v, std::get<1>(a.betas()))); };
    if (kind_ == "adam") set(static_cast<torch::optim::AdamOptions&>(opts));
    else set(static_cast<torch::optim::AdamWOptions&>(opts));
  } else if (key == "weightDecay") {
    if (kind_ == "sgd") static_cast<torch::optim::SGDOptions&>(opts).weight_decay(v);
    else if (kind_ == "adam") static_cast<torch::optim::AdamOptions&>(opts).weight_decay(v);
    else static_cast<torch::optim::AdamWOptions&>(opts).weight_decay(v);
  } else {
    throw std::invalid_argument("option '" + key + "' cannot be set on a " + kind_ + " optimizer");
  }
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

void OptimizerHandle::zeroGrad() {
  for (auto& g : opt_->param_groups())
    for (auto& p : g.params())
      if (p.grad().defined()) p.mutable_grad().reset();
}

Napi::Value OptimizerHandle::ZeroGrad(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("zero the gradients");
  zeroGrad();
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

// state() -> [{ index, step, exp_avg, exp_avg_sq, max_exp_avg_sq } | { index, momentum_buffer }]
// Indices count parameters across groups in order, as torch.optim's
// state_dict does. Tensors are copies (the live state keeps changing).
Napi::Value OptimizerHandle::State(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("read the optimizer state");
  Napi::Env env = info.Env();
  auto& state = opt_->state();
  auto out = Napi::Array::New(env);
  uint32_t n = 0;
  int64_t index = 0;
  for (auto& group : opt_->param_groups()) {
    for (auto& p : group.params()) {
      auto it = state.find(stateKey<StateMap>(p));
      if (it != state.end()) {
        auto o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, static_cast<double>(index)));
        if (kind_ == "sgd") {
          auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
          if (s.momentum_buffer().defined()) o.Set("momentum_buffer", TensorHandle::New(env, s.momentum_buffer().clone()));
        } else {
          auto fill = [&](auto& s) {
            o.Set("step", Napi::Number::New(env, static_cast<double>(s.step())));
            o.Set("exp_avg", TensorHandle::New(env, s.exp_avg().clone()));
            o.Set("exp_avg_sq", TensorHandle::New(env, s.exp_avg_sq().clone()));
            if (s.max_exp_avg_sq().defined() && s.max_exp_avg_sq().numel() > 0)
              o.Set("max_exp_avg_sq", TensorHandle::New(env, s.max_exp_avg_sq().clone()));
          };
          if (kind_ == "adam") fill(static_cast<torch::optim::AdamParamState&>(*it->second));
          else fill(static_cast<torch::optim::AdamWParamState&>(*it->second));
        }
        out.Set(n++, o);
      }
      index++;
    }
  }
  return out;
  TL_GUARD_END(info.Env())
}

// loadState(entries) with entries as state() returns them.
Napi::Value OptimizerHandle::LoadState(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("load the optimizer state");
  if (!info[0].IsArray()) throw ArgError("optimizer state must be an array");
  auto entries = info[0].As<Napi::Array>();
  std::vector<torch::Tensor> flat;
  for (auto& group : opt_->param_groups())
    for (auto& p : group.params()) flat.push_back(p);
  auto& state = opt_->state();
  auto take = [](const Napi::Object& o, const char* key, const torch::Tensor& like) {
    auto t = TensorHandle::From(o.Get(key), key);
    if (t.sizes() != like.sizes())
      throw std::invalid_argument(std::string("optimizer state ") + key + " has shape " + shapeString(t.sizes()) +
                                  " but its parameter has " + shapeString(like.sizes()));
    // In the parameter's own layout (channels_last weights): the fused kernels walk
    // a parameter and its state element by element in memory order.
    return torch::empty_like(like).copy_(t);
  };
  for (uint32_t i = 0; i < entries.Length(); i++) {
    auto o = entries.Get(i).As<Napi::Object>();
    int64_t index = o.Get("index").ToNumber().Int64Value();
    if (index < 0 || index >= static_cast<int64_t>(flat.size()))
      throw std::out_of_range("optimizer state refers to parameter " + std::to_string(index) + " but there are " +
                              std::to_string(flat.size()));
    auto& p = flat[index];
    auto key = stateKey<StateMap>(p);
    if (kind_ == "sgd") {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      if (o.Has("momentum_buffer")) s->momentum_buffer(take(o, "momentum_buffer", p));
      state[key] = std::move(s);
    } else {
      auto fill = [&](auto s) {
        s->step(o.Get("step").ToNumber().Int64Value());
        s->exp_avg(take(o, "exp_avg", p));
        s->exp_avg_sq(take(o, "exp_avg_sq", p));
        if (o.Has("max_exp_avg_sq")) s->max_exp_avg_sq(take(o, "max_exp_avg_sq", p));
        state[key] = std::move(s);
      };
      if (kind_ == "adam") fill(std::make_unique<torch::optim::AdamParamState>());
      else fill(std::make_unique<torch::optim::AdamWParamState>());
    }
  }
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value OptimizerHandle::ScalerState(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("read the loss scaler state");
  auto o = Napi::Object::New(info.Env());
  o.Set("scale", scale.item<double>());
  o.Set("growthTracker", static_cast<double>(growthTracker.item<int>()));
  return o;
  TL_GUARD_END(info.Env())
}

void InitOptim(Napi::Env env, Napi::Object exports) { OptimizerHandle::Init(env, exports); }

}  // namespace tl
