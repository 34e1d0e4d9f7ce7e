// A caching allocator for LibTorch's CPU tensors, installed through c10's
// CPU allocator hook. glibc serves large blocks (a ResNet step's activations
// and gradients: tens of MiB each) with fresh mmaps and returns them on free,
// so every step page-faults its whole working set back in. Here blocks of
// 1 MiB and more are kept when freed and handed out again by size: after the
// first steps, a training loop allocates nothing from the kernel. Smaller
// blocks go straight to c10's allocation (glibc reuses those well).
//
// Frees arrive from any thread (the step executors, autograd's workers, the
// JS thread, GC finalizers): one mutex guards the cache. Idle blocks are kept
// up to TORCHLINE_CPU_CACHE_LIMIT bytes (default: a quarter of physical
// memory); emptyCache() returns them all. TORCHLINE_CPU_ALLOCATOR=system
// leaves c10's own allocator in place.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <malloc.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <unordered_map>

#include "addon.h"

namespace tl {

namespace {

constexpr size_t kMinCached = size_t(1) << 20;

struct Cache {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;  // cached-class blocks in use, by address
  std::multimap<size_t, void*> idle;       // freed blocks waiting for reuse, by size
  size_t held = 0, peakHeld = 0, idleBytes = 0, limit = 0;
  uint64_t hits = 0, misses = 0;
};

// Never destroyed: tensors freed during process exit still find it.
Cache& cache() {
  static Cache* c = [] {
    auto* c = new Cache();
    const char* env = std::getenv("TORCHLINE_CPU_CACHE_LIMIT");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    c->limit = env && *env ? std::strtoull(env, nullptr, 10) : size_t(pages) * size_t(page) / 4;
    return c;
  }();
  return *c;
}

// Sizes of 1 MiB and more round up to a sixteenth of their power of two: a
// few distinct sizes (good reuse), at most ~6% waste.
size_t roundSize(size_t n) {
  size_t p = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = std::max<size_t>(p / 16, 4096);
  return (n + step - 1) / step * step;
}

void release(void* p) {
  if (!p) return;
  auto& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.live.find(p);
    if (it != c.live.end()) {
      size_t size = it->second;
      c.live.erase(it);
      if (c.idleBytes + size <= c.limit) {
        c.idle.emplace(size, p);
        c.idleBytes += size;
        return;
      }
      c.held -= size;
    }
  }
  c10::free_cpu(p);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCached) {
      void* p = n ? c10::alloc_cpu(n) : nullptr;
      return {p, p, &release, c10::Device(c10::kCPU)};
    }
    auto& c = cache();
    size_t size = roundSize(n);
    {
      std::lock_guard<std::mutex> lock(c.mu);
      auto it = c.idle.find(size);
      if (it != c.idle.end()) {
        void* p = it->second;
        c.idle.erase(it);
        c.idleBytes -= size;
        c.live.emplace(p, size);
        c.hits++;
        return {p, p, &release, c10::Device(c10::kCPU)};
      }
    }
    void* p;
    try {
      p = c10::alloc_cpu(size);
    } catch (const c10::Error&) {
      emptyCpuCache();  // out of memory with idle blocks held: give them back and try once more
      p = c10::alloc_cpu(size);
    }
    std::lock_guard<std::mutex> lock(c.mu);
    c.live.emplace(p, size);
    c.held += size;
    c.peakHeld = std::max(c.peakHeld, c.held);
    c.misses++;
    return {p, p, &release, c10::Device(c10::kCPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
};

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  emptyCpuCache();
  return info.Env().Undefined();
}

// memoryStats() -> { installed, heldBytes, peakHeldBytes, idleBytes, limitBytes, hits, misses }
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  auto& c = cache();
  auto o = Napi::Object::New(info.Env());
  std::lock_guard<std::mutex> lock(c.mu);
  o.Set("installed", cpuCacheInstalled());
  o.Set("heldBytes", double(c.held));
  o.Set("peakHeldBytes", double(c.peakHeld));
  o.Set("idleBytes", double(c.idleBytes));
  o.Set("limitBytes", double(c.limit));
  o.Set("hits", double(c.hits));
  o.Set("misses", double(c.misses));
  return o;
}

bool installed = false;

}  // namespace

bool cpuCacheInstalled() { return installed; }

void emptyCpuCache() {
  auto& c = cache();
  std::multimap<size_t, void*> drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    drop.swap(c.idle);
    c.held -= c.idleBytes;
    c.idleBytes = 0;
  }
  for (auto& [size, p] : drop) c10::free_cpu(p);
  malloc_trim(0);
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  static CachingCpuAllocator allocator;
  const char* choice = std::getenv("TORCHLINE_CPU_ALLOCATOR");
  if (!(choice && std::string(choice) == "system") && !installed) {
    c10::SetCPUAllocator(&allocator, /*priority=*/1);
    installed = true;
  }
  exports.Set("emptyCache", Napi::Function::New<EmptyCache>(env, "emptyCache"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStats>(env, "memoryStats"));
}

}  // namespace tl
