// XLA FFI adapters (CPU) for Kronecker power iteration and the cosine similarity.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include "kron.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

ffi::Error shape_of(const ffi::AnyBuffer& samples, kron::Shape* s) {
  auto d = samples.dimensions();
  if (d.size() < 3) return ffi::Error::InvalidArgument("kron: samples must be (..., N, m, n)");
  const size_t r = d.size();
  s->samples = d[r - 3];
  s->m = d[r - 2];
  s->n = d[r - 1];
  s->batch = leading_count(samples, 3);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  if (s->samples > kIntMax || s->m > kIntMax || s->n > kIntMax || s->m * s->n > kIntMax) {
    return ffi::Error::InvalidArgument("kron: N, m, n and m n must fit a LAPACK int");
  }
  return ffi::Error::Success();
}

// The options by name (LC_KRON_OPTIONS, the list python/kron.cc decodes too), exactly those keys.
ffi::Error decode_attrs(const ffi::Dictionary& attrs, kron::Options* o) {
  ffi::Error decoded = decode_attributes(
      attrs, "kron_approx", "LC_KRON_OPTIONS", kron::kOptionCount,
      [](auto& get, kron::Options* out) { return kron::decode_options(get, out); }, o);
  if (decoded.failure()) return decoded;
  if (o->steps > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("kron_approx: steps must fit an int");
  }
  return ffi::Error::Success();
}

ffi::Error ApproxImpl(ffi::AnyBuffer samples, ffi::Result<ffi::AnyBuffer> left,
                      ffi::Result<ffi::AnyBuffer> right, ffi::Result<ffi::AnyBuffer> sigma,
                      ffi::Result<ffi::AnyBuffer> change, ffi::Result<ffi::Buffer<ffi::S32>> status,
                      ffi::Dictionary attrs) {
  kron::Shape s;
  ffi::Error e = shape_of(samples, &s);
  if (e.failure()) return e;
  kron::Options o;
  e = decode_attrs(attrs, &o);
  if (e.failure()) return e;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    kron::Args<T> a{static_cast<const T*>(samples.untyped_data()), static_cast<T*>(left->untyped_data()),
                    static_cast<T*>(right->untyped_data()), static_cast<T*>(sigma->untyped_data()),
                    static_cast<T*>(change->untyped_data()), status->typed_data()};
    if (!kron::approx<T>(s, a, o)) return ffi::Error::InvalidArgument("kron_approx: empty samples or steps < 1");
    return ffi::Error::Success();
  };
  return dispatch_float(samples.element_type(), "kron_approx", run);
}

ffi::Error CosineImpl(ffi::AnyBuffer samples, ffi::AnyBuffer left, ffi::AnyBuffer right,
                      ffi::Result<ffi::AnyBuffer> out) {
  kron::Shape s;
  ffi::Error e = shape_of(samples, &s);
  if (e.failure()) return e;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    if (!kron::cosine<T>(s, static_cast<const T*>(samples.untyped_data()),
                         static_cast<const T*>(left.untyped_data()),
                         static_cast<const T*>(right.untyped_data()), static_cast<T*>(out->untyped_data()))) {
      return ffi::Error::InvalidArgument("kron_cosine: empty samples");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(samples.element_type(), "kron_cosine", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcKronApproxCpu, linalg_core::ApproxImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()        // samples
                                  .Ret<ffi::AnyBuffer>()        // left
                                  .Ret<ffi::AnyBuffer>()        // right
                                  .Ret<ffi::AnyBuffer>()        // sigma
                                  .Ret<ffi::AnyBuffer>()        // change
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Attrs<ffi::Dictionary>());    // LC_KRON_OPTIONS

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcKronCosineCpu, linalg_core::CosineImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()   // samples
                                  .Arg<ffi::AnyBuffer>()   // left
                                  .Arg<ffi::AnyBuffer>()   // right
                                  .Ret<ffi::AnyBuffer>());  // cosine
