// Shared-memory all-reduce for the ranks of one host (see shared_memory.h).
//
// The segment: a header, one control block per rank (two round counters and
// the identity used to see it exit), then two sets of one slot per rank.
// A tensor is reduced in rounds of at most one slot's bytes, split into one
// part per rank. In round k, using slot set k % 2, rank r:
//   1. copies the parts other ranks reduce into its own slot, publishes
//      arrived = k + 1 and waits for every rank's;
//   2. reduces its own part over every rank (its tensor and the others'
//      slots), writes the result into its tensor and into its slot's part,
//      publishes reduced = k + 1 and waits for every rank's;
//   3. copies every other part's result out of its owner's slot.
// Waiting for every rank's `arrived` in round k also means each finished
// round k - 1, so nobody still reads the set round k + 1 will overwrite: two
// sets and two waits per round suffice. Every part is reduced by one rank in
// rank order, so every rank ends with the same bits.
#include "distributed/shared_memory.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <future>
#include <random>
#include <type_traits>
#include <vector>

namespace tl {

namespace {

constexpr uint64_t kMagic = 0x4d48534c4e484354ull;  // "TCHNLSHM"
constexpr uint32_t kLayout = 1;
// Ranks spin this long before sleeping on a futex: long enough for a peer
// running on another core to arrive, short enough not to starve a
// convolution sharing the core during an overlapped backward.
constexpr auto kSpin = std::chrono::microseconds(30);
constexpr auto kSleep = std::chrono::milliseconds(50);
// Before this the rank is assumed busy, not dead: no kill(2) per wait.
constexpr auto kWatchAfter = std::chrono::milliseconds(100);

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

#ifdef __linux__
// Not FUTEX_PRIVATE: the word is shared between processes.
void futexWait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::milliseconds timeout) {
  timespec ts{time_t(timeout.count() / 1000), long(timeout.count() % 1000) * 1000000};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}
void futexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}
#endif

uint64_t pidNamespace() {
  struct stat st;
  return ::stat("/proc/self/ns/pid", &st) == 0 ? uint64_t(st.st_ino) : 0;
}

size_t elemSize(ShmDtype t) {
  switch (t) {
    case ShmDtype::Float64:
    case ShmDtype::Int64: return 8;
    case ShmDtype::Float32:
    case ShmDtype::Int32: return 4;
    case ShmDtype::BFloat16:
    case ShmDtype::Float16: return 2;
  }
  return 1;
}

const char* dtypeName(ShmDtype t) {
  switch (t) {
    case ShmDtype::Float32: return "float32";
    case ShmDtype::Float64: return "float64";
    case ShmDtype::Int32: return "int32";
    case ShmDtype::Int64: return "int64";
    case ShmDtype::BFloat16: return "bfloat16";
    case ShmDtype::Float16: return "float16";
  }
  return "?";
}

const char* opName(ShmOp op) {
  switch (op) {
    case ShmOp::Sum: return "sum";
    case ShmOp::Product: return "product";
    case ShmOp::Min: return "min";
    case ShmOp::Max: return "max";
  }
  return "?";
}

// --- element types: stored type T, accumulated in A ---------------------------

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct BF16 {
  using T = uint16_t;
  using A = float;
  static A load(T v) { return floatOf(uint32_t(v) << 16); }
  // Round to nearest even, as c10::BFloat16; NaN stays a (quiet) NaN.
  static T store(A a) {
    uint32_t u = bitsOf(a);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
};

struct F16 {
  using T = uint16_t;
  using A = float;
  static A load(T h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float
      float v = float(m) * 5.9604644775390625e-08f;
      return sign ? -v : v;
    }
    if (e == 31) return floatOf(sign | 0x7f800000u | (m << 13));
    return floatOf(sign | ((e + 112) << 23) | (m << 13));
  }
  // Round to nearest even, as c10::Half.
  static T store(A f) {
    uint32_t x = bitsOf(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return uint16_t(sign | 0x7e00u);
    if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to infinity
    if (x < 0x38800000u) {  // below 2^-14: subnormal; adding 0.5 rounds at 2^-24 in the FPU
      float a = floatOf(x) + 0.5f;
      return uint16_t(sign | (bitsOf(a) - 0x3f000000u));
    }
    x += 0xc8000fffu + ((x >> 13) & 1u);  // rebias the exponent (-112) and round
    return uint16_t(sign | (x >> 13));
  }
};

template <class V>
struct Plain {
  using T = V;
  using A = V;
  static A load(T v) { return v; }
  static T store(A a) { return a; }
};

template <class A>
inline A combine(ShmOp op, A a, A b) {
  if constexpr (std::is_integral_v<A>) {
    using U = std::make_unsigned_t<A>;  // wraps on overflow instead of undefined behaviour
    switch (op) {
      case ShmOp::Sum: return A(U(a) + U(b));
      case ShmOp::Product: return A(U(a) * U(b));
      case ShmOp::Min: return b < a ? b : a;
      case ShmOp::Max: return b > a ? b : a;
    }
  } else {
    switch (op) {
      case ShmOp::Sum: return a + b;
      case ShmOp::Product: return a * b;
      // NaN wins, as torch.minimum / torch.maximum.
      case ShmOp::Min: return a != a ? a : (b != b || b < a) ? b : a;
      case ShmOp::Max: return a != a ? a : (b != b || b > a) ? b : a;
    }
  }
  return a;
}

// out1[i] = out2[i] = scale * (src[0][i] op ... op src[n-1][i]). One of the
// sources may be out1 itself: each block is read before it is written.
template <class E, ShmOp Op>
void reduceKernel(const std::vector<const uint8_t*>& srcs, uint8_t* out1, uint8_t* out2, int64_t n, double scale) {
  using T = typename E::T;
  using A = typename E::A;
  constexpr int64_t kBlock = 1024;
  A acc[kBlock];
  const bool scaled = Op == ShmOp::Sum && !std::is_integral_v<A> && scale != 1.0;
  const A s = A(scale);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const T* first = reinterpret_cast<const T*>(srcs[0]) + b;
    for (int64_t i = 0; i < m; i++) acc[i] = E::load(first[i]);
    for (size_t j = 1; j < srcs.size(); j++) {
      const T* x = reinterpret_cast<const T*>(srcs[j]) + b;
      for (int64_t i = 0; i < m; i++) acc[i] = combine<A>(Op, acc[i], E::load(x[i]));
    }
    if (scaled)
      for (int64_t i = 0; i < m; i++) acc[i] *= s;
    T* o1 = reinterpret_cast<T*>(out1) + b;
    T* o2 = reinterpret_cast<T*>(out2) + b;
    for (int64_t i = 0; i < m; i++) o1[i] = o2[i] = E::store(acc[i]);
  }
}

template <class E>
void reduceAs(ShmOp op, const std::vector<const uint8_t*>& srcs, uint8_t* out1, uint8_t* out2, int64_t n,
              double scale) {
  switch (op) {
    case ShmOp::Sum: return reduceKernel<E, ShmOp::Sum>(srcs, out1, out2, n, scale);
    case ShmOp::Product: return reduceKernel<E, ShmOp::Product>(srcs, out1, out2, n, scale);
    case ShmOp::Min: return reduceKernel<E, ShmOp::Min>(srcs, out1, out2, n, scale);
    case ShmOp::Max: return reduceKernel<E, ShmOp::Max>(srcs, out1, out2, n, scale);
  }
}

void reduce(ShmDtype t, ShmOp op, const std::vector<const uint8_t*>& srcs, uint8_t* out1, uint8_t* out2,
            int64_t n, double scale) {
  switch (t) {
    case ShmDtype::Float32: return reduceAs<Plain<float>>(op, srcs, out1, out2, n, scale);
    case ShmDtype::Float64: return reduceAs<Plain<double>>(op, srcs, out1, out2, n, scale);
    case ShmDtype::Int32: return reduceAs<Plain<int32_t>>(op, srcs, out1, out2, n, scale);
    case ShmDtype::Int64: return reduceAs<Plain<int64_t>>(op, srcs, out1, out2, n, scale);
    case ShmDtype::BFloat16: return reduceAs<BF16>(op, srcs, out1, out2, n, scale);
    case ShmDtype::Float16: return reduceAs<F16>(op, srcs, out1, out2, n, scale);
  }
}

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

// --- the segment's layout ----------------------------------------------------

struct SharedMemoryGroup::Header {
  uint64_t magic;
  uint32_t layout;
  uint32_t world;
  uint64_t slotBytes;
  uint64_t totalBytes;
};

struct SharedMemoryGroup::RankControl {
  struct alignas(64) Word {
    std::atomic<uint32_t> v;
  };
  Word phase[2];  // rounds this rank has finished step 1 (arrived) and step 2 (reduced) of
  Word waiters;   // other ranks asleep on this rank's counters: publish wakes them only then
  alignas(64) int32_t pid;
  uint64_t pidNamespace;
  // What the rank's current all-reduce is, checked against every other rank's.
  int64_t count;
  uint32_t dtype, op;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be plain 32-bit words");

namespace {
constexpr size_t kControlOffset = 64;
size_t slotsOffset(int world, size_t controlBytes) { return alignUp(kControlOffset + world * controlBytes, 4096); }
// Per rank and set: small enough that a round's data stays in the caches,
// the whole segment a few MiB whatever the world size.
size_t slotBytesFor(int world) {
  return std::max<size_t>(64 << 10, std::min<size_t>(1 << 20, (size_t(8) << 20) / size_t(world))) / 4096 * 4096;
}
}  // namespace

SharedMemoryGroup::RankControl& SharedMemoryGroup::control(int rank) const {
  return reinterpret_cast<RankControl*>(static_cast<uint8_t*>(base_) + kControlOffset)[rank];
}

uint8_t* SharedMemoryGroup::slot(int set, int rank) const {
  return static_cast<uint8_t*>(base_) + slotsOffset(world_, sizeof(RankControl)) +
         (size_t(set) * world_ + rank) * slotBytes_;
}

SharedMemoryGroup::SharedMemoryGroup(std::string name, int rank, int world, void* base, size_t bytes,
                                     std::chrono::milliseconds timeout)
    : name_(std::move(name)),
      rank_(rank),
      world_(world),
      base_(base),
      bytes_(bytes),
      slotBytes_(static_cast<Header*>(base)->slotBytes),
      timeout_(timeout),
      owner_(rank == 0) {
  auto& me = control(rank_);
  me.pid = int32_t(getpid());
  me.pidNamespace = pidNamespace();
  thread_ = std::make_unique<WorkerPool>(1);
}

SharedMemoryGroup::~SharedMemoryGroup() {
  abort("the process group was destroyed");
  thread_.reset();
  munmap(base_, bytes_);
  if (owner_) unlink();
}

std::unique_ptr<SharedMemoryGroup> SharedMemoryGroup::create(int world, std::chrono::milliseconds timeout) {
#ifndef __linux__
  throw ShmError("shared-memory collectives need Linux");
#else
  std::random_device rd;
  char hex[33];
  for (int i = 0; i < 4; i++) std::snprintf(hex + 8 * i, 9, "%08x", rd());
  std::string name = std::string("/dev/shm/torchline-") + hex;
  const size_t slotBytes = slotBytesFor(world);
  const size_t total = slotsOffset(world, sizeof(RankControl)) + 2 * size_t(world) * slotBytes;
  int fd = ::open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw ShmError(errnoText("cannot create " + name));
  auto fail = [&](const std::string& why) {
    ::close(fd);
    ::unlink(name.c_str());
    throw ShmError(why);
  };
  if (::ftruncate(fd, off_t(total)) != 0) fail(errnoText("cannot size " + name));
  // Reserve the pages now: on a full tmpfs a later first touch would be SIGBUS.
  if (int err = posix_fallocate(fd, 0, off_t(total)); err != 0 && err != EOPNOTSUPP && err != EINVAL)
    fail("cannot reserve " + std::to_string(total >> 10) + " KiB in /dev/shm: " + std::strerror(err));
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) fail(errnoText("cannot map " + name));
  ::close(fd);
  auto* h = static_cast<Header*>(base);
  h->layout = kLayout;
  h->world = uint32_t(world);
  h->slotBytes = slotBytes;
  h->totalBytes = total;
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kMagic;
  return std::unique_ptr<SharedMemoryGroup>(new SharedMemoryGroup(name, 0, world, base, total, timeout));
#endif
}

std::unique_ptr<SharedMemoryGroup> SharedMemoryGroup::open(const std::string& name, int rank, int world,
                                                           std::chrono::milliseconds timeout) {
#ifndef __linux__
  throw ShmError("shared-memory collectives need Linux");
#else
  if (name.rfind("/dev/shm/torchline-", 0) != 0) throw ShmError("not a torchline segment: " + name);
  int fd = ::open(name.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw ShmError(errnoText("cannot open " + name + " (is rank 0 on another host?)"));
  struct stat st;
  if (fstat(fd, &st) != 0 || size_t(st.st_size) < sizeof(Header)) {
    ::close(fd);
    throw ShmError(name + " is not a torchline segment");
  }
  const size_t total = size_t(st.st_size);
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) throw ShmError(errnoText("cannot map " + name));
  auto* h = static_cast<Header*>(base);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (h->magic != kMagic || h->layout != kLayout || h->world != uint32_t(world) || h->totalBytes != total ||
      h->slotBytes != slotBytesFor(world)) {
    munmap(base, total);
    throw ShmError(name + " does not match this group (another torchline version, or another world size)");
  }
  return std::unique_ptr<SharedMemoryGroup>(new SharedMemoryGroup(name, rank, world, base, total, timeout));
#endif
}

void SharedMemoryGroup::unlink() {
  if (owner_) ::unlink(name_.c_str());
  owner_ = false;
}

void SharedMemoryGroup::startWatchingPeers() {
  const uint64_t ns = control(rank_).pidNamespace;
  bool same = ns != 0;
  for (int j = 0; j < world_; j++) same = same && control(j).pidNamespace == ns;
  watchPeers_ = same;
}

void SharedMemoryGroup::abort(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(errorMu_);
    if (error_.empty()) error_ = why;
  }
  aborted_ = true;
}

void SharedMemoryGroup::submit(Job job, std::function<void(std::exception_ptr)> done) {
  thread_->push([this, job, done = std::move(done)] {
    std::exception_ptr err;
    try {
      {
        std::lock_guard<std::mutex> lock(errorMu_);
        if (!error_.empty())
          throw ShmError("the shared-memory all-reduce cannot run: " + error_ +
                         " (the ranks are out of step; destroy the group and start a new one)");
      }
      allreduce(job);
    } catch (const std::exception& e) {
      abort(e.what());
      err = std::current_exception();
    } catch (...) {
      abort("unknown error");
      err = std::current_exception();
    }
    done(err);
  });
}

void SharedMemoryGroup::run(Job job) {
  std::promise<void> finished;
  auto result = finished.get_future();
  submit(job, [&finished](std::exception_ptr err) {
    if (err) finished.set_exception(err);
    else finished.set_value();
  });
  result.get();
}

void SharedMemoryGroup::checkPeer(int peer) {
  const int32_t pid = control(peer).pid;
  if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH)
    throw ShmError("rank " + std::to_string(peer) + " (pid " + std::to_string(pid) +
                   ") exited during a shared-memory all-reduce");
}

void SharedMemoryGroup::publish(int phase, uint32_t value) {
  auto& me = control(rank_);
  me.phase[phase].v.store(value, std::memory_order_seq_cst);
#ifdef __linux__
  if (me.waiters.v.load(std::memory_order_seq_cst) > 0) futexWake(&me.phase[phase].v);
#endif
}

void SharedMemoryGroup::waitForAll(int phase, uint32_t value, std::chrono::steady_clock::time_point deadline) {
  // Wrap-safe: counters are 32-bit round numbers.
  auto reached = [value](uint32_t have) { return int32_t(have - value) >= 0; };
  for (int j = 0; j < world_; j++) {
    if (j == rank_) continue;
    auto& peer = control(j);
    auto& word = peer.phase[phase].v;
    if (reached(word.load(std::memory_order_acquire))) continue;
    const auto start = std::chrono::steady_clock::now();
    while (!reached(word.load(std::memory_order_acquire)) && std::chrono::steady_clock::now() - start < kSpin)
      for (int i = 0; i < 32; i++) cpuRelax();
    while (!reached(word.load(std::memory_order_acquire))) {
      if (aborted_) {
        std::lock_guard<std::mutex> lock(errorMu_);
        throw ShmError(error_);
      }
      const auto now = std::chrono::steady_clock::now();
      if (now > deadline)
        throw ShmError("a shared-memory all-reduce timed out after " + std::to_string(timeout_.count()) +
                       " ms waiting for rank " + std::to_string(j));
      if (watchPeers_ && now - start > kWatchAfter) checkPeer(j);
#ifdef __linux__
      peer.waiters.v.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t seen = word.load(std::memory_order_seq_cst);
      if (!reached(seen)) futexWait(&word, seen, kSleep);
      peer.waiters.v.fetch_sub(1, std::memory_order_seq_cst);
#else
      std::this_thread::sleep_for(std::chrono::microseconds(100));
#endif
    }
  }
}

void SharedMemoryGroup::allreduce(const Job& job) {
  const int64_t per = int64_t(slotBytes_ / elemSize(job.dtype));
  // Every call runs at least one round, so a rank with another count, type
  // or op is seen at the first wait instead of leaving the others waiting.
  int64_t off = 0;
  do {
    reduceRound(job, off, std::min(per, job.count - off));
    off += per;
  } while (off < job.count);
}

void SharedMemoryGroup::reduceRound(const Job& job, int64_t offset, int64_t len) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const int set = int(round_ & 1);
  const uint32_t target = round_ + 1;
  const size_t es = elemSize(job.dtype);
  uint8_t* data = static_cast<uint8_t*>(job.data) + size_t(offset) * es;
  // Parts start on cache-line boundaries: no two ranks write one line.
  const int64_t align = int64_t(64 / es);
  const int64_t part = std::max<int64_t>(align, ((len + world_ - 1) / world_ + align - 1) / align * align);
  auto lo = [&](int j) { return std::min(len, j * part); };
  auto hi = [&](int j) { return std::min(len, (j + 1) * part); };

  for (int j = 0; j < world_; j++)
    if (j != rank_ && hi(j) > lo(j))
      std::memcpy(slot(set, rank_) + lo(j) * es, data + lo(j) * es, size_t(hi(j) - lo(j)) * es);
  if (offset == 0) {
    auto& me = control(rank_);
    me.count = job.count;
    me.dtype = uint32_t(job.dtype);
    me.op = uint32_t(job.op);
  }
  publish(0, target);
  waitForAll(0, target, deadline);
  if (offset == 0)
    for (int j = 0; j < world_; j++) {
      const auto& other = control(j);
      if (other.count != job.count || other.dtype != uint32_t(job.dtype) || other.op != uint32_t(job.op))
        throw ShmError("all-reduce mismatch: rank " + std::to_string(rank_) + " has " + std::to_string(job.count) +
                       " " + dtypeName(job.dtype) + " elements (" + opName(job.op) + "), rank " + std::to_string(j) +
                       " has " + std::to_string(other.count) + " " + dtypeName(ShmDtype(other.dtype)) + " elements (" +
                       opName(ShmOp(other.op)) + ")");
    }

  if (hi(rank_) > lo(rank_)) {
    const int64_t at = lo(rank_);
    std::vector<const uint8_t*> srcs(world_);
    for (int j = 0; j < world_; j++) srcs[j] = (j == rank_ ? data : slot(set, j)) + at * es;
    reduce(job.dtype, job.op, srcs, data + at * es, slot(set, rank_) + at * es, hi(rank_) - at, job.scale);
  }
  publish(1, target);
  waitForAll(1, target, deadline);

  for (int j = 0; j < world_; j++)
    if (j != rank_ && hi(j) > lo(j))
      std::memcpy(data + lo(j) * es, slot(set, j) + lo(j) * es, size_t(hi(j) - lo(j)) * es);
  round_++;
}

}  // namespace tl
