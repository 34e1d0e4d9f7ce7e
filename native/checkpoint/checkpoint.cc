// The checkpoint layer's native helpers, measured to matter for a 300 MB
// ResNet50 + Adam checkpoint: loading reads every storage straight from the
// file into a fresh tensor's memory (one copy, as PyTorch does) on a few
// threads, with CRC-32s by carry-less multiplication; saving writes from
// tensor memory; saveAsync copies tensors on the step executor. Views of a
// storage become as_strided views sharing it, as in PyTorch. All parsing and
// validation of the (hostile) file stays in TypeScript (lib/checkpoint/):
// this code only receives offsets and sizes already checked against the file.
#include "../addon.h"
#include "../common.h"
#include "../executor.h"
#include "../tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

namespace tl {

namespace {

// ---- CRC-32 (zip's polynomial), slice-by-8 ---------------------------------
// Our own: LibTorch does not export one and linking zlib is not worth it.

struct CrcTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  CrcTables() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
      for (int s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
};
const CrcTables kCrc;

// Table-driven update of the running (inverted) CRC state.
uint32_t crcTable(uint32_t c, const uint8_t* p, size_t n) {
  const auto& t = kCrc.t;
  while (n && (reinterpret_cast<uintptr_t>(p) & 7)) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8), n--;
  while (n >= 8) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + 4, 4);
    a ^= c;
    c = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^ t[3][b & 0xff] ^
        t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TL_CRC_CLMUL 1
// Carry-less multiplication folding (Gopal et al., "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ", Intel 2009), bit-reflected constants
// for the zip polynomial. ~10x the table's speed. `n` >= 64, a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) uint32_t crcClmul(uint32_t crc, const uint8_t* buf, size_t n) {
  alignas(16) static const uint64_t k1k2[] = {0x0154442bd4, 0x01c6e41596};
  alignas(16) static const uint64_t k3k4[] = {0x01751997d0, 0x00ccaa009e};
  alignas(16) static const uint64_t k5k0[] = {0x0163cd6124, 0x0000000000};
  alignas(16) static const uint64_t poly[] = {0x01db710641, 0x01f7011641};
  auto ld = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;
  x1 = _mm_xor_si128(ld(buf), _mm_cvtsi32_si128(static_cast<int>(crc)));
  x2 = ld(buf + 16);
  x3 = ld(buf + 32);
  x4 = ld(buf + 48);
  x0 = _mm_load_si128(reinterpret_cast<const __m128i*>(k1k2));
  buf += 64;
  n -= 64;
  while (n >= 64) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
    x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
    x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
    x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), ld(buf));
    x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), ld(buf + 16));
    x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), ld(buf + 32));
    x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), ld(buf + 48));
    buf += 64;
    n -= 64;
  }
  // four lanes -> one
  x0 = _mm_load_si128(reinterpret_cast<const __m128i*>(k3k4));
  for (__m128i next : {x2, x3, x4}) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, next), x5);
  }
  while (n >= 16) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, ld(buf)), x5);
    buf += 16;
    n -= 16;
  }
  // 128 -> 64 bits
  x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
  x3 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  x0 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k5k0));
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_and_si128(x1, x3);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x00), x2);
  // Barrett reduction to 32 bits
  x0 = _mm_load_si128(reinterpret_cast<const __m128i*>(poly));
  x2 = _mm_and_si128(x1, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
  x2 = _mm_and_si128(x2, x3);
  x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
  x1 = _mm_xor_si128(x1, x2);
  return static_cast<uint32_t>(_mm_extract_epi32(x1, 1));
}

// Used only when the CPU has the instructions and the folding agrees with the
// table on a self-test buffer (a wrong constant must cost speed, never data).
bool clmulUsable() {
  static const bool ok = [] {
    if (!__builtin_cpu_supports("pclmul") || !__builtin_cpu_supports("sse4.1")) return false;
    std::vector<uint8_t> b(4096 + 48);
    uint32_t x = 12345;
    for (auto& v : b) v = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 16);
    for (size_t n : {64, 80, 1024, 4096 + 48}) {
      size_t k = n & ~size_t(15);
      if (crcClmul(0xFFFFFFFFu, b.data(), k) != crcTable(0xFFFFFFFFu, b.data(), k)) return false;
    }
    return true;
  }();
  return ok;
}
#endif

// zlib's convention: crc32(prev, ...) continues a CRC-32 that was `prev`.
uint32_t crc32(const uint8_t* p, size_t n, uint32_t prev = 0) {
  uint32_t c = prev ^ 0xFFFFFFFFu;
#ifdef TL_CRC_CLMUL
  if (n >= 64 && clmulUsable()) {
    size_t k = n & ~size_t(15);
    c = crcClmul(c, p, k);
    p += k;
    n -= k;
  }
#endif
  return crcTable(c, p, n) ^ 0xFFFFFFFFu;
}

// ---- batch storage reader ------------------------------------------------------

// What TypeScript has already validated: each storage's bytes lie inside the
// file, its size is numel * element size. The reader trusts only that.
struct ReadJob {
  int fd = -1;  // owned by the caller, open until the read completes
  std::string name;
  std::vector<int64_t> offsets, nbytes, crcs;
  std::vector<c10::ScalarType> dtypes;
  // Per storage: the final shape when a single contiguous tensor covers it
  // (the common case: no separate view), else empty for a 1-D storage.
  std::vector<std::vector<int64_t>> shapes;
  std::vector<bool> hasShape;
  bool verify = true;
  int threads = 2;
};

struct ReadResult {
  std::vector<torch::Tensor> tensors;
  int64_t badCrc = -1;  // index of the first storage whose CRC-32 mismatched
};

// Reads every storage from the file straight into a fresh tensor, on a few
// threads (page faults and copies dominate; CRC-32s run on the same threads
// while the bytes are still in cache).
ReadResult readStorages(const ReadJob& job) {
  ReadResult r;
  size_t n = job.offsets.size();
  r.tensors.resize(n);
  for (size_t i = 0; i < n; i++) {
    int64_t elem = c10::elementSize(job.dtypes[i]);
    auto opts = torch::TensorOptions().dtype(job.dtypes[i]);
    if (job.hasShape[i]) {
      r.tensors[i] = torch::empty(job.shapes[i], opts);
      if (r.tensors[i].numel() * elem != job.nbytes[i]) throw std::invalid_argument("shape does not match the storage size");
    } else {
      r.tensors[i] = torch::empty({job.nbytes[i] / elem}, opts);
    }
  }
  int fd = job.fd;
  std::atomic<size_t> next{0};
  std::atomic<int64_t> bad{-1};
  std::mutex errMu;
  std::string err;
  auto work = [&]() {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= n) return;
      auto* dst = static_cast<uint8_t*>(r.tensors[i].data_ptr());
      size_t len = static_cast<size_t>(job.nbytes[i]);
#ifdef MADV_HUGEPAGE
      // Big storages: ask for huge pages, so filling them faults 512x less often.
      constexpr uintptr_t kHuge = 2u << 20;
      if (len >= 2 * kHuge) {
        uintptr_t b = (reinterpret_cast<uintptr_t>(dst) + kHuge - 1) & ~(kHuge - 1);
        uintptr_t e = (reinterpret_cast<uintptr_t>(dst) + len) & ~(kHuge - 1);
        if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
      }
#endif
      size_t done = 0;
      while (done < len) {
        ssize_t k = ::pread(fd, dst + done, len - done, job.offsets[i] + static_cast<off_t>(done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          std::lock_guard<std::mutex> lock(errMu);
          if (err.empty()) err = job.name + (k < 0 ? std::string(": ") + std::strerror(errno) : ": file shrank while reading");
          next.store(n);
          return;
        }
        done += static_cast<size_t>(k);
      }
      if (job.verify && crc32(dst, len) != static_cast<uint32_t>(job.crcs[i])) {
        int64_t cur = bad.load();
        while ((cur < 0 || static_cast<int64_t>(i) < cur) && !bad.compare_exchange_weak(cur, static_cast<int64_t>(i))) {
        }
      }
    }
  };
  int threads = std::max(1, std::min<int>(job.threads, static_cast<int>(n)));
  std::vector<std::thread> pool;
  // A thread the OS refuses only costs speed: the threads that started (and
  // this one) share the work.
  try {
    for (int k = 1; k < threads; k++) pool.emplace_back(work);
  } catch (const std::exception&) {
  }
  work();
  for (auto& t : pool) t.join();
  if (!err.empty()) throw std::runtime_error(err);
  r.badCrc = bad.load();
  return r;
}

ReadJob readJobArgs(const Napi::CallbackInfo& info) {
  ReadJob job;
  // The descriptor the TypeScript parser read the directory from: the same
  // file even if the path is replaced meanwhile (an atomic save renames over it).
  job.fd = static_cast<int>(argInt(info, 0, "fd"));
  job.name = argString(info, 6, "name");
  job.offsets = argShape(info, 1, "offsets");
  job.nbytes = argShape(info, 2, "nbytes");
  auto dtypes = info[3];
  if (!dtypes.IsArray()) throw ArgError("dtypes must be an array of dtype names");
  auto a = dtypes.As<Napi::Array>();
  for (uint32_t k = 0; k < a.Length(); k++) job.dtypes.push_back(dtypeFromName(a.Get(k).ToString().Utf8Value()));
  job.verify = !info[4].IsNull() && !info[4].IsUndefined();
  if (job.verify) job.crcs = argShape(info, 4, "crcs");
  job.threads = static_cast<int>(argInt(info, 5, "threads"));
  size_t n = job.offsets.size();
  job.shapes.resize(n);
  job.hasShape.assign(n, false);
  if (!info[7].IsArray()) throw ArgError("shapes must be an array");
  auto shapes = info[7].As<Napi::Array>();
  if (shapes.Length() != n) throw ArgError("shapes must have one entry per storage");
  for (uint32_t k = 0; k < n; k++) {
    Napi::Value sh = shapes.Get(k);
    if (sh.IsNull()) continue;
    if (!sh.IsArray()) throw ArgError("each shape must be an array or null");
    auto a = sh.As<Napi::Array>();
    for (uint32_t d = 0; d < a.Length(); d++) {
      double v = a.Get(d).ToNumber().DoubleValue();
      if (v < 0 || v != static_cast<double>(static_cast<int64_t>(v))) throw ArgError("bad shape");
      job.shapes[k].push_back(static_cast<int64_t>(v));
    }
    job.hasShape[k] = true;  // [] is a 0-d tensor
  }
  if (job.nbytes.size() != n || job.dtypes.size() != n || (job.verify && job.crcs.size() != n))
    throw ArgError("offsets, nbytes, dtypes and crcs must have the same length");
  for (size_t i = 0; i < n; i++)
    if (job.nbytes[i] % c10::elementSize(job.dtypes[i]) != 0) throw ArgError("nbytes must be a multiple of the element size");
  return job;
}

Napi::Value resultToJs(Napi::Env env, const ReadResult& r) {
  auto handles = Napi::Array::New(env, r.tensors.size());
  for (size_t i = 0; i < r.tensors.size(); i++) handles.Set(static_cast<uint32_t>(i), TensorHandle::New(env, r.tensors[i]));
  auto out = Napi::Object::New(env);
  out.Set("handles", handles);
  out.Set("badCrc", Napi::Number::New(env, static_cast<double>(r.badCrc)));
  return out;
}

// checkpointReadStorages(fd, offsets, nbytes, dtypes, crcs|null, threads, name, shapes)
//   -> { handles, badCrc }   (blocks the JS thread, like fs.readFileSync)
Napi::Value ReadStorages(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto job = readJobArgs(info);
  return resultToJs(info.Env(), readStorages(job));
  TL_GUARD_END(info.Env())
}

// The same on a dedicated I/O thread (not the step executor), as a Promise.
Napi::Value ReadStoragesAsync(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto job = std::make_shared<ReadJob>(readJobArgs(info));
  static Executor io("torchline-ckpt-io");
  return io.submit(info.Env(), [job]() -> Finisher {
    auto r = std::make_shared<ReadResult>(readStorages(*job));
    return [r](Napi::Env env) -> Napi::Value { return resultToJs(env, *r); };
  });
  TL_GUARD_END(info.Env())
}

// An ArrayBuffer over a CPU tensor's bytes. It holds a reference to the
// tensor, so the memory outlives neither the buffer nor the tensor.
Napi::Value aliasBytes(Napi::Env env, const torch::Tensor& t) {
  size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  if (n == 0) return Napi::ArrayBuffer::New(env, 0);
  auto* keep = new torch::Tensor(t);
  return Napi::ArrayBuffer::New(
      env, t.data_ptr(), n, [](Napi::Env, void*, torch::Tensor* k) { delete k; }, keep);
}

// checkpointStorage(numel, dtype) -> [handle, ArrayBuffer]: an uninitialised
// 1-D CPU tensor and a writable view of its bytes for the reader to fill.
Napi::Value Storage(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  int64_t numel = argInt(info, 0, "numel");
  if (numel < 0) throw ArgError("numel must be >= 0");
  auto dtype = dtypeFromName(argString(info, 1, "dtype"));
  auto t = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
  auto out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, TensorHandle::New(info.Env(), t));
  out.Set(1u, aliasBytes(info.Env(), t));
  return out;
  TL_GUARD_END(info.Env())
}

// checkpointView(storage, size, stride, offset) -> handle sharing the storage.
Napi::Value View(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto s = TensorHandle::From(info[0], "storage");
  auto size = argShape(info, 1, "size");
  auto stride = argShape(info, 2, "stride");
  int64_t offset = argInt(info, 3, "offset");
  if (size.size() != stride.size()) throw ArgError("size and stride differ in length");
  if (offset < 0) throw ArgError("offset must be >= 0");
  // as_strided checks the view against the storage's size too (c10 error).
  return TensorHandle::New(info.Env(), s.as_strided(size, stride, offset));
  TL_GUARD_END(info.Env())
}

// checkpointBytes(tensor) -> ArrayBuffer of its elements, row-major, for the
// writer: the tensor's own memory when it is a contiguous CPU tensor (no
// copy), else a contiguous CPU copy.
Napi::Value Bytes(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto t = TensorHandle::From(info[0], "tensor");
  return aliasBytes(info.Env(), t.to(torch::kCPU).contiguous());
  TL_GUARD_END(info.Env())
}

// checkpointCrc32(bytes: TypedArray, prev = 0) -> CRC-32 (zlib.crc32's contract).
Napi::Value Crc32(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw ArgError("bytes must be a TypedArray");
  auto a = info[0].As<Napi::TypedArray>();
  auto* p = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  uint32_t prev = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(info.Env(), crc32(p, a.ByteLength(), prev));
  TL_GUARD_END(info.Env())
}

// Holds executors at a common point: each `hold` job parks its executor until
// the snapshot job (on another executor) has copied the tensors.
struct SnapshotGate {
  std::mutex mu;
  std::condition_variable cv;
  size_t arrived = 0;
  bool done = false;
};

Napi::Promise snapshotOn(Napi::Env env, Executor& main, std::vector<torch::Tensor> src,
                         std::shared_ptr<SnapshotGate> gate, size_t others);

// checkpointSnapshotAsync(tensors) -> Promise<[ArrayBuffer, crc][]>: contiguous
// CPU copies and their CRC-32s, made on the executor of the model that owns
// the tensors (the shared one for tensors no model owns). Being FIFO with
// that model's steps, the copies see every step queued before the call and
// none queued after: a consistent snapshot while JS goes on. Tensors of
// several models: the snapshot waits until every one of their executors has
// reached it (all are queued from this thread in one order: no deadlock).
Napi::Value SnapshotAsync(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  if (info.Length() < 1 || !info[0].IsArray()) throw ArgError("tensors must be an array of Tensors");
  auto arr = info[0].As<Napi::Array>();
  std::vector<torch::Tensor> src;
  std::vector<std::shared_ptr<Executor>> owners;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    src.push_back(TensorHandle::From(arr.Get(i), "tensor"));
    auto owner = TensorHandle::OwnerOf(arr.Get(i));
    if (owner && std::find(owners.begin(), owners.end(), owner) == owners.end()) owners.push_back(owner);
  }
  Executor& main = owners.empty() ? Executor::shared() : *owners[0];
  auto gate = std::make_shared<SnapshotGate>();
  const size_t others = owners.empty() ? 0 : owners.size() - 1;
  auto open = [gate] {  // lets parked executors go if the snapshot is never queued
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->done = true;
    gate->cv.notify_all();
  };
  try {
    for (size_t k = 1; k < owners.size(); k++) {
      owners[k]->submit(info.Env(), [gate]() -> Finisher {
        std::unique_lock<std::mutex> lock(gate->mu);
        gate->arrived++;
        gate->cv.notify_all();
        gate->cv.wait(lock, [&] { return gate->done; });
        return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
      });
    }
  } catch (...) {
    open();
    throw;
  }
  try {
    return snapshotOn(info.Env(), main, std::move(src), gate, others);
  } catch (...) {
    open();
    throw;
  }
  TL_GUARD_END(info.Env())
}

Napi::Promise snapshotOn(Napi::Env env, Executor& main, std::vector<torch::Tensor> src,
                         std::shared_ptr<SnapshotGate> gate, size_t others) {
  return main.submit(env, [src = std::move(src), gate, others]() -> Finisher {
    struct Release {
      SnapshotGate& g;
      ~Release() {
        std::lock_guard<std::mutex> lock(g.mu);
        g.done = true;
        g.cv.notify_all();
      }
    } release{*gate};
    {
      std::unique_lock<std::mutex> lock(gate->mu);
      gate->cv.wait(lock, [&] { return gate->arrived == others; });
    }
    auto out = std::make_shared<std::vector<std::pair<torch::Tensor, uint32_t>>>();
    for (const auto& t : src) {
      auto copy = torch::empty(t.sizes(), t.options().device(torch::kCPU).memory_format(c10::MemoryFormat::Contiguous));
      copy.copy_(t);
      size_t n = static_cast<size_t>(copy.numel()) * copy.element_size();
      out->emplace_back(copy, n ? crc32(static_cast<const uint8_t*>(copy.data_ptr()), n) : 0);
    }
    return [out](Napi::Env env) -> Napi::Value {
      auto res = Napi::Array::New(env, out->size());
      for (size_t i = 0; i < out->size(); i++) {
        auto pair = Napi::Array::New(env, 2);
        pair.Set(0u, aliasBytes(env, (*out)[i].first));
        pair.Set(1u, Napi::Number::New(env, (*out)[i].second));
        res.Set(static_cast<uint32_t>(i), pair);
      }
      return res;
    };
  });
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("checkpointStorage", Napi::Function::New<Storage>(env, "checkpointStorage"));
  exports.Set("checkpointView", Napi::Function::New<View>(env, "checkpointView"));
  exports.Set("checkpointBytes", Napi::Function::New<Bytes>(env, "checkpointBytes"));
  exports.Set("checkpointSnapshotAsync", Napi::Function::New<SnapshotAsync>(env, "checkpointSnapshotAsync"));
  exports.Set("checkpointCrc32", Napi::Function::New<Crc32>(env, "checkpointCrc32"));
  exports.Set("checkpointReadStorages", Napi::Function::New<ReadStorages>(env, "checkpointReadStorages"));
  exports.Set("checkpointReadStoragesAsync", Napi::Function::New<ReadStoragesAsync>(env, "checkpointReadStoragesAsync"));
}

}  // namespace tl
