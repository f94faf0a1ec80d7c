// NumPy entry points for the FD kernels. Binding only: the Python layer (linalg_core/fd.py) has
// already validated shapes, dtypes and values and made every operand C-contiguous.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "arrays.h"
#include "fd.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

template <typename T>
py::tuple update_impl(const py::array& basis_in, const py::array& eigvals_in,
                      const py::array& escaped_in, const py::array& term_in,
                      const py::array& beta_in, bool term_is_matrix, int method) {
  auto basis = carray<T>::ensure(basis_in);
  auto eigvals = carray<T>::ensure(eigvals_in);
  auto escaped = carray<T>::ensure(escaped_in);
  auto term = carray<T>::ensure(term_in);
  auto beta = carray<T>::ensure(beta_in);
  const int nd = static_cast<int>(basis.ndim());
  fd::UpdateShape shape;
  shape.dim = basis.shape(nd - 2);
  shape.rank = basis.shape(nd - 1);
  shape.columns = term.shape(term.ndim() - 1);
  shape.term_is_matrix = term_is_matrix;
  shape.batch = basis.size() / (shape.dim * shape.rank);
  const auto batch = batch_shape(basis, 2);

  carray<T> basis_out(shape_of(basis)), eigvals_out(shape_of(eigvals)), escaped_out(batch),
      step_mass(batch), residual(batch);
  py::array_t<int32_t> method_out(batch), status(batch);
  fd::UpdateArgs<T> a{basis.data(),
                      eigvals.data(),
                      escaped.data(),
                      term.data(),
                      beta.data(),
                      basis_out.mutable_data(),
                      eigvals_out.mutable_data(),
                      escaped_out.mutable_data(),
                      step_mass.mutable_data(),
                      residual.mutable_data(),
                      method_out.mutable_data(),
                      status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = fd::update<T>(shape, a, static_cast<fd::Method>(method));
  }
  if (!ok) throw py::value_error("fd_update: invalid shape or method for the FD kernel");
  return py::make_tuple(basis_out, eigvals_out, escaped_out, step_mass, residual, method_out,
                        status);
}

template <typename T>
py::tuple apply_impl(const py::array& basis_in, const py::array& eigvals_in,
                     const py::array& escaped_in, const py::array& x_in, double p, double eps) {
  auto basis = carray<T>::ensure(basis_in);
  auto eigvals = carray<T>::ensure(eigvals_in);
  auto escaped = carray<T>::ensure(escaped_in);
  auto x = carray<T>::ensure(x_in);
  const int nd = static_cast<int>(basis.ndim());
  fd::ApplyShape shape;
  shape.dim = basis.shape(nd - 2);
  shape.rank = basis.shape(nd - 1);
  shape.columns = x.shape(x.ndim() - 1);
  shape.batch = basis.size() / (shape.dim * shape.rank);
  carray<T> y(shape_of(x));
  py::array_t<uint8_t> finite(batch_shape(x, 2));
  {
    py::gil_scoped_release release;
    fd::apply_inverse_root<T>(shape, basis.data(), eigvals.data(), escaped.data(), x.data(), p,
                              eps, y.mutable_data(), finite.mutable_data());
  }
  return py::make_tuple(y, finite);
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

}  // namespace

void bind_fd(py::module_& m) {
  LC_EXPORT_CODES(m, "fd_status", LC_FD_STATUS);
  LC_EXPORT_CODES(m, "fd_methods", LC_FD_METHODS);

  m.def(
      "fd_update",
      [](const py::array& basis, const py::array& eigvals, const py::array& escaped,
         const py::array& term, const py::array& beta, bool term_is_matrix, int method) {
        return is_float32(basis)
                   ? update_impl<float>(basis, eigvals, escaped, term, beta, term_is_matrix, method)
                   : update_impl<double>(basis, eigvals, escaped, term, beta, term_is_matrix, method);
      },
      py::arg("basis"), py::arg("eigvals"), py::arg("escaped_mass"), py::arg("term"),
      py::arg("beta"), py::arg("term_is_matrix"), py::arg("method"));
  m.def(
      "fd_apply_inverse_root",
      [](const py::array& basis, const py::array& eigvals, const py::array& escaped,
         const py::array& x, double p, double eps) {
        return is_float32(basis) ? apply_impl<float>(basis, eigvals, escaped, x, p, eps)
                                 : apply_impl<double>(basis, eigvals, escaped, x, p, eps);
      },
      py::arg("basis"), py::arg("eigvals"), py::arg("escaped_mass"), py::arg("x"), py::arg("p"),
      py::arg("eps"));
  m.def("fd_choose_method", [](int64_t dim, int64_t rank, int64_t columns, bool term_is_matrix) {
    fd::UpdateShape s;
    s.dim = dim;
    s.rank = rank;
    s.columns = columns;
    s.term_is_matrix = term_is_matrix;
    return static_cast<int>(fd::choose_method(s));
  });
}

}  // namespace linalg_core
