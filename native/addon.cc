#include "addon.h"

namespace tl {

AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace tl

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new tl::AddonData());
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
