// XLA FFI adapter (CPU) for LOBPCG on explicit symmetric matrices, batched over leading axes.
#include <cstdint>
#include <vector>

#include "lapack.h"
#include "lobpcg.h"
#include "parallel.h"
#include "ffi_dispatch.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

ffi::Error LobpcgImpl(ffi::AnyBuffer a, ffi::AnyBuffer x0, ffi::Result<ffi::AnyBuffer> eigvals,
                      ffi::Result<ffi::AnyBuffer> eigvecs, ffi::Result<ffi::AnyBuffer> residuals,
                      ffi::Result<ffi::Buffer<ffi::S32>> iterations,
                      ffi::Result<ffi::Buffer<ffi::S32>> status,
                      ffi::Result<ffi::Buffer<ffi::S32>> dense, int64_t k, int64_t max_iters,
                      double tol, int64_t guard) {
  auto da = a.dimensions(), dx = x0.dimensions();
  const size_t r = da.size();
  if (r < 2 || dx.size() != r || da[r - 1] != da[r - 2] || dx[r - 2] != da[r - 1]) {
    return ffi::Error::InvalidArgument("lobpcg: a (..., n, n) and x0 (..., n, m) expected");
  }
  const int n = static_cast<int>(da[r - 1]), m = static_cast<int>(dx[r - 1]);
  const int64_t batch = leading_count(a, 2);
  lobpcg::Options o;
  o.k = static_cast<int>(k);
  o.max_iters = static_cast<int>(max_iters);
  o.tol = tol;
  o.guard = static_cast<int>(guard);
  if (o.k < 1 || o.k > n || m < o.k) return ffi::Error::InvalidArgument("lobpcg: need 1 <= k <= m, k <= n");
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    const T* ap = static_cast<const T*>(a.untyped_data());
    const T* xp = static_cast<const T*>(x0.untyped_data());
    T* w = static_cast<T*>(eigvals->untyped_data());
    T* v = static_cast<T*>(eigvecs->untyped_data());
    T* res = static_cast<T*>(residuals->untyped_data());
    parallel_for(batch, batch_workers(batch, n), [&](int, int64_t b) {
      const T* mat = ap + b * n * n;
      lobpcg::Apply<T> apply = [mat](const T* x, int rows, int cols, T* out) {
        const T one = T(1), zero = T(0);
        Lapack<T>::gemm("N", "N", &rows, &cols, &rows, &one, mat, &rows, x, &rows, &zero, out, &rows);
      };
      lobpcg::Result<T> result{w + b * o.k, v + b * n * o.k, res + b * o.k,
                               iterations->typed_data() + b, status->typed_data() + b,
                               dense->typed_data() + b};
      lobpcg::largest<T>(n, apply, mat, xp + b * n * m, m, o, result);
    });
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "lobpcg", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcLobpcgCpu, linalg_core::LobpcgImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("max_iters")
                                  .Attr<double>("tol")
                                  .Attr<int64_t>("guard"));
