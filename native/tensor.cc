#include "tensor.h"

#include "addon.h"
#include "executor.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace tl {

namespace {

// Host bytes a tensor keeps alive. CUDA memory is not V8's concern (it does
// not grow the heap the GC is sized by), so only CPU storage is reported.
int64_t hostBytes(const torch::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}

// The TypedArray kinds a tensor can be made from, and the dtypes each may
// hold (16-bit words carry float16/bfloat16 bits). Any other kind, including
// ones newer than this list (Float16Array), is refused: guessing its element
// size would read past the end of its buffer.
struct ArrayKind {
  const char* name;
  size_t bytes;
  std::vector<c10::ScalarType> dtypes;
};

const ArrayKind* arrayKind(napi_typedarray_type t) {
  static const ArrayKind i8{"Int8Array", 1, {c10::kChar}}, u8{"Uint8Array", 1, {c10::kByte, c10::kBool}},
      u8c{"Uint8ClampedArray", 1, {c10::kByte}}, i16{"Int16Array", 2, {c10::kShort}},
      u16{"Uint16Array", 2, {c10::kHalf, c10::kBFloat16}}, i32{"Int32Array", 4, {c10::kInt}},
      f32{"Float32Array", 4, {c10::kFloat}}, f64{"Float64Array", 8, {c10::kDouble}},
      i64{"BigInt64Array", 8, {c10::kLong}};
  switch (t) {
    case napi_int8_array: return &i8;
    case napi_uint8_array: return &u8;
    case napi_uint8_clamped_array: return &u8c;
    case napi_int16_array: return &i16;
    case napi_uint16_array: return &u16;
    case napi_int32_array: return &i32;
    case napi_float32_array: return &f32;
    case napi_float64_array: return &f64;
    case napi_bigint64_array: return &i64;
    default: return nullptr;  // Uint32Array, BigUint64Array (no such dtype), Float16Array, future kinds
  }
}

}  // namespace

void TensorHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "TensorHandle",
                                    {
                                        InstanceMethod<&TensorHandle::Shape>("shape"),
                                        InstanceMethod<&TensorHandle::Dtype>("dtype"),
                                        InstanceMethod<&TensorHandle::Device>("device"),
                                        InstanceMethod<&TensorHandle::Nbytes>("nbytes"),
                                        InstanceMethod<&TensorHandle::Disposed>("disposed"),
                                        InstanceMethod<&TensorHandle::ToArrayBuffer>("toArrayBuffer"),
                                        InstanceMethod<&TensorHandle::To>("to"),
                                        InstanceMethod<&TensorHandle::Item>("item"),
                                        InstanceMethod<&TensorHandle::RequiresGrad>("requiresGrad"),
                                        InstanceMethod<&TensorHandle::Dispose>("dispose"),
                                    });
  addonData(env).tensorCtor = Napi::Persistent(ctor);
  exports.Set("TensorHandle", ctor);
}

// JS calls new TensorHandle(typedArray, shape, dtype): a copy of the data.
// C++ calls it with (External<torch::Tensor>, owned) to adopt a tensor.
TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  Napi::Env env = info.Env();
  TL_GUARD_BEGIN
  if (info.Length() == 2 && info[0].IsExternal()) {
    set(*info[0].As<Napi::External<torch::Tensor>>().Data(), info[1].ToBoolean().Value());
    return;
  }
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw ArgError("Tensor data must be a TypedArray");
  auto arr = info[0].As<Napi::TypedArray>();
  auto shape = argShape(info, 1, "shape");
  auto dtype = dtypeFromName(argString(info, 2, "dtype"));
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  const ArrayKind* kind = arrayKind(arr.TypedArrayType());
  if (!kind)
    throw ArgError("Tensor data must be an Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array "
                   "(float16/bfloat16 bits), Int32Array, Float32Array, Float64Array or BigInt64Array");
  size_t elem = kind->bytes;
  if (std::find(kind->dtypes.begin(), kind->dtypes.end(), dtype) == kind->dtypes.end())
    throw ArgError(std::string("a ") + kind->name + " cannot hold dtype " + dtypeName(dtype));
  if (static_cast<int64_t>(arr.ElementLength()) != numel)
    throw std::invalid_argument("data has " + std::to_string(arr.ElementLength()) + " elements but shape " +
                                shapeString(shape) + " needs " + std::to_string(numel));
  if (arr.ByteLength() != static_cast<size_t>(numel) * elem)
    throw ArgError("Tensor data: the array's byte length does not match its element count");
  auto out = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (numel > 0) {
    auto* src = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    std::memcpy(out.data_ptr(), src, numel * elem);
  }
  set(out, true);
  TL_GUARD_END(env)
}

TensorHandle::~TensorHandle() { release(); }

void TensorHandle::set(torch::Tensor t, bool owned) {
  tensor_ = std::move(t);
  reported_ = owned ? hostBytes(tensor_) : 0;
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), reported_);
}

void TensorHandle::release() {
  if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_);
  reported_ = 0;
  tensor_ = torch::Tensor();
  owner_.reset();
  disposed_ = true;
}

const torch::Tensor& TensorHandle::live() const {
  if (disposed_) throw std::runtime_error("tensor was disposed");
  return tensor_;
}

Napi::Object TensorHandle::New(Napi::Env env, torch::Tensor t, bool owned) {
  auto ext = Napi::External<torch::Tensor>::New(env, &t);
  return addonData(env).tensorCtor.New({ext, Napi::Boolean::New(env, owned)});
}

Napi::Object TensorHandle::NewAlias(Napi::Env env, torch::Tensor t, std::shared_ptr<Executor> owner) {
  Napi::Object o = New(env, std::move(t), false);
  Unwrap(o)->owner_ = std::move(owner);
  return o;
}

std::shared_ptr<Executor> TensorHandle::OwnerOf(Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addonData(v.Env()).tensorCtor.Value())) return nullptr;
  return Unwrap(v.As<Napi::Object>())->owner_;
}

torch::Tensor TensorHandle::From(Napi::Value v, const char* name) {
  return Unwrap(unwrapArg(v, addonData(v.Env()).tensorCtor, name, "a Tensor"))->live();
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto sizes = live().sizes();
  auto arr = Napi::Array::New(info.Env(), sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) arr.Set(i, Napi::Number::New(info.Env(), sizes[i]));
  return arr;
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Dtype(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return Napi::String::New(info.Env(), dtypeName(live().scalar_type()));
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Device(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return Napi::String::New(info.Env(), live().device().str());
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Nbytes(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  const auto& t = live();
  return Napi::Number::New(info.Env(), static_cast<double>(t.numel() * t.element_size()));
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed_);
}

// A copy of the elements, row-major, in a fresh ArrayBuffer (the JS side picks
// the TypedArray view from the dtype).
Napi::Value TensorHandle::ToArrayBuffer(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto t = live().to(torch::kCPU).contiguous();
  size_t n = t.numel() * t.element_size();
  auto buf = Napi::ArrayBuffer::New(info.Env(), n);
  if (n) std::memcpy(buf.Data(), t.data_ptr(), n);
  return buf;
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::To(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto device = deviceFromString(argString(info, 0, "device"));
  bool nonBlocking = info.Length() > 1 && info[1].ToBoolean().Value();
  // A copy to the host is always waited for: JS reads it next (item(),
  // toArrayBuffer()) with no stream to synchronise with. nonBlocking only
  // speeds up host-to-device copies from pinned memory.
  const auto& t = live();
  if (!device.is_cuda()) nonBlocking = false;
  c10::DeviceGuard deviceGuard(device.is_cuda() ? device : t.device());
  return New(info.Env(), t.to(device, nonBlocking));
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Item(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  const auto& t = live();
  if (t.numel() != 1)
    throw std::invalid_argument("item() needs a tensor with one element, got shape " + shapeString(t.sizes()));
  return Napi::Number::New(info.Env(), t.item<double>());
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::RequiresGrad(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  return Napi::Boolean::New(info.Env(), live().requires_grad());
  TL_GUARD_END(info.Env())
}

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

// ---- a few ops, sync and on the step executor ------------------------------

namespace {

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto a = TensorHandle::From(info[0], "a");
  auto b = TensorHandle::From(info[1], "b");
  return TensorHandle::New(info.Env(), torch::matmul(a, b));
  TL_GUARD_END(info.Env())
}

// matmul repeated `times` times off the JS thread: the smallest real "step",
// used to prove the event loop keeps running while native work is in flight.
Napi::Value MatmulAsync(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto a = TensorHandle::From(info[0], "a");
  auto b = TensorHandle::From(info[1], "b");
  int64_t times = info.Length() > 2 ? argInt(info, 2, "times") : 1;
  if (times < 1) throw std::invalid_argument("times must be >= 1");
  return Executor::shared().submit(info.Env(), [a, b, times]() -> Finisher {
    torch::NoGradGuard noGrad;
    torch::Tensor r;
    for (int64_t i = 0; i < times; i++) r = torch::matmul(a, b);
    return [r](Napi::Env env) -> Napi::Value { return TensorHandle::New(env, r); };
  });
  TL_GUARD_END(info.Env())
}

Napi::Value Full(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto shape = argShape(info, 0, "shape");
  double value = argNumber(info, 1, "value");
  auto dtype = dtypeFromName(argString(info, 2, "dtype"));
  auto device = deviceFromString(argString(info, 3, "device"));
  return TensorHandle::New(info.Env(), torch::full(shape, value, torch::TensorOptions().dtype(dtype).device(device)));
  TL_GUARD_END(info.Env())
}

Napi::Value Randn(const Napi::CallbackInfo& info) {
  TL_GUARD_BEGIN
  auto shape = argShape(info, 0, "shape");
  auto dtype = dtypeFromName(argString(info, 1, "dtype"));
  auto device = deviceFromString(argString(info, 2, "device"));
  return TensorHandle::New(info.Env(), torch::randn(shape, torch::TensorOptions().dtype(dtype).device(device)));
  TL_GUARD_END(info.Env())
}

}  // namespace

void InitTensorFunctions(Napi::Env env, Napi::Object exports) {
  TensorHandle::Init(env, exports);
  exports.Set("matmul", Napi::Function::New<Matmul>(env, "matmul"));
  exports.Set("matmulAsync", Napi::Function::New<MatmulAsync>(env, "matmulAsync"));
  exports.Set("full", Napi::Function::New<Full>(env, "full"));
  exports.Set("randn", Napi::Function::New<Randn>(env, "randn"));
}

}  // namespace tl
