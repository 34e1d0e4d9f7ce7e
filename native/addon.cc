#include "addon.h"

#include "common.h"

namespace tl {

AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Object unwrapArg(Napi::Value v, const Napi::FunctionReference& ctor, const std::string& name, const char* what) {
  auto is = [&](const Napi::Value& x) { return x.IsObject() && x.As<Napi::Object>().InstanceOf(ctor.Value()); };
  if (is(v)) return v.As<Napi::Object>();
  if (v.IsObject()) {
    Napi::Value inner = v.As<Napi::Object>().Get("handle");
    if (is(inner)) return inner.As<Napi::Object>();
  }
  throw ArgError(name + " must be " + what);
}

}  // namespace tl

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new tl::AddonData());
  tl::InitMemory(env, exports);  // first: tensors made during init already use it
  tl::InitRuntime(env, exports);
  tl::InitTensorFunctions(env, exports);
  tl::InitModels(env, exports);
  tl::InitOptim(env, exports);
  tl::InitTrain(env, exports);
  tl::InitDistributed(env, exports);
  tl::InitCheckpoint(env, exports);
  tl::InitData(env, exports);
  return exports;
}

NODE_API_MODULE(torchline, Init)
