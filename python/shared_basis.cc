// NumPy entry point for the shared-basis update. Binding only: linalg_core/shared_basis.py
// validated the arguments and built y0.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "shared_basis.h"
#include "small_eigh.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
py::tuple update_impl(const py::array& basis_in, const py::array& coeffs_in, const py::array& escaped_in,
                      const py::array& grads_in, const py::array& y0_in, double eps, int power_iters) {
  using carray = py::array_t<T, py::array::c_style>;
  auto basis = carray::ensure(basis_in), coeffs = carray::ensure(coeffs_in),
       escaped = carray::ensure(escaped_in), grads = carray::ensure(grads_in), y0 = carray::ensure(y0_in);
  shared_basis::Shape s;
  s.blocks = grads.shape(0);
  s.dim = grads.shape(1);
  s.rank = basis.shape(1);
  s.sketch = y0.shape(1);
  s.power_iters = power_iters;
  carray basis_out({s.dim, s.rank}), coeffs_out({s.blocks, s.rank, s.rank}), escaped_out({s.blocks}),
      direction({s.blocks, s.dim}), step({s.blocks});
  shared_basis::Args<T> a{basis.data(), coeffs.data(), escaped.data(), grads.data(), y0.data(), eps,
                          basis_out.mutable_data(), coeffs_out.mutable_data(), escaped_out.mutable_data(),
                          direction.mutable_data(), step.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = shared_basis::update<T>(s, a);
  }
  return py::make_tuple(basis_out, coeffs_out, escaped_out, direction, step, ok);
}

// Eigendecompositions of a C-contiguous stack (..., n, n) of symmetric matrices with the
// kernel-internal small_eigh (exposed for its tests and benchmark only). Returns ascending
// eigenvalues (..., n), eigenvectors as columns (..., n, n) and a per-matrix success flag.
template <typename T>
py::tuple small_eigh_impl(const py::array& a_in) {
  using carray = py::array_t<T, py::array::c_style>;
  auto a = carray::ensure(a_in);
  const int nd = static_cast<int>(a.ndim());
  const py::ssize_t n = a.shape(nd - 1);
  std::vector<py::ssize_t> lead(a.shape(), a.shape() + nd - 2), wshape(lead), ishape(lead);
  wshape.push_back(n);
  py::ssize_t count = 1;
  for (auto d : lead) count *= d;
  carray vecs(std::vector<py::ssize_t>(a.shape(), a.shape() + nd)), w(wshape);
  py::array_t<bool> ok(ishape);
  {
    py::gil_scoped_release release;
    std::vector<T> col(static_cast<size_t>(n * n)), scratch;
    for (py::ssize_t b = 0; b < count; ++b) {
      const T* src = a.data() + b * n * n;
      for (py::ssize_t r = 0; r < n; ++r) {  // row-major symmetric in, column-major out
        for (py::ssize_t c = 0; c < n; ++c) col[r + c * n] = src[r * n + c];
      }
      ok.mutable_data()[b] = small_eigh<T>(static_cast<int>(n), col.data(), w.mutable_data() + b * n, scratch);
      T* dst = vecs.mutable_data() + b * n * n;
      for (py::ssize_t r = 0; r < n; ++r) {
        for (py::ssize_t c = 0; c < n; ++c) dst[r * n + c] = col[r + c * n];
      }
    }
  }
  return py::make_tuple(w, vecs, ok);
}

}  // namespace

void bind_shared_basis(py::module_& m) {
  m.def("shared_basis_update", [](const py::array& basis, const py::array& coeffs, const py::array& escaped,
                                  const py::array& grads, const py::array& y0, double eps, int power_iters) {
    return basis.dtype().is(py::dtype::of<float>())
               ? update_impl<float>(basis, coeffs, escaped, grads, y0, eps, power_iters)
               : update_impl<double>(basis, coeffs, escaped, grads, y0, eps, power_iters);
  });
  m.def("_small_eigh", [](const py::array& a) {
    return a.dtype().is(py::dtype::of<float>()) ? small_eigh_impl<float>(a) : small_eigh_impl<double>(a);
  });
}

}  // namespace linalg_core
