// XLA FFI adapter (CPU) for the inverse-root kernel: decode, check shapes, call cpp/roots.h.
#include <cstdint>
#include <string>

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
                           ffi::Result<ffi::Buffer<ffi::S32>> status, double p, double eps,
                           int32_t eps_relative, double pinv_threshold, int32_t method_request,
                           int32_t max_iters, double tol, double accept, int32_t double_accumulate,
                           int32_t true_residual, int32_t has_previous) {
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
  roots::Options o;
  o.p = p;
  o.eps = eps;
  o.eps_relative = eps_relative != 0;
  o.pinv_threshold = pinv_threshold;
  o.method = static_cast<roots::Method>(method_request);
  o.max_iters = max_iters;
  o.tol = tol;
  o.accept = accept;
  o.double_accumulate = double_accumulate != 0;
  o.true_residual = true_residual != 0;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    roots::Args<T> args{static_cast<const T*>(a.untyped_data()),
                        has_previous ? static_cast<const T*>(previous.untyped_data()) : nullptr,
                        static_cast<T*>(root->untyped_data()),
                        static_cast<T*>(residual->untyped_data()),
                        static_cast<T*>(lambda_max->untyped_data()),
                        static_cast<T*>(ridge->untyped_data()),
                        iterations->typed_data(),
                        method->typed_data(),
                        status->typed_data()};
    if (!roots::inverse_root<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument(
          "inverse_root: invalid options (p > 0; the iterations need an integer p <= 64)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "inverse_root", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcInverseRootCpu, linalg_core::InverseRootImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<double>("p")
                                  .Attr<double>("eps")
                                  .Attr<int32_t>("eps_relative")
                                  .Attr<double>("pinv_threshold")
                                  .Attr<int32_t>("method")
                                  .Attr<int32_t>("max_iters")
                                  .Attr<double>("tol")
                                  .Attr<double>("accept")
                                  .Attr<int32_t>("double_accumulate")
                                  .Attr<int32_t>("true_residual")
                                  .Attr<int32_t>("has_previous"));
