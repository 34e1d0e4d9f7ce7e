// Per-environment state of the addon (constructors other files need).
#pragma once
#include <napi.h>

namespace tl {

struct AddonData {
  Napi::FunctionReference tensorCtor;
  Napi::FunctionReference modelCtor;
  Napi::FunctionReference optimizerCtor;
};

AddonData& addonData(Napi::Env env);

// Each concern registers its functions on the exports object.
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitTensorFunctions(Napi::Env env, Napi::Object exports);
void InitModels(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitTrain(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);
void InitCheckpoint(Napi::Env env, Napi::Object exports);
void InitData(Napi::Env env, Napi::Object exports);

}  // namespace tl
