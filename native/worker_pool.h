// A fixed set of threads draining one FIFO of tasks. Torch-free, so plain
// translation units (the image pipeline) can use it too; the step executor is
// a pool of one.
#pragma once
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace tl {

// Thrown when the operating system refuses a thread (ulimit -u, memory,
// cgroup pids.max): the pool is then fully torn down, never half-started.
struct PoolStartError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class WorkerPool {
 public:
  explicit WorkerPool(int n) {
    // TORCHLINE_TEST_THREAD_LIMIT=k makes every pool refuse its thread k+1
    // as the OS would, so the failure path is tested without exhausting the
    // machine's real thread limit.
    static const int testLimit = [] {
      const char* v = std::getenv("TORCHLINE_TEST_THREAD_LIMIT");
      return v && *v ? std::atoi(v) : -1;
    }();
    try {
      for (int i = 0; i < n; i++) {
        if (testLimit >= 0 && i >= testLimit)
          throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
        threads_.emplace_back([this] { loop(); });
      }
    } catch (const std::exception& e) {
      // The threads already running must be joined: a joinable std::thread
      // destroyed during unwinding calls std::terminate.
      shutdown();
      throw PoolStartError("cannot start worker thread " + std::to_string(threads_.size() + 1) + " of " +
                           std::to_string(n) + ": " + e.what() +
                           " (lower numWorkers, or raise the process/thread limit)");
    }
  }
  // Runs what is queued, then joins.
  ~WorkerPool() { shutdown(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void push(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  int size() const { return int(threads_.size()); }

 private:
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      // Tasks settle their own errors; an exception escaping one is a bug,
      // but it must cost that task, not the process (std::terminate).
      try {
        task();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "torchline: internal error in a worker task: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "torchline: internal error in a worker task\n");
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tl
