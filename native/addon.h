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

// The native object behind a JS argument: the handle itself, or a TS
// wrapper (Tensor, Module, Optimizer) that keeps it in `handle`. Anything
// else is a TypeError naming the argument and what it must be.
Napi::Object unwrapArg(Napi::Value v, const Napi::FunctionReference& ctor, const std::string& name, const char* what);

// Each concern registers its functions on the exports object.
void InitMemory(Napi::Env env, Napi::Object exports);
void InitRuntime(Napi::Env env, Napi::Object exports);
void InitTensorFunctions(Napi::Env env, Napi::Object exports);
void InitModels(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitTrain(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);
void InitCheckpoint(Napi::Env env, Napi::Object exports);
void InitData(Napi::Env env, Napi::Object exports);

// memory.cc: the caching CPU allocator (emptyCache() from JS).
void emptyCpuCache();
bool cpuCacheInstalled();

}  // namespace tl
