#include "executor.h"

#include "common.h"

#include <ATen/Parallel.h>

namespace tl {

namespace {

struct Pending {
  Napi::Promise::Deferred deferred;
  Job job;
  Finisher finish;
  std::function<void()> settled;
  std::exception_ptr error;
  napi_threadsafe_function tsfn = nullptr;
};

// Runs on the JS thread once the job is done.
void settle(napi_env rawEnv, napi_value, void*, void* data) {
  auto* p = static_cast<Pending*>(data);
  if (rawEnv != nullptr) {
    Napi::Env env(rawEnv);
    Napi::HandleScope scope(env);
    if (p->settled) p->settled();
    if (p->error) {
      p->deferred.Reject(currentErrorAsJs(env, p->error).Value());
    } else {
      try {
        p->deferred.Resolve(p->finish(env));
      } catch (...) {
        p->deferred.Reject(currentErrorAsJs(env, std::current_exception()).Value());
      }
    }
  }
  delete p;
}

}  // namespace

Executor::Executor(std::string name) : name_(std::move(name)) {}

Napi::Promise Executor::submit(Napi::Env env, Job job, std::function<void()> settled) {
  auto* p = new Pending{Napi::Promise::Deferred::New(env), std::move(job), nullptr, std::move(settled), nullptr, nullptr};
  Napi::Promise promise = p->deferred.Promise();
  // The thread-safe function keeps the event loop alive while the job is
  // pending, so Node does not exit with a step in flight.
  napi_status st = napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, name_), 0, 1,
                                                   nullptr, nullptr, nullptr, settle, &p->tsfn);
  if (st != napi_ok) {
    if (p->settled) p->settled();
    delete p;
    throw Napi::Error::New(env, "torchline: cannot create a thread-safe function");
  }
  thread_.push([p] {
    // OpenMP thread counts are per thread: pick up the current setNumThreads().
    at::init_num_threads();
    try {
      p->finish = p->job();
    } catch (...) {
      p->error = std::current_exception();
    }
    p->job = nullptr;  // free captured tensors on the worker, before the hop back
    napi_threadsafe_function tsfn = p->tsfn;
    if (napi_call_threadsafe_function(tsfn, p, napi_tsfn_blocking) != napi_ok) delete p;
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  });
  return promise;
}

Executor& Executor::shared() {
  // Deliberately leaked: joining a worker from a static destructor at process
  // exit races LibTorch's own static teardown.
  static Executor* ex = new Executor("torchline:step");
  return *ex;
}

}  // namespace tl
