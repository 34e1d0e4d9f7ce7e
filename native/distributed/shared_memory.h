// All-reduce between the ranks of one host through a shared-memory segment
// instead of Gloo's TCP ring over loopback: every byte then moves through the
// caches once or twice, not through the kernel's socket buffers four times.
// Torch-free (shared_memory.plain.cc); process_group.cc does the rendezvous
// over the c10d store and routes CPU all-reduces here.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "worker_pool.h"

namespace tl {

enum class ShmDtype { Float32, Float64, Int32, Int64, BFloat16, Float16 };
enum class ShmOp { Sum, Product, Min, Max };

struct ShmError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class SharedMemoryGroup {
 public:
  // Rank 0 creates a new segment under a random name; the others open it by
  // that name (passed through the store). Both throw ShmError when the
  // segment cannot be made or mapped (no /dev/shm, another host, a full tmpfs).
  static std::unique_ptr<SharedMemoryGroup> create(int world, std::chrono::milliseconds timeout);
  static std::unique_ptr<SharedMemoryGroup> open(const std::string& name, int rank, int world,
                                                 std::chrono::milliseconds timeout);
  ~SharedMemoryGroup();
  SharedMemoryGroup(const SharedMemoryGroup&) = delete;
  SharedMemoryGroup& operator=(const SharedMemoryGroup&) = delete;

  const std::string& name() const { return name_; }
  // Once every rank has opened the segment its name is removed: the memory
  // then goes away with the last process, even one that is killed.
  void unlink();
  // Called when every rank has joined: from now on a rank that exits is seen
  // (same PID namespace) instead of being waited for until the timeout.
  void startWatchingPeers();

  // In place on every rank, in the order submitted (which must be the same on
  // every rank, as for any collective). dst = scale * (x_0 op x_1 op ... op
  // x_{world-1}) with scale only for Sum of floating types. Runs on the
  // group's own thread; done(nullptr) or done(the error) is called there.
  // After a failure every later call fails too: the ranks are out of step.
  struct Job {
    void* data;
    int64_t count;
    ShmDtype dtype;
    ShmOp op;
    double scale;
  };
  void submit(Job job, std::function<void(std::exception_ptr)> done);
  // Submits and waits.
  void run(Job job);
  // Wakes whatever waits for another rank with this error; later jobs fail with it.
  void abort(const std::string& why);

 private:
  SharedMemoryGroup(std::string name, int rank, int world, void* base, size_t bytes, std::chrono::milliseconds timeout);
  void allreduce(const Job& job);
  void reduceRound(const Job& job, int64_t offset, int64_t len);
  void publish(int phase, uint32_t value);
  void waitForAll(int phase, uint32_t value, std::chrono::steady_clock::time_point deadline);
  void checkPeer(int peer);
  struct Header;
  struct RankControl;
  RankControl& control(int rank) const;
  uint8_t* slot(int set, int rank) const;

  std::string name_;
  int rank_, world_;
  void* base_;
  size_t bytes_;
  size_t slotBytes_;
  std::chrono::milliseconds timeout_;
  uint32_t round_ = 0;
  bool watchPeers_ = false;
  bool owner_;
  std::atomic<bool> aborted_{false};
  std::mutex errorMu_;
  std::string error_;
  // Declared last: its thread runs jobs that use everything above, so it is
  // joined first.
  std::unique_ptr<WorkerPool> thread_;
};

}  // namespace tl
