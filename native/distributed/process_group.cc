// torch.distributed's engine (c10d) for JS: a TCPStore rendezvous, a Gloo
// (CPU) or NCCL (CUDA, when this LibTorch has it) process group, collectives
// on their own thread, and the data-parallel hooks trainStep calls.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "addon.h"
#include "executor.h"
#include "models/module.h"
#include "tensor.h"

namespace tl {

namespace {

using PG = c10::intrusive_ptr<c10d::ProcessGroup>;

// Gradients are reduced in buckets of about this many bytes (DDP's default).
constexpr int64_t kBucketBytes = 25 << 20;

void waitFor(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) throw std::runtime_error("collective did not complete");
}

// Broadcasts from rank 0 in a few flat buckets (per dtype and device, about
// kBucketBytes each) instead of one collective per tensor: ResNet50 has ~160
// buffers and ~320 state tensors.
void broadcastCoalesced(const PG& pg, const std::vector<torch::Tensor>& tensors, std::chrono::milliseconds timeout) {
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    std::vector<torch::Tensor> flat;
    for (const auto& t : bucket) flat.push_back(t.reshape({-1}));
    std::vector<torch::Tensor> one{torch::cat(flat)};
    waitFor(pg->broadcast(one, c10d::BroadcastOptions{}), timeout);
    int64_t off = 0;
    for (auto& t : bucket) {
      t.copy_(one[0].narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
    bucket.clear();
    bytes = 0;
  };
  for (const auto& t : tensors) {
    if (!bucket.empty() && (t.scalar_type() != bucket[0].scalar_type() || t.device() != bucket[0].device())) flush();
    bucket.push_back(t);
    bytes += t.numel() * t.element_size();
    if (bytes >= kBucketBytes) flush();
  }
  flush();
}

class DataParallel : public GradSync {
 public:
  DataParallel(PG pg, std::chrono::milliseconds timeout) : pg_(std::move(pg)), timeout_(timeout) {}

  // Flattens gradients into buckets (per dtype/device), all-reduces each
  // bucket (sum), divides by the world size and copies back.
  void averageGradients(const std::vector<torch::Tensor>& params) override {
    torch::NoGradGuard noGrad;
    const double world = pg_->getSize();
    std::vector<torch::Tensor> bucket;
    int64_t bytes = 0;
    auto flush = [&] {
      if (bucket.empty()) return;
      std::vector<torch::Tensor> flat{torch::cat(flattenAll(bucket))};
      waitFor(pg_->allreduce(flat, c10d::AllreduceOptions{}), timeout_);
      flat[0].div_(world);
      int64_t off = 0;
      for (auto& g : bucket) {
        g.copy_(flat[0].narrow(0, off, g.numel()).view_as(g));
        off += g.numel();
      }
      bucket.clear();
      bytes = 0;
    };
    for (const auto& p : params) {
      if (!p.requires_grad()) continue;
      // A parameter without a gradient still takes part (as zeros), so every
      // rank reduces the same buckets in the same order.
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      auto g = p.grad();
      if (!bucket.empty() && (g.scalar_type() != bucket[0].scalar_type() || g.device() != bucket[0].device())) flush();
      bucket.push_back(g);
      bytes += g.numel() * g.element_size();
      if (bytes >= kBucketBytes) flush();
    }
    flush();
  }

  bool anyNonFinite(double loss) override {
    std::vector<torch::Tensor> flag{torch::full({1}, std::isfinite(loss) ? 0.0f : 1.0f)};
    waitFor(pg_->allreduce(flag, c10d::AllreduceOptions{}), timeout_);
    return flag[0].item<float>() > 0;
  }

  void broadcastBuffers(const std::vector<torch::Tensor>& buffers) override {
    broadcastCoalesced(pg_, buffers, timeout_);
  }

 private:
  static std::vector<torch::Tensor> flattenAll(const std::vector<torch::Tensor>& ts) {
    std::vector<torch::Tensor> out;
    out.reserve(ts.size());
    for (const auto& t : ts) out.push_back(t.reshape({-1}));
    return out;
  }
  PG pg_;
  std::chrono::milliseconds timeout_;
};

class ProcessGroupHandle : public Napi::ObjectWrap<ProcessGroupHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "ProcessGroupHandle",
                                   {
                                       InstanceMethod<&ProcessGroupHandle::Connect>("connect"),
                                       InstanceMethod<&ProcessGroupHandle::AllReduce>("allReduce"),
                                       InstanceMethod<&ProcessGroupHandle::Broadcast>("broadcast"),
                                       InstanceMethod<&ProcessGroupHandle::Barrier>("barrier"),
                                       InstanceMethod<&ProcessGroupHandle::AttachModel>("attachModel"),
                                       InstanceMethod<&ProcessGroupHandle::Destroy>("destroy"),
                                       InstanceMethod<&ProcessGroupHandle::Backend>("backend"),
                                   });
    exports.Set("ProcessGroupHandle", f);
  }

  // new ProcessGroupHandle({ backend, rank, worldSize, masterAddr, masterPort, timeoutMs, agentStore, storePrefix })
  // only records the options; connect() joins the group off the JS thread
  // (the rendezvous waits for every rank, up to the timeout).
  explicit ProcessGroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupHandle>(info) {
    TL_GUARD_BEGIN
    auto o = argObject(info, 0, "options");
    backend_ = o.Get("backend").ToString().Utf8Value();
    rank_ = o.Get("rank").ToNumber().Int32Value();
    world_ = o.Get("worldSize").ToNumber().Int32Value();
    addr_ = o.Get("masterAddr").ToString().Utf8Value();
    port_ = o.Get("masterPort").ToNumber().Int32Value();
    timeout_ = std::chrono::milliseconds(o.Get("timeoutMs").ToNumber().Int64Value());
    agentStore_ = o.Get("agentStore").ToBoolean().Value();
    prefix_ = o.Get("storePrefix").ToString().Utf8Value();
    if (backend_ != "gloo" && backend_ != "nccl")
      throw std::invalid_argument("unknown backend '" + backend_ + "': expected 'gloo' or 'nccl'");
#ifndef USE_C10D_NCCL
    if (backend_ == "nccl")
      throw std::invalid_argument("backend 'nccl' needs a LibTorch built with NCCL (a CUDA build); use 'gloo'");
#endif
    executor_ = std::make_unique<Executor>("torchline:collectives");
    TL_GUARD_END(info.Env())
  }

 private:
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    if (pg_) throw std::runtime_error("already connected");
    return run(info, [this]() -> Finisher {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(port_);
      // Under torchrun the elastic agent already serves the store: every rank is a client.
      so.isServer = !agentStore_ && rank_ == 0;
      so.numWorkers = agentStore_ ? c10::nullopt : c10::optional<std::size_t>(world_);
      so.waitWorkers = !agentStore_;
      so.timeout = timeout_;
      auto tcp = c10::make_intrusive<c10d::TCPStore>(addr_, so);
      auto store = c10::make_intrusive<c10d::PrefixStore>(prefix_, tcp);
      // In LibTorch 2.x Gloo and NCCL are c10d::Backends behind a ProcessGroup
      // that routes each collective by the tensors' device. Gloo always serves
      // CPU tensors (flags, barriers, numbers), NCCL CUDA tensors when chosen.
      auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank_, world_);
      auto gopts = c10d::ProcessGroupGloo::Options::create();
      gopts->timeout = timeout_;
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (addr_ == "localhost" || addr_.rfind("127.", 0) == 0)
        gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else gopts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      // Each backend gets its own key space in the store, as torch.distributed does.
      auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("gloo", store), rank_, world_, gopts);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
      if (backend_ == "nccl") {
#ifdef USE_C10D_NCCL
        auto nopts = c10d::ProcessGroupNCCL::Options::create();
        nopts->timeout = timeout_;
        auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
            c10::make_intrusive<c10d::PrefixStore>("nccl", store), rank_, world_, nopts);
        pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
        pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#endif
      }
      return [this, pg](Napi::Env env) -> Napi::Value {
        pg_ = pg;
        return env.Undefined();
      };
    });
    TL_GUARD_END(info.Env())
  }

  PG live() const {
    if (!pg_) throw std::runtime_error("the process group was destroyed");
    return pg_;
  }

  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend_); }

  Napi::Promise run(const Napi::CallbackInfo& info, Job job) {
    auto* keep = new Napi::ObjectReference(Napi::Persistent(info.This().As<Napi::Object>()));
    return executor_->submit(info.Env(), std::move(job), [keep] { delete keep; });
  }

  // allReduce(tensor, op) -> Promise<void>, in place; op: sum | avg | max | min | product.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    auto t = TensorHandle::From(info[0], "tensor");
    std::string op = info.Length() > 1 ? argString(info, 1, "op") : "sum";
    c10d::AllreduceOptions ao;
    bool average = false;
    if (op == "sum") ao.reduceOp = c10d::ReduceOp::SUM;
    else if (op == "avg") average = true;
    else if (op == "max") ao.reduceOp = c10d::ReduceOp::MAX;
    else if (op == "min") ao.reduceOp = c10d::ReduceOp::MIN;
    else if (op == "product") ao.reduceOp = c10d::ReduceOp::PRODUCT;
    else throw std::invalid_argument("unknown reduce op '" + op + "': expected sum, avg, max, min or product");
    if (!t.is_contiguous()) throw std::invalid_argument("allReduce needs a contiguous tensor");
    auto pg = live();
    auto timeout = timeout_;
    return run(info, [pg, t, ao, average, timeout]() -> Finisher {
      c10::DeviceGuard deviceGuard(t.device());
      std::vector<torch::Tensor> v{t};
      waitFor(pg->allreduce(v, ao), timeout);
      if (average) t.div_(pg->getSize());
      return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    });
    TL_GUARD_END(info.Env())
  }

  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    auto t = TensorHandle::From(info[0], "tensor");
    int64_t src = info.Length() > 1 ? argInt(info, 1, "src") : 0;
    auto pg = live();
    if (src < 0 || src >= pg->getSize()) throw std::out_of_range("src rank " + std::to_string(src) + " is not in the group");
    c10d::BroadcastOptions bo;
    bo.rootRank = src;
    auto timeout = timeout_;
    return run(info, [pg, t, bo, timeout]() -> Finisher {
      c10::DeviceGuard deviceGuard(t.device());
      std::vector<torch::Tensor> v{t};
      waitFor(pg->broadcast(v, bo), timeout);
      return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    });
    TL_GUARD_END(info.Env())
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    auto pg = live();
    auto timeout = timeout_;
    return run(info, [pg, timeout]() -> Finisher {
      // A barrier is an all-reduce of one element: Gloo's own barrier has no timeout per call.
      std::vector<torch::Tensor> v{torch::zeros({1})};
      waitFor(pg->allreduce(v, c10d::AllreduceOptions{}), timeout);
      return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    });
    TL_GUARD_END(info.Env())
  }

  // attachModel(model, broadcastBuffers) -> Promise<void>: broadcasts rank 0's
  // parameters and buffers (every rank starts identical), then installs the
  // data-parallel hooks trainStep uses. It runs as a step of the model (on
  // the model's thread, the model busy meanwhile): a step queued after it
  // starts from the broadcast weights with the hooks in place, and nothing
  // writes the weights while they are being broadcast.
  Napi::Value AttachModel(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    ModelHandle* m = ModelHandle::From(info[0], "model");
    bool syncBuffers = argBool(info, 1, "broadcastBuffers");
    m->requireIdle("attach the model to a process group");
    auto pg = live();
    auto sync = std::make_shared<DataParallel>(pg, timeout_);
    sync->syncBuffers = syncBuffers;
    std::vector<torch::Tensor> state;
    for (auto& e : m->stateEntries()) state.push_back(e.second);
    auto timeout = timeout_;
    return m->runStep(info, [m, pg, sync, state, timeout]() -> Finisher {
      if (!state.empty()) {
        c10::DeviceGuard deviceGuard(state[0].device());
        broadcastCoalesced(pg, state, timeout);
      }
      m->gradSync = sync;  // read by the steps, which run on this same thread
      return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    });
    TL_GUARD_END(info.Env())
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    pg_.reset();
    return info.Env().Undefined();
  }

  std::string backend_, addr_, prefix_;
  int rank_ = 0, world_ = 1, port_ = 0;
  bool agentStore_ = false;
  std::chrono::milliseconds timeout_{1800000};
  PG pg_;
  std::unique_ptr<Executor> executor_;
};

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) { ProcessGroupHandle::Init(env, exports); }

}  // namespace tl
