// XLA FFI adapter (CPU) for the eigenbasis refresh: decode, check shapes, call cpp/eigenbasis.h.
#include <cstdint>
#include <string>
#include <string_view>

#include "eigenbasis.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

ffi::Error RefreshImpl(ffi::AnyBuffer a, ffi::AnyBuffer basis, ffi::Result<ffi::AnyBuffer> basis_out,
                       ffi::Result<ffi::AnyBuffer> eigvals, ffi::Result<ffi::Buffer<ffi::S32>> perm,
                       ffi::Result<ffi::AnyBuffer> off_diagonal, ffi::Result<ffi::AnyBuffer> residual,
                       ffi::Result<ffi::AnyBuffer> orthogonality,
                       ffi::Result<ffi::Buffer<ffi::S32>> iterations,
                       ffi::Result<ffi::Buffer<ffi::S32>> method,
                       ffi::Result<ffi::Buffer<ffi::S32>> status, ffi::Dictionary attrs) {
  auto dims = a.dimensions();
  if (dims.size() < 2 || dims[dims.size() - 1] != dims[dims.size() - 2]) {
    return ffi::Error::InvalidArgument("eigenbasis_refresh: a must have shape (..., n, n)");
  }
  if (basis.element_count() != a.element_count() || basis.element_type() != a.element_type()) {
    return ffi::Error::InvalidArgument("eigenbasis_refresh: basis must match a in shape and dtype");
  }
  eigenbasis::Options o;
  const char* bad = eigenbasis::decode_options(
      [&](std::string_view name, auto* value) {
        using V = std::remove_pointer_t<decltype(value)>;
        auto got = attrs.get<V>(name);
        if (got.has_error()) return false;
        *value = *got;
        return true;
      },
      &o);
  if (bad != nullptr) {
    return ffi::Error::InvalidArgument(std::string("eigenbasis_refresh: attribute ") + bad +
                                       " missing or of the wrong type");
  }
  eigenbasis::Shape shape;
  shape.n = dims[dims.size() - 1];
  shape.batch = leading_count(a, 2);
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    eigenbasis::Args<T> args{static_cast<const T*>(a.untyped_data()),
                             o.has_basis != 0 ? static_cast<const T*>(basis.untyped_data()) : nullptr,
                             static_cast<T*>(basis_out->untyped_data()),
                             static_cast<T*>(eigvals->untyped_data()),
                             perm->typed_data(),
                             static_cast<T*>(off_diagonal->untyped_data()),
                             static_cast<T*>(residual->untyped_data()),
                             static_cast<T*>(orthogonality->untyped_data()),
                             iterations->typed_data(),
                             method->typed_data(),
                             status->typed_data()};
    if (!eigenbasis::refresh<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument(
          "eigenbasis_refresh: invalid shape or options (n >= 1, steps >= 0, tolerances >= 0)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "eigenbasis_refresh", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcEigenbasisRefreshCpu, linalg_core::RefreshImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // a
                                  .Arg<ffi::AnyBuffer>()         // basis
                                  .Ret<ffi::AnyBuffer>()         // basis_out
                                  .Ret<ffi::AnyBuffer>()         // eigvals
                                  .Ret<ffi::Buffer<ffi::S32>>()  // perm
                                  .Ret<ffi::AnyBuffer>()         // off_diagonal
                                  .Ret<ffi::AnyBuffer>()         // residual
                                  .Ret<ffi::AnyBuffer>()         // orthogonality
                                  .Ret<ffi::Buffer<ffi::S32>>()  // iterations
                                  .Ret<ffi::Buffer<ffi::S32>>()  // method
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Attrs<ffi::Dictionary>());    // LC_EIGENBASIS_OPTIONS
