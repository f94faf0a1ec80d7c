// NumPy entry point for the shared-basis update. Binding only: linalg_core/shared_basis.py
// validated the arguments and built y0.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "arrays.h"
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
  shared_basis::Status status;
  {
    py::gil_scoped_release release;
    status = shared_basis::update<T>(s, a);
  }
  return py::make_tuple(basis_out, coeffs_out, escaped_out, direction, step, static_cast<int32_t>(status));
}

}  // namespace

void bind_shared_basis(py::module_& m) {
  LC_EXPORT_CODES(m, "shared_basis_status", LC_SHARED_BASIS_STATUS);

  m.def("shared_basis_update", [](const py::array& basis, const py::array& coeffs, const py::array& escaped,
                                  const py::array& grads, const py::array& y0, double eps, int power_iters) {
    return basis.dtype().is(py::dtype::of<float>())
               ? update_impl<float>(basis, coeffs, escaped, grads, y0, eps, power_iters)
               : update_impl<double>(basis, coeffs, escaped, grads, y0, eps, power_iters);
  });
  // The kernel-internal small_eigh (small_eigh.h), exposed for its tests and benchmark only.
  m.def("_small_eigh", [](const py::array& a) {
    auto run = [](auto tag) {
      using T = decltype(tag);
      return [scratch = std::vector<T>()](int n, T* col, T* w) mutable {
        return small_eigh<T>(n, col, w, scratch);
      };
    };
    return a.dtype().is(py::dtype::of<float>()) ? eigh_stack<float>(a, run(float()))
                                                 : eigh_stack<double>(a, run(double()));
  });
}

}  // namespace linalg_core
