// XLA FFI adapters (CPU) for the FD kernels: decode buffers, check shapes, call cpp/fd.h.
//
// Leading axes of every operand are batch axes (jax.ffi.ffi_call with vmap_method="broadcast_all"
// hands vmapped calls over the same way), flattened into one batch count here.
#include <cstdint>
#include <string>

#include "fd.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

struct BatchMatrix {
  int64_t batch = 1, rows = 0, cols = 0;
};

// Splits (..., rows, cols) into a batch count and the matrix shape.
ffi::Error split_matrix(const ffi::AnyBuffer& buf, const char* name, BatchMatrix* m) {
  auto dims = buf.dimensions();
  if (dims.size() < 2) {
    return ffi::Error::InvalidArgument(std::string(name) + " must have at least 2 dimensions");
  }
  *m = BatchMatrix{};
  m->batch = leading_count(buf, 2);
  m->rows = dims[dims.size() - 2];
  m->cols = dims[dims.size() - 1];
  return ffi::Error::Success();
}

// Returns from the enclosing handler when `expr` yields an error.
#define LC_RETURN_IF_ERROR(expr)         \
  do {                                   \
    ffi::Error lc_error_ = (expr);       \
    if (lc_error_.failure()) return lc_error_; \
  } while (0)

ffi::Error check_batch(int64_t expected, int64_t got, const char* name) {
  if (expected == got) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(std::string(name) + ": batch size " + std::to_string(got) +
                                     " does not match the basis batch size " +
                                     std::to_string(expected));
}

template <typename T>
T* data(ffi::AnyBuffer b) {
  return static_cast<T*>(b.untyped_data());
}
template <typename T>
T* data(ffi::Result<ffi::AnyBuffer> b) {
  return static_cast<T*>(b->untyped_data());
}

ffi::Error FdUpdateImpl(ffi::AnyBuffer basis, ffi::AnyBuffer eigvals, ffi::AnyBuffer escaped,
                        ffi::AnyBuffer term, ffi::AnyBuffer beta,
                        ffi::Result<ffi::AnyBuffer> basis_out,
                        ffi::Result<ffi::AnyBuffer> eigvals_out,
                        ffi::Result<ffi::AnyBuffer> escaped_out,
                        ffi::Result<ffi::AnyBuffer> step_mass,
                        ffi::Result<ffi::AnyBuffer> residual,
                        ffi::Result<ffi::Buffer<ffi::S32>> method,
                        ffi::Result<ffi::Buffer<ffi::S32>> status, int32_t term_is_matrix,
                        int32_t method_request) {
  BatchMatrix u, t;
  LC_RETURN_IF_ERROR(split_matrix(basis, "basis", &u));
  LC_RETURN_IF_ERROR(split_matrix(term, "term", &t));
  LC_RETURN_IF_ERROR(check_batch(u.batch, t.batch, "term"));
  LC_RETURN_IF_ERROR(check_batch(u.batch, leading_count(eigvals, 1), "eigvals"));
  LC_RETURN_IF_ERROR(check_batch(u.batch, leading_count(escaped, 0), "escaped_mass"));
  LC_RETURN_IF_ERROR(check_batch(u.batch, leading_count(beta, 0), "beta"));
  if (t.rows != u.rows) {
    return ffi::Error::InvalidArgument("term must have as many rows as basis");
  }
  const auto dtype = basis.element_type();
  for (auto other : {eigvals.element_type(), escaped.element_type(), term.element_type(),
                     beta.element_type()}) {
    if (other != dtype) return ffi::Error::InvalidArgument("all FD operands must share one dtype");
  }
  fd::UpdateShape shape;
  shape.batch = u.batch;
  shape.dim = u.rows;
  shape.rank = u.cols;
  shape.columns = t.cols;
  shape.term_is_matrix = term_is_matrix != 0;
  const auto requested = static_cast<fd::Method>(method_request);

  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    fd::UpdateArgs<T> a{data<T>(basis),       data<T>(eigvals),      data<T>(escaped),
                        data<T>(term),        data<T>(beta),         data<T>(basis_out),
                        data<T>(eigvals_out), data<T>(escaped_out),  data<T>(step_mass),
                        data<T>(residual),    method->typed_data(), status->typed_data()};
    if (!fd::update<T>(shape, a, requested)) {
      return ffi::Error::InvalidArgument(
          "fd_update: invalid shape or method (need 1 <= rank <= dim, a square matrix term, and "
          "the thin-stack method only for factor terms)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(dtype, "fd_update", run);
}

ffi::Error FdApplyInverseRootImpl(ffi::AnyBuffer basis, ffi::AnyBuffer eigvals,
                                  ffi::AnyBuffer escaped, ffi::AnyBuffer x,
                                  ffi::Result<ffi::AnyBuffer> y, double p, double eps) {
  BatchMatrix u, xm;
  LC_RETURN_IF_ERROR(split_matrix(basis, "basis", &u));
  LC_RETURN_IF_ERROR(split_matrix(x, "x", &xm));
  LC_RETURN_IF_ERROR(check_batch(u.batch, xm.batch, "x"));
  LC_RETURN_IF_ERROR(check_batch(u.batch, leading_count(eigvals, 1), "eigvals"));
  LC_RETURN_IF_ERROR(check_batch(u.batch, leading_count(escaped, 0), "escaped_mass"));
  if (xm.rows != u.rows) return ffi::Error::InvalidArgument("x must have as many rows as basis");
  fd::ApplyShape shape;
  shape.batch = u.batch;
  shape.dim = u.rows;
  shape.rank = u.cols;
  shape.columns = xm.cols;
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    fd::apply_inverse_root<T>(shape, data<T>(basis), data<T>(eigvals), data<T>(escaped),
                              data<T>(x), p, eps, data<T>(y));
    return ffi::Error::Success();
  };
  return dispatch_float(basis.element_type(), "fd_apply_inverse_root", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcFdUpdateCpu, linalg_core::FdUpdateImpl,
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
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int32_t>("term_is_matrix")
                                  .Attr<int32_t>("method"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcFdApplyInverseRootCpu, linalg_core::FdApplyInverseRootImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<double>("p")
                                  .Attr<double>("eps"));
