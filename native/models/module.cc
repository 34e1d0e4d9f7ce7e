#include "models/module.h"

#include "models/fused_norm.h"

#include "addon.h"
#include "tensor.h"

#include <unordered_set>

namespace tl {

namespace {

void collectState(const torch::nn::Module& m, const std::string& prefix,
                  std::vector<std::pair<std::string, torch::Tensor>>& out, bool withBuffers) {
  for (const auto& p : m.named_parameters(/*recurse=*/false))
    if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
  if (withBuffers)
    for (const auto& b : m.named_buffers(/*recurse=*/false))
      if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collectState(*c.value(), prefix + c.key() + ".", out, withBuffers);
}

}  // namespace

Napi::Object aliasHandle(Napi::Env env, const torch::Tensor& t) { return TensorHandle::New(env, t, false); }

void ModelHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "ModelHandle",
                                    {
                                        InstanceMethod<&ModelHandle::Train>("train"),
                                        InstanceMethod<&ModelHandle::IsTraining>("isTraining"),
                                        InstanceMethod<&ModelHandle::To>("to"),
                                        InstanceMethod<&ModelHandle::Device>("device"),
                                        InstanceMethod<&ModelHandle::SetChannelsLast>("setChannelsLast"),
                                        InstanceMethod<&ModelHandle::NamedParameters>("namedParameters"),
                                        InstanceMethod<&ModelHandle::StateDict>("stateDict"),
                                        InstanceMethod<&ModelHandle::LoadStateDict>("loadStateDict"),
                                        InstanceMethod<&ModelHandle::SetRequiresGrad>("setRequiresGrad"),
                                        InstanceMethod<&ModelHandle::ReplaceHead>("replaceHead"),
                                        InstanceMethod<&ModelHandle::NumClasses>("numClasses"),
                                        InstanceMethod<&ModelHandle::Forward>("forward"),
                                    });
  addonData(env).modelCtor = Napi::Persistent(ctor);
  exports.Set("ModelHandle", ctor);
}

ModelHandle* ModelHandle::From(Napi::Value v, const char* name) {
  return Unwrap(unwrapArg(v, addonData(v.Env()).modelCtor, name, "a model"));
}

// new ModelHandle("resnet", { depth, numClasses, zeroInitResidual })
ModelHandle::ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {
  TL_GUARD_BEGIN
  std::string arch = argString(info, 0, "architecture");
  Napi::Object o = argObject(info, 1, "options");
  if (arch != "resnet") throw std::invalid_argument("unknown architecture '" + arch + "'");
  ResNetOptions ro;
  if (o.Has("depth")) ro.depth = o.Get("depth").ToNumber().Int32Value();
  if (o.Has("numClasses")) ro.numClasses = o.Get("numClasses").ToNumber().Int64Value();
  if (o.Has("zeroInitResidual")) ro.zeroInitResidual = o.Get("zeroInitResidual").ToBoolean().Value();
  resnet_ = std::make_shared<ResNetImpl>(ro);
  module_ = resnet_;
  forward_ = [r = resnet_.get()](const torch::Tensor& x) { return r->forward(x); };
  executor_ = std::make_shared<Executor>("torchline:model");
  reportMemory();
  TL_GUARD_END(info.Env())
}

ModelHandle::~ModelHandle() {
  // The Reducer's hooks sit on this model's parameters: take them off first.
  gradSync.reset();
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_);
}

void ModelHandle::reportMemory() {
  int64_t bytes = 0;
  for (const auto& e : stateEntries())
    if (e.second.device().is_cpu()) bytes += e.second.numel() * e.second.element_size();
  if (bytes != reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), bytes - reported_);
  reported_ = bytes;
}

void ModelHandle::requireIdle(const char* what) const {
  if (pending_ > 0)
    throw std::runtime_error(std::string("cannot ") + what + " while a step is running on this model; await it first");
}

int64_t ModelHandle::numClasses() const { return resnet_ ? resnet_->numClasses() : -1; }

std::vector<std::pair<std::string, torch::Tensor>> ModelHandle::stateEntries() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  collectState(*module_, "", out, true);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> ModelHandle::namedParameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  collectState(*module_, "", out, false);
  return out;
}

Napi::Value ModelHandle::Train(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("switch train/eval mode");
  module_->train(argBool(info, 0, "mode"));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value ModelHandle::IsTraining(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), module_->is_training());
}

Napi::Value ModelHandle::To(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("move the model");
  auto device = deviceFromString(argString(info, 0, "device"));
  // Module::to keeps each parameter's TensorImpl (set_data), so handles and
  // optimizers made earlier stay attached, as in PyTorch.
  module_->to(device);
  device_ = device;
  if (channelsLast_) {
    torch::NoGradGuard noGrad;
    for (auto& p : module_->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  reportMemory();
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value ModelHandle::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), device_.str());
}

Napi::Value ModelHandle::SetChannelsLast(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("change the memory format");
  channelsLast_ = argBool(info, 0, "channelsLast");
  torch::NoGradGuard noGrad;
  auto fmt = channelsLast_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : module_->parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(fmt));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

static Napi::Array entriesToJs(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& entries,
                               const std::shared_ptr<Executor>& owner) {
  auto arr = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, entries[i].first));
    pair.Set(1u, TensorHandle::NewAlias(env, entries[i].second, owner));
    arr.Set(i, pair);
  }
  return arr;
}

Napi::Value ModelHandle::NamedParameters(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return entriesToJs(info.Env(), namedParameters(), executor_);
  TL_GUARD_END(info.Env())
}

// Detached aliases of the live tensors (as PyTorch's state_dict): cheap, and
// a copy is made only when the caller saves or moves them.
Napi::Value ModelHandle::StateDict(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("read the state dict");
  auto entries = stateEntries();
  for (auto& e : entries) e.second = e.second.detach();
  return entriesToJs(info.Env(), entries, executor_);
  TL_GUARD_END(info.Env())
}

// loadStateDict([[name, tensor], ...], strict) -> { missing, unexpected }.
// Shapes must match exactly; values are copied (and cast/moved) in place so
// optimizers keep pointing at the same parameters.
Napi::Value ModelHandle::LoadStateDict(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("load a state dict");
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw ArgError("state dict entries must be an array of [name, tensor]");
  bool strict = argBool(info, 1, "strict");
  auto src = info[0].As<Napi::Array>();
  std::unordered_map<std::string, torch::Tensor> incoming;
  std::vector<std::string> order;
  for (uint32_t i = 0; i < src.Length(); i++) {
    Napi::Value e = src.Get(i);
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) throw ArgError("state dict entries must be [name, tensor]");
    auto pair = e.As<Napi::Array>();
    Napi::Value k = pair.Get(0u);
    if (!k.IsString()) throw ArgError("state dict keys must be strings");
    std::string name = k.As<Napi::String>().Utf8Value();
    incoming[name] = TensorHandle::From(pair.Get(1u), name.c_str());
    order.push_back(name);
  }
  auto entries = stateEntries();
  std::vector<std::string> missing, unexpected;
  std::unordered_set<std::string> known;
  for (auto& e : entries) {
    known.insert(e.first);
    auto it = incoming.find(e.first);
    if (it == incoming.end()) {
      missing.push_back(e.first);
      continue;
    }
    if (it->second.sizes() != e.second.sizes())
      throw std::invalid_argument("size mismatch for " + e.first + ": copying a param with shape " +
                                  shapeString(it->second.sizes()) + ", the shape in the current model is " +
                                  shapeString(e.second.sizes()));
  }
  for (auto& name : order)
    if (!known.count(name)) unexpected.push_back(name);
  if (strict && (!missing.empty() || !unexpected.empty())) {
    std::string msg = "Error(s) in loading state_dict:";
    if (!missing.empty()) {
      msg += " missing keys:";
      for (size_t i = 0; i < missing.size() && i < 10; i++) msg += " " + missing[i];
      if (missing.size() > 10) msg += " ... (" + std::to_string(missing.size()) + " in all)";
    }
    if (!unexpected.empty()) {
      msg += " unexpected keys:";
      for (size_t i = 0; i < unexpected.size() && i < 10; i++) msg += " " + unexpected[i];
      if (unexpected.size() > 10) msg += " ... (" + std::to_string(unexpected.size()) + " in all)";
    }
    throw std::invalid_argument(msg);
  }
  {
    torch::NoGradGuard noGrad;
    for (auto& e : entries) {
      auto it = incoming.find(e.first);
      if (it != incoming.end()) e.second.copy_(it->second);
    }
  }
  auto toArr = [&](const std::vector<std::string>& v) {
    auto a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(i, Napi::String::New(env, v[i]));
    return a;
  };
  auto r = Napi::Object::New(env);
  r.Set("missing", toArr(missing));
  r.Set("unexpected", toArr(unexpected));
  return r;
  TL_GUARD_END(info.Env())
}

// setRequiresGrad(prefixes[], flag) -> number of parameters changed. An empty
// prefix list means every parameter.
Napi::Value ModelHandle::SetRequiresGrad(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("freeze or unfreeze parameters");
  if (!info[0].IsArray()) throw ArgError("prefixes must be an array of strings");
  auto arr = info[0].As<Napi::Array>();
  std::vector<std::string> prefixes;
  for (uint32_t i = 0; i < arr.Length(); i++) prefixes.push_back(arr.Get(i).ToString().Utf8Value());
  bool flag = argBool(info, 1, "requiresGrad");
  std::vector<bool> used(prefixes.size(), false);
  int64_t n = 0;
  for (auto& p : namedParameters()) {
    bool match = prefixes.empty();
    for (size_t i = 0; i < prefixes.size(); i++) {
      const auto& pre = prefixes[i];
      // "layer1" matches layer1.* but not layer10.*
      if (p.first == pre || p.first.rfind(pre.back() == '.' ? pre : pre + ".", 0) == 0) {
        match = true;
        used[i] = true;
      }
    }
    if (match) {
      p.second.requires_grad_(flag);
      n++;
    }
  }
  for (size_t i = 0; i < prefixes.size(); i++)
    if (!used[i]) throw std::invalid_argument("no parameter matches the prefix '" + prefixes[i] + "'");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
  TL_GUARD_END(info.Env())
}

Napi::Value ModelHandle::ReplaceHead(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  requireIdle("replace the head");
  if (!resnet_) throw std::runtime_error("replaceHead is only defined for ResNet models");
  resnet_->replaceHead(argInt(info, 0, "numClasses"));
  reportMemory();
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value ModelHandle::NumClasses(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(numClasses()));
}

Napi::Promise ModelHandle::runStep(const Napi::CallbackInfo& info, Job work, std::function<void()> settled) {
  pending_++;
  // Value(), not info.This(): the caller may be another object's method
  // (a process group attaching this model).
  auto* keep = new Napi::ObjectReference(Napi::Persistent(Value()));
  return executor_->submit(info.Env(), std::move(work), [this, keep, settled = std::move(settled)] {
    pending_--;
    delete keep;
    if (settled) settled();
  });
}

// forward(x) -> Promise<Tensor>: inference on the model's thread, no autograd
// graph (JS cannot call backward; training goes through trainStep).
Napi::Value ModelHandle::Forward(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto x = TensorHandle::From(info[0], "input");
  if (x.dim() != 4 || x.size(1) != 3)
    throw std::invalid_argument("forward expects an input of shape [N, 3, H, W], got " + shapeString(x.sizes()));
  if (!x.is_floating_point())
    throw std::invalid_argument("forward expects a floating-point input, got " + dtypeName(x.scalar_type()));
  return runStep(info, [this, x]() -> Finisher {
    torch::NoGradGuard noGrad;
    c10::DeviceGuard deviceGuard(device_);
    auto in = x.to(device_, torch::kFloat32);
    if (channelsLast_) in = in.contiguous(at::MemoryFormat::ChannelsLast);
    auto out = forward_(in).contiguous();
    return [out](Napi::Env env) -> Napi::Value { return TensorHandle::New(env, out); };
  });
  TL_GUARD_END(info.Env())
}

void InitModels(Napi::Env env, Napi::Object exports) {
  ModelHandle::Init(env, exports);
  InitFusedNorm(env, exports);
}

}  // namespace tl
