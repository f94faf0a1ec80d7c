// XLA FFI adapter (CPU) for the inverse-root kernel: decode, check shapes, call cpp/roots.h.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include "roots.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

ffi::Error InverseRootImpl(ffi::AnyBuffer a, ffi::AnyBuffer previous,
                           ffi::Result<ffi::AnyBuffer> root, ffi::Result<ffi::AnyBuffer> residual,
                           ffi::Result<ffi::AnyBuffer> lambda_max, ffi::Result<ffi::AnyBuffer> ridge,
                           ffi::Result<ffi::Buffer<ffi::S32>> iterations,
                           ffi::Result<ffi::Buffer<ffi::S32>> method,
                           ffi::Result<ffi::Buffer<ffi::S32>> status, ffi::Dictionary attrs) {
  auto dims = a.dimensions();
  if (dims.size() < 2 || dims[dims.size() - 1] != dims[dims.size() - 2]) {
    return ffi::Error::InvalidArgument("inverse_root: a must have shape (..., n, n)");
  }
  if (previous.element_count() != a.element_count() || previous.element_type() != a.element_type()) {
    return ffi::Error::InvalidArgument("inverse_root: prev must match a in shape and dtype");
  }
  roots::Shape shape;
  shape.n = dims[dims.size() - 1];
  shape.batch = leading_count(a, 2);
  if (shape.n > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("inverse_root: n must fit a LAPACK int");
  }
  roots::Options o;
  ffi::Error decoded = decode_attributes(
      attrs, "inverse_root", "LC_ROOT_OPTIONS", roots::kOptionCount,
      [](auto& get, roots::Options* out) { return roots::decode_options(get, out); }, &o);
  if (decoded.failure()) return decoded;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    roots::Args<T> args{static_cast<const T*>(a.untyped_data()),
                        o.has_previous != 0 ? static_cast<const T*>(previous.untyped_data()) : nullptr,
                        static_cast<T*>(root->untyped_data()),
                        static_cast<T*>(residual->untyped_data()),
                        static_cast<T*>(lambda_max->untyped_data()),
                        static_cast<T*>(ridge->untyped_data()),
                        iterations->typed_data(),
                        method->typed_data(),
                        status->typed_data()};
    if (!roots::inverse_root<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument(
          "inverse_root: invalid options (p > 0, method and ridge codes; the iterations need an integer "
          "p <= 64)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "inverse_root", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcInverseRootCpu, linalg_core::InverseRootImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // a
                                  .Arg<ffi::AnyBuffer>()         // previous (a when has_previous = 0)
                                  .Ret<ffi::AnyBuffer>()         // root
                                  .Ret<ffi::AnyBuffer>()         // residual
                                  .Ret<ffi::AnyBuffer>()         // lambda_max
                                  .Ret<ffi::AnyBuffer>()         // ridge
                                  .Ret<ffi::Buffer<ffi::S32>>()  // iterations
                                  .Ret<ffi::Buffer<ffi::S32>>()  // method
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Attrs<ffi::Dictionary>());    // LC_ROOT_OPTIONS
