// torch.distributed's engine (c10d) for JS: a TCPStore rendezvous, a Gloo
// (CPU) or NCCL (CUDA, when this LibTorch has it) process group, collectives
// on their own thread, and the data-parallel hooks trainStep calls.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <map>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "addon.h"
#include "distributed/shared_memory.h"
#include "distributed/sync_batchnorm.h"
#include "executor.h"
#include "models/module.h"
#include "tensor.h"

namespace tl {

namespace {

using PG = c10::intrusive_ptr<c10d::ProcessGroup>;

// Broadcasts are coalesced into buckets of about this many bytes.
constexpr int64_t kBucketBytes = c10d::kDefaultBucketBytesCap;

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

// The shared-memory types of the tensors it can reduce; others go to Gloo.
std::optional<ShmDtype> shmDtype(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat: return ShmDtype::Float32;
    case c10::kDouble: return ShmDtype::Float64;
    case c10::kInt: return ShmDtype::Int32;
    case c10::kLong: return ShmDtype::Int64;
    case c10::kBFloat16: return ShmDtype::BFloat16;
    case c10::kHalf: return ShmDtype::Float16;
    default: return std::nullopt;
  }
}

bool shmCanReduce(const std::shared_ptr<SharedMemoryGroup>& shm, const torch::Tensor& t) {
  return shm && t.device().is_cpu() && t.layout() == c10::kStrided && t.is_contiguous() && shmDtype(t.scalar_type());
}

// Every rank learns whether every rank could map rank 0's segment, so all of
// them use it or none does (then Gloo does everything, as before). Returns
// null with the reason in `why` when not.
std::shared_ptr<SharedMemoryGroup> joinSharedMemory(const c10::intrusive_ptr<c10d::Store>& base, int rank, int world,
                                                    std::chrono::milliseconds timeout, std::string& why) {
  auto store = c10::make_intrusive<c10d::PrefixStore>("shm", base);
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  std::unique_ptr<SharedMemoryGroup> group;
  std::string mine;
  try {
    if (rank == 0) {
      try {
        group = SharedMemoryGroup::create(world, timeout);
        store->set("name", bytes(group->name()));
      } catch (...) {
        store->set("name", bytes(""));  // the others must not wait for a name that never comes
        throw;
      }
    } else {
      auto name = store->get("name");
      if (name.empty()) throw ShmError("rank 0 has no segment");
      group = SharedMemoryGroup::open(std::string(name.begin(), name.end()), rank, world, timeout);
    }
  } catch (const ShmError& e) {
    mine = e.what();
  }
  store->set("joined/" + std::to_string(rank), bytes(mine.empty() ? "ok" : mine));
  why.clear();
  for (int j = 0; j < world; j++) {
    auto v = store->get("joined/" + std::to_string(j));
    if (std::string s(v.begin(), v.end()); s != "ok" && why.empty()) why = "rank " + std::to_string(j) + ": " + s;
  }
  if (group) group->unlink();  // every rank has opened it (or given up)
  if (!why.empty()) return nullptr;
  group->startWatchingPeers();
  return std::shared_ptr<SharedMemoryGroup>(std::move(group));
}

// DDP's comm hook for ranks of one host: each gradient bucket is averaged
// through shared memory on the group's own thread (in bucket order, while
// backward goes on), the 1/world factor applied in the same pass.
class SharedMemoryHook : public c10d::CommHookInterface {
 public:
  SharedMemoryHook(std::shared_ptr<SharedMemoryGroup> shm, int world) : shm_(std::move(shm)), world_(world) {}
  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    torch::Tensor buf = bucket.getBufferRef();
    auto fut = c10::make_intrusive<c10::ivalue::Future>(c10::TensorType::get());
    shm_->submit({buf.data_ptr(), buf.numel(), *shmDtype(buf.scalar_type()), ShmOp::Sum, 1.0 / world_},
                 [fut, buf](std::exception_ptr err) {
                   if (err) fut->setError(err);
                   else fut->markCompleted(c10::IValue(buf));
                 });
    return fut;
  }
  torch::Tensor parseHookResult(const c10::IValue& result) override {
    return c10d::detail::parseCppCommHookResult(result);
  }

 private:
  std::shared_ptr<SharedMemoryGroup> shm_;
  int world_;
};

struct DataParallelOptions {
  bool findUnusedParameters = false;
  bool gradientAsBucketView = true;
  bool syncBatchNorm = false;
};

// DistributedDataParallel's engine for one model: c10d's Reducer registers a
// hook on each parameter's gradient accumulator; as backward produces
// gradients it copies them into flat buckets (divided by the world size on
// the way, as DDP does) and starts each bucket's all-reduce as soon as the
// bucket is full, while backward goes on computing the earlier layers.
// Backward ends by waiting for the last bucket; every gradient is then the
// average over ranks. With gradientAsBucketView the gradients are views into
// the buckets (no copy back, one gradient-sized buffer less); the fused
// optimizer, clipping and GradScaler only read or scale them in place.
class DataParallel : public GradSync {
 public:
  DataParallel(PG pg, std::shared_ptr<SharedMemoryGroup> shm, ModelHandle* model, DataParallelOptions o,
               std::chrono::milliseconds timeout)
      : pg_(std::move(pg)), shm_(std::move(shm)), model_(model), opts_(o), timeout_(timeout) {}
  ~DataParallel() override { drop(); }

  // On the model's thread: every rank takes rank 0's weights and buffers and
  // a Reducer over the parameters that require a gradient. Called at attach,
  // and again when the parameters changed since (moved, channels_last, a new
  // head, frozen or unfrozen): every rank changes its model the same way, so
  // every rank rebuilds in the same step.
  void build() {
    torch::NoGradGuard noGrad;
    std::vector<torch::Tensor> params;
    std::unordered_map<size_t, std::string> names;
    for (auto& [name, p] : model_->namedParameters())
      if (p.requires_grad()) {
        names[params.size()] = name;
        params.push_back(p);
      }
    std::vector<torch::Tensor> state;
    for (auto& e : model_->stateEntries()) state.push_back(e.second);
    if (params.empty())
      throw std::invalid_argument("data parallel: the model has no parameter that requires a gradient");
    c10::DeviceGuard deviceGuard(params[0].device());
    checkSameParams(params);
    broadcastCoalesced(pg_, state, timeout_);
    drop();
    // SyncBatchNorm: the model's BatchNorm layers take their training
    // statistics over every rank's batch (or their own again, without it).
    for (auto& mod : model_->module().modules())
      if (auto* bn = mod->as<Norm2dImpl>()) {
        if (!opts_.syncBatchNorm) bn->sync = nullptr;
        else
          // Once the group is destroyed the layer is a plain BatchNorm again.
          bn->sync = [pg = pg_, timeout = timeout_, closed = closed_](torch::nn::BatchNorm2dImpl& b,
                                                                       const torch::Tensor& x) {
            return *closed ? b.forward(x) : syncBatchNorm(pg, timeout, b, x);
          };
      }
    std::vector<bool> sparse(params.size(), false);
    // As DDP: without the unused-parameter search the first iteration uses one
    // bucket, and from the second on the Reducer regroups the parameters in
    // the order their gradients became ready (first bucket 1 MiB, then 25 MiB).
    std::vector<size_t> limits{SIZE_MAX};
    if (opts_.findUnusedParameters) limits = {size_t(c10d::kDefaultFirstBucketBytes), size_t(kBucketBytes)};
    auto buckets = std::get<0>(c10d::compute_bucket_assignment_by_size(params, limits, sparse));
    // Gradients become ready in reverse order of definition: the Reducer
    // reduces buckets in list order.
    std::reverse(buckets.begin(), buckets.end());
    reducer_ = std::make_shared<c10d::Reducer>(params, buckets, pg_, sparse, kBucketBytes, opts_.findUnusedParameters,
                                               opts_.gradientAsBucketView, names, c10d::kDefaultFirstBucketBytes,
                                               /*skip_all_reduce_unused_params=*/false,
                                               /*use_python_reducer=*/false, std::vector<int64_t>{});
    // Every rank decides alike: the group has shared memory on all or none,
    // and the ranks' parameters were just checked to match.
    // (Buckets are flat and contiguous whatever the parameters' layout.)
    if (shm_ && std::all_of(params.begin(), params.end(), [](const torch::Tensor& p) {
          return p.device().is_cpu() && shmDtype(p.scalar_type());
        }))
      reducer_->register_comm_hook(std::make_unique<SharedMemoryHook>(shm_, pg_->getSize()));
    logger_ = std::make_shared<c10d::Logger>(reducer_);
    reducer_->set_logger(logger_);
    signature_ = signature();
  }

  void beforeForward() override {
    if (*closed_)
      throw std::runtime_error(
          "the process group this model was attached to was destroyed; attach it to a live group "
          "(distributedDataParallel) to train it data parallel again");
    if (!reducer_ || signature() != signature_) build();
    // DDP's pre-forward: sample the last step's timings, then regroup the
    // buckets by gradient order once (a broadcast from rank 0, so every
    // rank gets the same buckets).
    logger_->set_runtime_stats_and_log();
    reducer_->prepare_for_forward();
    reducer_->rebuild_buckets();
  }

  void beforeBackward(const torch::Tensor& output) override {
    // The graph search for unused parameters starts from what backward starts from.
    reducer_->prepare_for_backward(opts_.findUnusedParameters ? std::vector<at::Tensor>{output}
                                                               : std::vector<at::Tensor>{});
  }

  void afterBackward() override {
    try {
      reducer_->check_finalized();
    } catch (const c10::Error& e) {
      failed();
      throw std::runtime_error(
          std::string("data parallel: some parameters got no gradient in this step, so their buckets were never "
                      "all-reduced and the step was not applied. Pass findUnusedParameters: true to "
                      "distributedDataParallel, or freeze them (requiresGrad) before training. c10d says: ") +
          e.what_without_backtrace());
    }
  }

  void failed() override {
    try {
      if (reducer_) reducer_->reset_state();
    } catch (...) {
    }
  }

  bool anyNonFinite(double loss) override {
    std::vector<torch::Tensor> flag{torch::full({1}, std::isfinite(loss) ? 0.0f : 1.0f)};
    waitFor(pg_->allreduce(flag, c10d::AllreduceOptions{}), timeout_);
    return flag[0].item<float>() > 0;
  }

  void broadcastBuffers(const std::vector<torch::Tensor>& buffers) override {
    broadcastCoalesced(pg_, buffers, timeout_);
  }

  void close() { *closed_ = true; }
  bool closed() const { return *closed_; }
  ModelHandle* model() const { return model_; }

  // The Reducer's buckets and DDP's runtime statistics of the last sampled
  // step (the first ten steps, then one in a hundred, as DDP samples them).
  // Read on the model's thread; turned into JS on the JS thread.
  struct Stats {
    std::vector<int64_t> bucketBytes;
    std::map<std::string, int64_t> ints;
  };
  Stats stats() const {
    Stats st;
    if (!reducer_) return st;
    for (const auto& b : reducer_->get_grad_buckets(/*return_zero_tensors=*/false))
      st.bucketBytes.push_back(b.getBuffer().numel() * b.getBuffer().element_size());
    st.ints = logger_->get_ddp_logging_data().ints_map;
    return st;
  }

 private:
  // The identity, storage and layout of every trainable parameter: a change
  // means the Reducer's buckets and hooks no longer fit the model.
  std::vector<int64_t> signature() const {
    std::vector<int64_t> sig;
    for (auto& e : model_->namedParameters()) {
      const auto& p = e.second;
      if (!p.requires_grad()) continue;
      sig.push_back(reinterpret_cast<intptr_t>(p.unsafeGetTensorImpl()));
      sig.push_back(reinterpret_cast<intptr_t>(p.data_ptr()));
      sig.push_back(static_cast<int64_t>(p.device().type()) * 1000 + p.device().index());
      for (auto st : p.strides()) sig.push_back(st);
    }
    return sig;
  }

  // DDP's check that every rank holds the same parameters (count, shapes,
  // strides). Every rank learns whether any rank failed, so all of them
  // throw instead of some waiting in a broadcast that will never match.
  void checkSameParams(const std::vector<torch::Tensor>& params) {
    std::string mine;
    try {
      c10d::verify_params_across_processes(pg_, params, std::nullopt);
    } catch (const c10::Error& e) {
      mine = e.what_without_backtrace();
    }
    std::vector<torch::Tensor> flag{torch::full({1}, mine.empty() ? 0.0f : 1.0f)};
    waitFor(pg_->allreduce(flag, c10d::AllreduceOptions{}), timeout_);
    if (flag[0].item<float>() > 0)
      throw std::invalid_argument("data parallel: the ranks' models differ: " +
                                  (mine.empty() ? std::string("another rank's parameters do not match rank 0's") : mine));
  }

  // Removes the Reducer's hooks first: ~Reducer would otherwise do it and may
  // throw, which a shared_ptr deleter must not.
  void drop() noexcept {
    try {
      logger_.reset();
      if (reducer_) reducer_->remove_autograd_hooks();
    } catch (...) {
    }
    reducer_.reset();
  }

  PG pg_;
  std::shared_ptr<SharedMemoryGroup> shm_;  // null: Gloo reduces the gradients
  ModelHandle* model_;  // owns this (gradSync)
  DataParallelOptions opts_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<c10d::Logger> logger_;
  std::vector<int64_t> signature_;
  // Shared with the SyncBatchNorm layers, which outlive a destroyed group.
  std::shared_ptr<std::atomic<bool>> closed_ = std::make_shared<std::atomic<bool>>(false);
};

Napi::Object statsToJs(Napi::Env env, const DataParallel::Stats& st) {
  auto o = Napi::Object::New(env);
  auto buckets = Napi::Array::New(env);
  for (auto b : st.bucketBytes) buckets.Set(buckets.Length(), static_cast<double>(b));
  o.Set("bucketBytes", buckets);
  auto get = [&](const char* k) -> double {
    auto it = st.ints.find(k);
    return it == st.ints.end() ? 0 : static_cast<double>(it->second);
  };
  o.Set("iteration", get("iteration"));
  o.Set("rebuiltBuckets", get("has_rebuilt_buckets") != 0);
  o.Set("forwardComputeNs", get("forward_compute_time"));
  o.Set("backwardComputeNs", get("backward_compute_time"));
  o.Set("backwardCommNs", get("backward_comm_time"));
  o.Set("backwardOverlapNs", get("backward_compute_comm_overlap_time"));
  // Offsets from backward's start: the first bucket's all-reduce starting,
  // backward's compute ending, the last all-reduce done.
  double t0 = get("backward_compute_time_start");
  o.Set("backwardCommStartNs", t0 ? get("backward_comm_time_start") - t0 : 0);
  o.Set("backwardComputeEndNs", t0 ? get("backward_compute_time_end") - t0 : 0);
  o.Set("backwardCommEndNs", t0 ? get("backward_comm_time_end") - t0 : 0);
  return o;
}

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
                                       InstanceMethod<&ProcessGroupHandle::SharedMemory>("sharedMemory"),
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
    wantShm_ = o.Get("sharedMemory").ToBoolean().Value();
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
      std::shared_ptr<SharedMemoryGroup> shm;
      std::string shmWhy = wantShm_ ? "a group of one rank" : "sharedMemory: false";
      if (wantShm_ && world_ > 1) shm = joinSharedMemory(store, rank_, world_, timeout_, shmWhy);
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
      return [this, pg, shm, shmWhy](Napi::Env env) -> Napi::Value {
        pg_ = pg;
        shm_ = shm;
        shmWhy_ = shm ? "" : shmWhy;
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

  // sharedMemory() -> { used, reason }: whether CPU all-reduces go through
  // shared memory, and why not when they do not.
  Napi::Value SharedMemory(const Napi::CallbackInfo& info) {
    auto o = Napi::Object::New(info.Env());
    o.Set("used", bool(shm_));
    o.Set("reason", shmWhy_);
    return o;
  }

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
    ShmOp sop = ShmOp::Sum;
    bool average = false;
    if (op == "sum") ao.reduceOp = c10d::ReduceOp::SUM;
    else if (op == "avg") average = true;
    else if (op == "max") ao.reduceOp = c10d::ReduceOp::MAX, sop = ShmOp::Max;
    else if (op == "min") ao.reduceOp = c10d::ReduceOp::MIN, sop = ShmOp::Min;
    else if (op == "product") ao.reduceOp = c10d::ReduceOp::PRODUCT, sop = ShmOp::Product;
    else throw std::invalid_argument("unknown reduce op '" + op + "': expected sum, avg, max, min or product");
    if (!t.is_contiguous()) throw std::invalid_argument("allReduce needs a contiguous tensor");
    // Checked before any rank sends a byte: after the sum it would be too late.
    if (average && !at::isFloatingType(t.scalar_type()))
      throw std::invalid_argument("allReduce 'avg' needs a floating-point tensor, not " +
                                  std::string(c10::toString(t.scalar_type())) + "; use 'sum'");
    auto pg = live();
    auto timeout = timeout_;
    if (shmCanReduce(shm_, t)) {
      // avg: the sum scaled by 1/world in the same pass.
      SharedMemoryGroup::Job job{nullptr, t.numel(), *shmDtype(t.scalar_type()), sop,
                                 average ? 1.0 / pg->getSize() : 1.0};
      return run(info, [shm = shm_, t, job]() mutable -> Finisher {
        job.data = t.data_ptr();
        shm->run(job);
        return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
      });
    }
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

  // attachModel(model, { broadcastBuffers, findUnusedParameters,
  // gradientAsBucketView }) -> Promise<void>: broadcasts rank 0's parameters
  // and buffers (every rank starts identical), then installs the Reducer
  // trainStep uses. It runs as a step of the model (on the model's thread,
  // the model busy meanwhile): a step queued after it starts from the
  // broadcast weights with the hooks in place, and nothing writes the
  // weights while they are being broadcast. The group keeps the model's JS
  // object alive until destroy().
  Napi::Value AttachModel(const Napi::CallbackInfo& info) {
    TL_GUARD_BEGIN
    ModelHandle* m = ModelHandle::From(info[0], "model");
    auto o = argObject(info, 1, "options");
    auto flag = [&](const char* k, bool dflt) {
      auto v = o.Get(k);
      return v.IsUndefined() ? dflt : v.ToBoolean().Value();
    };
    DataParallelOptions dp;
    dp.findUnusedParameters = flag("findUnusedParameters", false);
    dp.gradientAsBucketView = flag("gradientAsBucketView", true);
    dp.syncBatchNorm = flag("syncBatchNorm", false);
    m->requireIdle("attach the model to a process group");
    if (auto* old = dynamic_cast<DataParallel*>(m->gradSync.get()); old && !old->closed())
      throw std::runtime_error(
          "this model is already data parallel (attached to a process group); attach each model once");
    auto pg = live();
    auto sync = std::make_shared<DataParallel>(pg, shm_, m, dp, timeout_);
    sync->syncBuffers = flag("broadcastBuffers", true);
    attached_.push_back({std::make_unique<Napi::ObjectReference>(Napi::Persistent(info[0].As<Napi::Object>())), sync});
    return m->runStep(info, [m, sync]() -> Finisher {
      sync->build();
      m->gradSync = sync;  // read by the steps, which run on this same thread
      return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
    });
    TL_GUARD_END(info.Env())
  }

  // Steps already running finish; the next train step of an attached model
  // fails with a clear error instead of using a group the caller ended.
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    for (auto& a : attached_)
      if (auto s = a.sync.lock()) s->close();
    attached_.clear();
    pg_.reset();
    // Whatever waits for another rank in shared memory fails now; the
    // segment goes when the last attached model lets it go.
    if (shm_) shm_->abort("the process group was destroyed");
    shm_.reset();
    return info.Env().Undefined();
  }

  struct Attached {
    std::unique_ptr<Napi::ObjectReference> model;
    std::weak_ptr<DataParallel> sync;
  };
  std::vector<Attached> attached_;
  std::string backend_, addr_, prefix_;
  int rank_ = 0, world_ = 1, port_ = 0;
  bool agentStore_ = false, wantShm_ = true;
  std::chrono::milliseconds timeout_{1800000};
  PG pg_;
  std::shared_ptr<SharedMemoryGroup> shm_;
  std::string shmWhy_;
  std::unique_ptr<Executor> executor_;
};

  // dataParallelStats(model) -> Promise<object>, read on the model's thread.
Napi::Value DataParallelStats(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  ModelHandle* m = ModelHandle::From(info[0], "model");
  return m->runStep(info, [m]() -> Finisher {
    auto sync = std::dynamic_pointer_cast<DataParallel>(m->gradSync);
    if (!sync) throw std::invalid_argument("the model is not data parallel: call distributedDataParallel first");
    auto st = sync->stats();
    return [st](Napi::Env env) -> Napi::Value { return statsToJs(env, st); };
  });
  TL_GUARD_END(info.Env())
}

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) {
  ProcessGroupHandle::Init(env, exports);
  exports.Set("dataParallelStats", Napi::Function::New<DataParallelStats>(env, "dataParallelStats"));
}

}  // namespace tl
