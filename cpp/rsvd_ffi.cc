// XLA FFI adapters (CPU) for the randomized SVD / eigh kernels.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include "rsvd.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

// Shape from a (..., m, n), omega (..., n, l) and probes (..., n, r).
ffi::Error rsvd_shape(const ffi::AnyBuffer& a, const ffi::AnyBuffer& omega, const ffi::AnyBuffer& probes,
                      rsvd::Shape* s) {
  auto da = a.dimensions(), dw = omega.dimensions(), dp = probes.dimensions();
  if (da.size() < 2 || dw.size() != da.size() || dp.size() != da.size()) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: a, omega, probes need equal ranks >= 2");
  }
  const size_t r = da.size();
  s->m = da[r - 2];
  s->n = da[r - 1];
  s->l = dw[r - 1];
  s->probes = dp[r - 1];
  s->batch = leading_count(a, 2);
  if (dw[r - 2] != s->n || dp[r - 2] != s->n) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: omega and probes need n rows");
  }
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  if (s->m > kIntMax || s->n > kIntMax || s->l > kIntMax || s->probes > kIntMax) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: m, n, l and probes must fit a LAPACK int");
  }
  if (a.element_type() != omega.element_type() || a.element_type() != probes.element_type()) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: one dtype for all operands");
  }
  return ffi::Error::Success();
}

// The options by name (LC_RSVD_OPTIONS, the list python/rsvd.cc decodes too), exactly those keys.
ffi::Error decode_attrs(const ffi::Dictionary& attrs, rsvd::Options* o) {
  ffi::Error decoded = decode_attributes(
      attrs, "randomized svd/eigh", "LC_RSVD_OPTIONS", rsvd::kOptionCount,
      [](auto& get, rsvd::Options* out) { return rsvd::decode_options(get, out); }, o);
  if (decoded.failure()) return decoded;
  if (o->k > std::numeric_limits<int>::max() || o->power_iters > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: k and power_iters must fit a LAPACK int");
  }
  return ffi::Error::Success();
}

template <typename T>
T* out(ffi::Result<ffi::AnyBuffer>& b) {
  return static_cast<T*>(b->untyped_data());
}

ffi::Error SvdImpl(ffi::AnyBuffer a, ffi::AnyBuffer omega, ffi::AnyBuffer probes,
                   ffi::Result<ffi::AnyBuffer> u, ffi::Result<ffi::AnyBuffer> s,
                   ffi::Result<ffi::AnyBuffer> vt, ffi::Result<ffi::AnyBuffer> error,
                   ffi::Result<ffi::Buffer<ffi::S32>> iterations, ffi::Result<ffi::Buffer<ffi::S32>> status,
                   ffi::Dictionary attrs) {
  rsvd::Shape shape;
  ffi::Error e = rsvd_shape(a, omega, probes, &shape);
  if (e.failure()) return e;
  rsvd::Options o;
  e = decode_attrs(attrs, &o);
  if (e.failure()) return e;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    rsvd::SvdArgs<T> args{static_cast<const T*>(a.untyped_data()),
                          static_cast<const T*>(omega.untyped_data()),
                          static_cast<const T*>(probes.untyped_data()),
                          out<T>(u), out<T>(s), out<T>(vt), out<T>(error), iterations->typed_data(),
                          status->typed_data()};
    if (!rsvd::svd<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument(
          "randomized_svd: need k <= l <= min(m, n), method svd, and tol >= 0 finite (> 0 needs probes)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "randomized_svd", run);
}

ffi::Error EighImpl(ffi::AnyBuffer a, ffi::AnyBuffer omega, ffi::AnyBuffer probes,
                    ffi::Result<ffi::AnyBuffer> eigvals, ffi::Result<ffi::AnyBuffer> eigvecs,
                    ffi::Result<ffi::AnyBuffer> error, ffi::Result<ffi::Buffer<ffi::S32>> iterations,
                    ffi::Result<ffi::Buffer<ffi::S32>> status, ffi::Result<ffi::Buffer<ffi::S32>> method,
                    ffi::Dictionary attrs) {
  rsvd::Shape shape;
  ffi::Error e = rsvd_shape(a, omega, probes, &shape);
  if (e.failure()) return e;
  rsvd::Options o;
  e = decode_attrs(attrs, &o);
  if (e.failure()) return e;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    rsvd::EighArgs<T> args{static_cast<const T*>(a.untyped_data()),
                           static_cast<const T*>(omega.untyped_data()),
                           static_cast<const T*>(probes.untyped_data()),
                           out<T>(eigvals), out<T>(eigvecs), out<T>(error), iterations->typed_data(),
                           status->typed_data(), method->typed_data()};
    if (!rsvd::eigh<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument(
          "randomized_eigh: need a square a, k <= l <= n, method rayleigh_ritz or nystrom, and tol >= 0 "
          "finite (> 0 needs probes)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "randomized_eigh", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcRandomizedSvdCpu, linalg_core::SvdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // a
                                  .Arg<ffi::AnyBuffer>()         // omega
                                  .Arg<ffi::AnyBuffer>()         // probes
                                  .Ret<ffi::AnyBuffer>()         // u
                                  .Ret<ffi::AnyBuffer>()         // s
                                  .Ret<ffi::AnyBuffer>()         // vt
                                  .Ret<ffi::AnyBuffer>()         // error
                                  .Ret<ffi::Buffer<ffi::S32>>()  // iterations
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Attrs<ffi::Dictionary>());    // LC_RSVD_OPTIONS

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcRandomizedEighCpu, linalg_core::EighImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // a
                                  .Arg<ffi::AnyBuffer>()         // omega
                                  .Arg<ffi::AnyBuffer>()         // probes
                                  .Ret<ffi::AnyBuffer>()         // eigvals
                                  .Ret<ffi::AnyBuffer>()         // eigvecs
                                  .Ret<ffi::AnyBuffer>()         // error
                                  .Ret<ffi::Buffer<ffi::S32>>()  // iterations
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Ret<ffi::Buffer<ffi::S32>>()  // method
                                  .Attrs<ffi::Dictionary>());    // LC_RSVD_OPTIONS
