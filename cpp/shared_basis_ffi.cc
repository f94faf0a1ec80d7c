// XLA FFI adapter (CPU) for the shared-basis update.
#include <cstdint>

#include "shared_basis.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

ffi::Error UpdateImpl(ffi::AnyBuffer basis, ffi::AnyBuffer coeffs, ffi::AnyBuffer escaped,
                      ffi::AnyBuffer grads, ffi::AnyBuffer y0, ffi::Result<ffi::AnyBuffer> basis_out,
                      ffi::Result<ffi::AnyBuffer> coeffs_out, ffi::Result<ffi::AnyBuffer> escaped_out,
                      ffi::Result<ffi::AnyBuffer> direction, ffi::Result<ffi::AnyBuffer> step,
                      ffi::Result<ffi::Buffer<ffi::S32>> status, double eps, int64_t power_iters) {
  // Leading axes are batch axes (vmap broadcasts every operand to them): one layer per element.
  auto db = basis.dimensions(), dc = coeffs.dimensions(), dg = grads.dimensions(), dy = y0.dimensions();
  const size_t nb = db.size() - 2;
  if (db.size() < 2 || dc.size() != nb + 3 || dg.size() != nb + 2 || dy.size() != nb + 2 ||
      escaped.dimensions().size() != nb + 1) {
    return ffi::Error::InvalidArgument(
        "shared_basis_update: basis (...,b,k), coeffs (...,m,k,k), escaped (...,m), grads (...,m,b), y0 (...,b,s)");
  }
  for (size_t i = 0; i < nb; ++i) {
    if (dc[i] != db[i] || dg[i] != db[i] || dy[i] != db[i]) {
      return ffi::Error::InvalidArgument("shared_basis_update: batch axes differ between operands");
    }
  }
  const int64_t batch = leading_count(basis, 2);
  shared_basis::Shape s;
  s.blocks = dg[nb];
  s.dim = dg[nb + 1];
  s.rank = db[nb + 1];
  s.sketch = dy[nb + 1];
  s.power_iters = static_cast<int>(power_iters);
  if (db[nb] != s.dim || dc[nb] != s.blocks || dc[nb + 1] != s.rank || dc[nb + 2] != s.rank || dy[nb] != s.dim) {
    return ffi::Error::InvalidArgument("shared_basis_update: inconsistent shapes");
  }
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    const int64_t m = s.blocks, b = s.dim, k = s.rank, sk = s.sketch;
    for (int64_t e = 0; e < batch; ++e) {
      shared_basis::Args<T> a{static_cast<const T*>(basis.untyped_data()) + e * b * k,
                              static_cast<const T*>(coeffs.untyped_data()) + e * m * k * k,
                              static_cast<const T*>(escaped.untyped_data()) + e * m,
                              static_cast<const T*>(grads.untyped_data()) + e * m * b,
                              static_cast<const T*>(y0.untyped_data()) + e * b * sk, eps,
                              static_cast<T*>(basis_out->untyped_data()) + e * b * k,
                              static_cast<T*>(coeffs_out->untyped_data()) + e * m * k * k,
                              static_cast<T*>(escaped_out->untyped_data()) + e * m,
                              static_cast<T*>(direction->untyped_data()) + e * m * b,
                              static_cast<T*>(step->untyped_data()) + e * m};
      status->typed_data()[e] = static_cast<int32_t>(shared_basis::update<T>(s, a));
    }
    return ffi::Error::Success();
  };
  return dispatch_float(grads.element_type(), "shared_basis_update", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcSharedBasisUpdateCpu, linalg_core::UpdateImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // basis
                                  .Arg<ffi::AnyBuffer>()         // coeffs
                                  .Arg<ffi::AnyBuffer>()         // escaped
                                  .Arg<ffi::AnyBuffer>()         // grads
                                  .Arg<ffi::AnyBuffer>()         // y0
                                  .Ret<ffi::AnyBuffer>()         // basis_out
                                  .Ret<ffi::AnyBuffer>()         // coeffs_out
                                  .Ret<ffi::AnyBuffer>()         // escaped_out
                                  .Ret<ffi::AnyBuffer>()         // direction
                                  .Ret<ffi::AnyBuffer>()         // step
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status: shared_basis::Status
                                  .Attr<double>("eps")
                                  .Attr<int64_t>("power_iters"));
