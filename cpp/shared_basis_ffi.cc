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
  auto db = basis.dimensions(), dc = coeffs.dimensions(), dg = grads.dimensions(), dy = y0.dimensions();
  if (db.size() != 2 || dc.size() != 3 || dg.size() != 2 || dy.size() != 2) {
    return ffi::Error::InvalidArgument("shared_basis_update: basis (b,k), coeffs (m,k,k), grads (m,b), y0 (b,s)");
  }
  shared_basis::Shape s;
  s.blocks = dg[0];
  s.dim = dg[1];
  s.rank = db[1];
  s.sketch = dy[1];
  s.power_iters = static_cast<int>(power_iters);
  if (db[0] != s.dim || dc[0] != s.blocks || dc[1] != s.rank || dc[2] != s.rank || dy[0] != s.dim) {
    return ffi::Error::InvalidArgument("shared_basis_update: inconsistent shapes");
  }
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    shared_basis::Args<T> a{static_cast<const T*>(basis.untyped_data()), static_cast<const T*>(coeffs.untyped_data()),
                            static_cast<const T*>(escaped.untyped_data()), static_cast<const T*>(grads.untyped_data()),
                            static_cast<const T*>(y0.untyped_data()), eps,
                            static_cast<T*>(basis_out->untyped_data()), static_cast<T*>(coeffs_out->untyped_data()),
                            static_cast<T*>(escaped_out->untyped_data()), static_cast<T*>(direction->untyped_data()),
                            static_cast<T*>(step->untyped_data())};
    *status->typed_data() = shared_basis::update<T>(s, a) ? 0 : 1;
    return ffi::Error::Success();
  };
  return dispatch_float(grads.element_type(), "shared_basis_update", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcSharedBasisUpdateCpu, linalg_core::UpdateImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<double>("eps")
                                  .Attr<int64_t>("power_iters"));
