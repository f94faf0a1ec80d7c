// XLA FFI adapters (CPU) for the randomized SVD / eigh kernels.
#include <cstdint>
#include <string>

#include "rsvd.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

// Shape from a (..., m, n), omega (..., n, l) and probes (..., n, r).
ffi::Error rsvd_shape(const ffi::AnyBuffer& a, const ffi::AnyBuffer& omega,
                      const ffi::AnyBuffer& probes, int64_t k, int64_t power_iters,
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
  s->k = k;
  s->power_iters = static_cast<int>(power_iters);
  s->batch = leading_count(a, 2);
  if (dw[r - 2] != s->n || dp[r - 2] != s->n) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: omega and probes need n rows");
  }
  if (a.element_type() != omega.element_type() || a.element_type() != probes.element_type()) {
    return ffi::Error::InvalidArgument("randomized svd/eigh: one dtype for all operands");
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
                   ffi::Result<ffi::Buffer<ffi::S32>> status, int64_t k, int64_t power_iters) {
  rsvd::Shape shape;
  ffi::Error e = rsvd_shape(a, omega, probes, k, power_iters, &shape);
  if (e.failure()) return e;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    rsvd::SvdArgs<T> args{static_cast<const T*>(a.untyped_data()),
                          static_cast<const T*>(omega.untyped_data()),
                          static_cast<const T*>(probes.untyped_data()),
                          out<T>(u), out<T>(s), out<T>(vt), out<T>(error), status->typed_data()};
    if (!rsvd::svd<T>(shape, args)) return ffi::Error::InvalidArgument("randomized_svd: need k <= l <= min(m, n)");
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "randomized_svd", run);
}

ffi::Error EighImpl(ffi::AnyBuffer a, ffi::AnyBuffer omega, ffi::AnyBuffer probes,
                    ffi::Result<ffi::AnyBuffer> eigvals, ffi::Result<ffi::AnyBuffer> eigvecs,
                    ffi::Result<ffi::AnyBuffer> error, ffi::Result<ffi::Buffer<ffi::S32>> status,
                    ffi::Result<ffi::Buffer<ffi::S32>> method, int64_t k, int64_t power_iters,
                    int32_t nystrom) {
  rsvd::Shape shape;
  ffi::Error e = rsvd_shape(a, omega, probes, k, power_iters, &shape);
  if (e.failure()) return e;
  shape.nystrom = nystrom != 0;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    rsvd::EighArgs<T> args{static_cast<const T*>(a.untyped_data()),
                           static_cast<const T*>(omega.untyped_data()),
                           static_cast<const T*>(probes.untyped_data()),
                           out<T>(eigvals), out<T>(eigvecs), out<T>(error), status->typed_data(),
                           method->typed_data()};
    if (!rsvd::eigh<T>(shape, args)) return ffi::Error::InvalidArgument("randomized_eigh: need a square a and k <= l <= n");
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "randomized_eigh", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcRandomizedSvdCpu, linalg_core::SvdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("power_iters"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcRandomizedEighCpu, linalg_core::EighImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("power_iters")
                                  .Attr<int32_t>("nystrom"));
