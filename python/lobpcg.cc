// NumPy entry points for LOBPCG: explicit (batched) symmetric matrices, or a Python matvec.
// Binding only: linalg_core/lobpcg.py validated the arguments.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <vector>

#include "lapack.h"
#include "arrays.h"
#include "finite.h"
#include "lobpcg.h"
#include "parallel.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
py::tuple run(const py::object& a_or_matvec, const py::array& x0_in, int k, int max_iters,
              double tol, int guard, bool callable) {
  auto x0 = carray<T>::ensure(x0_in);
  const int r = static_cast<int>(x0.ndim());
  const int n = static_cast<int>(x0.shape(r - 2)), m = static_cast<int>(x0.shape(r - 1));
  const int64_t count = x0.size() / (static_cast<int64_t>(n) * m);
  auto with = [&](const std::vector<py::ssize_t>& tail) { return batch_shape(x0, 2, tail); };
  carray<T> w(with({k})), v(with({n, k})), res(with({k}));
  py::array_t<int32_t> iters(with({})), status(with({})), dense(with({}));
  lobpcg::Options o;
  o.k = k;
  o.max_iters = max_iters;
  o.tol = tol;
  o.guard = guard;
  auto result = [&](int64_t b) {
    return lobpcg::Result<T>{w.mutable_data() + b * k, v.mutable_data() + b * n * k,
                             res.mutable_data() + b * k, iters.mutable_data() + b,
                             status.mutable_data() + b, dense.mutable_data() + b};
  };
  if (callable) {
    py::function matvec = a_or_matvec.cast<py::function>();
    // X arrives column-major (n x cols): hand it to Python as an (n, cols) Fortran-order view.
    lobpcg::Apply<T> apply = [&](const T* x, int rows, int cols, T* out) {
      py::gil_scoped_acquire gil;
      py::array_t<T> view({rows, cols}, {sizeof(T), sizeof(T) * rows}, x);
      py::array_t<T, py::array::f_style | py::array::forcecast> ax = matvec(view);
      if (ax.ndim() != 2 || ax.shape(0) != rows || ax.shape(1) != cols) {
        std::string got = "(";
        for (py::ssize_t d = 0; d < ax.ndim(); ++d) got += (d ? ", " : "") + std::to_string(ax.shape(d));
        throw py::value_error("a (matvec) must return an array of shape (n, cols) = (" +
                              std::to_string(rows) + ", " + std::to_string(cols) + "), got " +
                              got + (ax.ndim() == 1 ? ",)" : ")"));
      }
      if (!all_finite(ax.data(), static_cast<size_t>(rows) * cols)) {
        throw py::value_error("a (matvec) returned NaN or Inf");
      }
      std::memcpy(out, ax.data(), sizeof(T) * rows * cols);
    };
    py::gil_scoped_release release;
    lobpcg::largest<T>(n, apply, nullptr, x0.data(), m, o, result(0));
  } else {
    auto a = carray<T>::ensure(a_or_matvec);
    const T* ap = a.data();
    const T* xp = x0.data();
    py::gil_scoped_release release;
    parallel_for(count, batch_workers(count, n), [&](int, int64_t b) {
      const T* mat = ap + b * n * n;
      lobpcg::Apply<T> apply = [mat](const T* x, int rows, int cols, T* out) {
        const T one = T(1), zero = T(0);
        Lapack<T>::gemm("N", "N", &rows, &cols, &rows, &one, mat, &rows, x, &rows, &zero, out, &rows);
      };
      lobpcg::largest<T>(n, apply, mat, xp + b * n * m, m, o, result(b));
    });
  }
  return py::make_tuple(w, v, res, iters, status, dense);
}

}  // namespace

void bind_lobpcg(py::module_& m) {
  LC_EXPORT_CODES(m, "lobpcg_status", LC_LOBPCG_STATUS);

  m.attr("lobpcg_svqb_drop") = lobpcg::kSvqbDrop;
  m.attr("lobpcg_tol_floor") = lobpcg::kTolFloor;
  m.def("lobpcg", [](const py::object& a, const py::array& x0, int k, int max_iters, double tol,
                     int guard, bool callable) {
    return x0.dtype().is(py::dtype::of<float>())
               ? run<float>(a, x0, k, max_iters, tol, guard, callable)
               : run<double>(a, x0, k, max_iters, tol, guard, callable);
  });
}

}  // namespace linalg_core
