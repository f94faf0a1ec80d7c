// NumPy entry point for the inverse-root kernel. Binding only: linalg_core/roots.py validated the
// arguments, made `a` and `previous` C-contiguous of one dtype and built the option dict (the
// same one the FFI adapter decodes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "arrays.h"
#include "roots.h"
#include "tridiagonal_eigh.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
py::tuple inverse_root_impl(const py::array& a_in, const std::optional<py::array>& prev_in,
                            const roots::Options& o) {
  using carray = py::array_t<T, py::array::c_style>;
  auto a = carray::ensure(a_in);
  carray prev;
  if (prev_in) prev = carray::ensure(*prev_in);
  const int nd = static_cast<int>(a.ndim());
  roots::Shape shape;
  shape.n = a.shape(nd - 1);
  shape.batch = a.size() / (shape.n * shape.n);
  std::vector<py::ssize_t> batch(a.shape(), a.shape() + nd - 2);
  std::vector<py::ssize_t> full(a.shape(), a.shape() + nd);
  carray root(full), residual(batch), lambda_max(batch), ridge(batch);
  py::array_t<int32_t> iterations(batch), method(batch), status(batch);
  roots::Args<T> args{a.data(),
                      prev_in ? prev.data() : nullptr,
                      root.mutable_data(),
                      residual.mutable_data(),
                      lambda_max.mutable_data(),
                      ridge.mutable_data(),
                      iterations.mutable_data(),
                      method.mutable_data(),
                      status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = roots::inverse_root<T>(shape, args, o);
  }
  if (!ok) throw py::value_error("inverse_root: invalid options for the kernel");
  return py::make_tuple(root, residual, lambda_max, ridge, iterations, method, status);
}

}  // namespace

void bind_roots(py::module_& m) {
  LC_EXPORT_CODES(m, "root_status", LC_ROOT_STATUS);
  LC_EXPORT_CODES(m, "root_methods", LC_ROOT_METHODS);
  LC_EXPORT_CODES(m, "root_ridges", LC_ROOT_RIDGES);
  m.attr("root_options") = option_names(roots::kOptionNames);

  m.def(
      "inverse_root",
      [](const py::array& a, const std::optional<py::array>& previous, const py::dict& attrs) {
        // The options by name: LC_ROOT_OPTIONS, the list cpp/roots_ffi.cc decodes too.
        const auto o = decode_option_dict<roots::Options>(
            attrs, roots::kOptionNames, [](auto&& get, roots::Options* o) { return roots::decode_options(get, o); },
            "inverse_root");
        if ((o.has_previous != 0) != previous.has_value()) {
          throw py::value_error("inverse_root: option 'has_previous' must say whether previous is given");
        }
        return a.dtype().is(py::dtype::of<float>()) ? inverse_root_impl<float>(a, previous, o)
                                                     : inverse_root_impl<double>(a, previous, o);
      },
      py::arg("a"), py::arg("previous"), py::arg("attrs"));
  // The eigh root's decomposition (tridiagonal_eigh.h), exposed for its tests and benchmark only.
  m.def("_tridiagonal_eigh", [](const py::array& a) {
    auto run = [](auto tag) {
      using T = decltype(tag);
      return [](int n, T* col, T* w) {
        std::vector<T> z(static_cast<size_t>(n) * n);
        const bool ok = TridiagonalEigh<T>(n)(col, w, z.data());
        std::copy(z.begin(), z.end(), col);
        return ok;
      };
    };
    return a.dtype().is(py::dtype::of<float>()) ? eigh_stack<float>(a, run(float()))
                                                 : eigh_stack<double>(a, run(double()));
  });
}

}  // namespace linalg_core
