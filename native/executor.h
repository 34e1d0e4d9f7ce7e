// Long native work (training steps, evaluation, big tensor ops) runs on
// dedicated threads, never on the JS thread and never on the libuv pool, so a
// multi-second step cannot starve fs reads or sharp decodes. Results come back
// to JS through a thread-safe function that settles a Promise.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "worker_pool.h"

namespace tl {

// What a job hands back to the JS thread: builds the resolved value there.
using Finisher = std::function<Napi::Value(Napi::Env)>;
// The work itself; runs on the executor's thread and may throw.
using Job = std::function<Finisher()>;

class Executor {
 public:
  explicit Executor(std::string name);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues the job in FIFO order and returns a Promise for its result.
  // A job that throws rejects the Promise with the translated error.
  // `settled`, if given, runs on the JS thread before the Promise settles,
  // whether the job succeeded or not (release busy flags, references).
  Napi::Promise submit(Napi::Env env, Job job, std::function<void()> settled = nullptr);

  // The process-wide executor used when no model-specific one is given.
  static Executor& shared();

 private:
  std::string name_;
  WorkerPool thread_{1};
};

}  // namespace tl
