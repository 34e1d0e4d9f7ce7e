// Process-wide LibTorch settings and what this build was made from.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/cpu/Utils.h>
#include <torch/version.h>

#include <fstream>
#include <mutex>
#include <sched.h>

#include "addon.h"
#include "common.h"
#include "tensor.h"

namespace tl {

namespace {

int availableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

// LibTorch starts with one intra-op thread on many Linux machines (13x slower
// on a ResNet step). Unless the user chose (TORCHLINE_NUM_THREADS or
// OMP_NUM_THREADS), use every core we may run on.
void applyDefaultThreads() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* mine = std::getenv("TORCHLINE_NUM_THREADS");
    const char* omp = std::getenv("OMP_NUM_THREADS");
    int n = 0;
    if (mine && *mine) n = std::atoi(mine);
    else if (omp && *omp) n = std::atoi(omp);
    if (n <= 0) n = availableCores();
    at::set_num_threads(n);
  });
}

// A line of at::show_config() that starts with `key`, without the key.
std::string configValue(const std::string& config, const std::string& key) {
  auto pos = config.find(key);
  if (pos == std::string::npos) return "";
  pos += key.size();
  auto end = config.find_first_of(",\n", pos);
  std::string v = config.substr(pos, end - pos);
  while (!v.empty() && (v.front() == ' ' || v.front() == '=')) v.erase(v.begin());
  return v;
}

// The BLAS library actually mapped into this process (Debian switches
// libblas.so.3 between reference BLAS and OpenBLAS via alternatives).
std::string loadedBlas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path.find("libblas") != std::string::npos || path.find("openblas") != std::string::npos ||
        path.find("libmkl") != std::string::npos || path.find("blis") != std::string::npos) {
      char resolved[4096];
      if (realpath(path.c_str(), resolved)) return resolved;
      return path;
    }
  }
  return "";
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  std::string config = at::show_config();
  o.Set("libtorch", Napi::String::New(env, TORCH_VERSION));
  o.Set("libtorchSource", Napi::String::New(env, TORCHLINE_LIBTORCH_SOURCE));
  o.Set("cxx11Abi", Napi::Boolean::New(env, _GLIBCXX_USE_CXX11_ABI != 0));
  o.Set("cxxStandard", Napi::Number::New(env, static_cast<double>(__cplusplus / 100 % 100)));
#ifdef USE_C10D_NCCL
  o.Set("ncclCompiled", Napi::Boolean::New(env, true));
#else
  o.Set("ncclCompiled", Napi::Boolean::New(env, false));
#endif
#ifdef TORCHLINE_CUDA
  o.Set("cudaCompiled", Napi::Boolean::New(env, true));
#else
  o.Set("cudaCompiled", Napi::Boolean::New(env, false));
#endif
  o.Set("cudaRuntime", Napi::String::New(env, configValue(config, "CUDA Runtime")));
  o.Set("cudnn", Napi::String::New(env, configValue(config, "CuDNN")));
  o.Set("blasCompiled", Napi::String::New(env, configValue(config, "BLAS_INFO")));
  o.Set("blasLoaded", Napi::String::New(env, loadedBlas()));
  o.Set("mkldnn", Napi::Boolean::New(env, at::hasMKLDNN()));
  o.Set("openmp", Napi::Boolean::New(env, at::get_parallel_info().find("OpenMP") != std::string::npos &&
                                               config.find("USE_OPENMP=ON") != std::string::npos));
  o.Set("parallelInfo", Napi::String::New(env, at::get_parallel_info()));
  o.Set("config", Napi::String::New(env, config));
  return o;
  TL_GUARD_END(info.Env())
}

// The CPU's capabilities as ATen's cpuinfo sees them (avx512, avx512_bf16,
// amx_bf16, ...): what precision 'auto' and doctor decide by. Booleans only.
Napi::Value CpuCapabilities(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto o = Napi::Object::New(info.Env());
  for (const auto& [k, v] : at::cpu::get_cpu_capabilities())
    if (v.isBool()) o.Set(k, v.toBool());
  o.Set("capability", Napi::String::New(info.Env(), at::get_cpu_capability()));
  return o;
  TL_GUARD_END(info.Env())
}

Napi::Value CudaIsAvailable(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
  TL_GUARD_END(info.Env())
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
  TL_GUARD_END(info.Env())
}

// cuda.synchronize(device?): waits for every queued kernel and copy (timing, or
// before reading memory that a non-blocking copy fills).
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  if (!torch::cuda::is_available()) throw std::runtime_error("cuda.synchronize: no CUDA device is available");
  int64_t index = info.Length() > 0 && !info[0].IsUndefined() ? argInt(info, 0, "device") : defaultCudaIndex();
  torch::cuda::synchronize(index);
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value CudaSetDevice(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  int64_t index = argInt(info, 0, "device");
  int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  if (index < 0 || index >= n)
    throw std::out_of_range("cuda.setDevice(" + std::to_string(index) + "): there are " + std::to_string(n) + " CUDA device(s)");
  setDefaultCudaIndex(static_cast<int>(index));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value CudaCurrentDevice(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), defaultCudaIndex());
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  int64_t n = argInt(info, 0, "threads");
  if (n < 1) throw std::invalid_argument("setNumThreads needs a positive count, got " + std::to_string(n));
  at::set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value AvailableCores(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), availableCores());
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  int64_t seed = argInt(info, 0, "seed");
  torch::manual_seed(static_cast<uint64_t>(seed));
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

// The default CPU generator's state (a uint8 tensor), for exact resume.
Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return TensorHandle::New(info.Env(), gen.get_state());
  TL_GUARD_END(info.Env())
}

Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto state = TensorHandle::From(info[0], "state");
  if (state.scalar_type() != torch::kUInt8 || state.dim() != 1)
    throw std::invalid_argument("RNG state must be a 1-D uint8 tensor, as getRngState() returns");
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
  return info.Env().Undefined();
  TL_GUARD_END(info.Env())
}

}  // namespace

void InitRuntime(Napi::Env env, Napi::Object exports) {
  applyDefaultThreads();
  exports.Set("buildInfo", Napi::Function::New<BuildInfo>(env, "buildInfo"));
  exports.Set("cudaIsAvailable", Napi::Function::New<CudaIsAvailable>(env, "cudaIsAvailable"));
  exports.Set("cudaDeviceCount", Napi::Function::New<CudaDeviceCount>(env, "cudaDeviceCount"));
  exports.Set("cpuCapabilities", Napi::Function::New<CpuCapabilities>(env, "cpuCapabilities"));
  exports.Set("cudaSynchronize", Napi::Function::New<CudaSynchronize>(env, "cudaSynchronize"));
  exports.Set("cudaSetDevice", Napi::Function::New<CudaSetDevice>(env, "cudaSetDevice"));
  exports.Set("cudaCurrentDevice", Napi::Function::New<CudaCurrentDevice>(env, "cudaCurrentDevice"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New<GetNumThreads>(env, "getNumThreads"));
  exports.Set("availableCores", Napi::Function::New<AvailableCores>(env, "availableCores"));
  exports.Set("manualSeed", Napi::Function::New<ManualSeed>(env, "manualSeed"));
  exports.Set("getRngState", Napi::Function::New<GetRngState>(env, "getRngState"));
  exports.Set("setRngState", Napi::Function::New<SetRngState>(env, "setRngState"));
}

}  // namespace tl
