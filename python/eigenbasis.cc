// NumPy entry point for the eigenbasis refresh, and its status / method codes. Binding only:
// linalg_core/eigenbasis.py validated the arguments and made `a` and `basis` C-contiguous of one
// dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <type_traits>

#include "arrays.h"
#include "eigenbasis.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
py::tuple refresh_impl(const py::array& a_in, const std::optional<py::array>& basis_in,
                       const eigenbasis::Options& o) {
  auto a = carray<T>::ensure(a_in);
  carray<T> basis;
  if (basis_in) basis = carray<T>::ensure(*basis_in);
  const int nd = static_cast<int>(a.ndim());
  eigenbasis::Shape shape;
  shape.n = a.shape(nd - 1);
  shape.batch = shape.n > 0 ? a.size() / (shape.n * shape.n) : 0;
  carray<T> basis_out(batch_shape(a, 2, {shape.n, shape.n})), eigvals(batch_shape(a, 2, {shape.n})),
      off_diagonal(batch_shape(a, 2)), residual(batch_shape(a, 2)), orthogonality(batch_shape(a, 2));
  py::array_t<int32_t> perm(batch_shape(a, 2, {shape.n})), iterations(batch_shape(a, 2)),
      method(batch_shape(a, 2)), status(batch_shape(a, 2));
  eigenbasis::Args<T> args{a.data(),
                           basis_in ? basis.data() : nullptr,
                           basis_out.mutable_data(),
                           eigvals.mutable_data(),
                           perm.mutable_data(),
                           off_diagonal.mutable_data(),
                           residual.mutable_data(),
                           orthogonality.mutable_data(),
                           iterations.mutable_data(),
                           method.mutable_data(),
                           status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = eigenbasis::refresh<T>(shape, args, o);
  }
  if (!ok) throw py::value_error("eigenbasis_refresh: invalid shape or options for the kernel");
  return py::make_tuple(basis_out, eigvals, perm, off_diagonal, residual, orthogonality, iterations,
                        method, status);
}

}  // namespace

void bind_eigenbasis(py::module_& m) {
  py::dict status, methods;
#define LC_EIGENBASIS_STATUS_ENTRY(name, value, text) status[text] = static_cast<int>(eigenbasis::Status::name);
  LC_EIGENBASIS_STATUS(LC_EIGENBASIS_STATUS_ENTRY)
#undef LC_EIGENBASIS_STATUS_ENTRY
#define LC_EIGENBASIS_METHOD_ENTRY(name, value, text) methods[text] = static_cast<int>(eigenbasis::Method::name);
  LC_EIGENBASIS_METHOD(LC_EIGENBASIS_METHOD_ENTRY)
#undef LC_EIGENBASIS_METHOD_ENTRY
  m.attr("eigenbasis_status") = status;
  m.attr("eigenbasis_methods") = methods;
  py::list option_names;
#define LC_EIGENBASIS_OPTION_NAME(type, name, default_value) option_names.append(#name);
  LC_EIGENBASIS_OPTIONS(LC_EIGENBASIS_OPTION_NAME)
#undef LC_EIGENBASIS_OPTION_NAME
  m.attr("eigenbasis_options") = option_names;
  m.def("eigenbasis_orthonormality_tol", [](const py::dtype& dtype, int64_t n) {
    return dtype.is(py::dtype::of<float>()) ? eigenbasis::orthonormality_tol<float>(n)
                                            : eigenbasis::orthonormality_tol<double>(n);
  });
  m.def("eigenbasis_probes", [](int64_t n) {
    carray<double> x(std::vector<py::ssize_t>{static_cast<py::ssize_t>(n), eigenbasis::kProbes});
    for (int64_t i = 0; i < n; ++i) {
      for (int k = 0; k < eigenbasis::kProbes; ++k) x.mutable_data()[i * eigenbasis::kProbes + k] = eigenbasis::probe_sign(i, k);
    }
    return x;
  });
  m.def(
      "eigenbasis_refresh",
      [](const py::array& a, const std::optional<py::array>& basis, const py::dict& attrs) {
        eigenbasis::Options o;
        for (const auto& item : attrs) {
          const std::string key = py::str(item.first);
          bool known = false;
#define LC_EIGENBASIS_OPTION_KNOWN(type, name, default_value) known = known || key == #name;
          LC_EIGENBASIS_OPTIONS(LC_EIGENBASIS_OPTION_KNOWN)
#undef LC_EIGENBASIS_OPTION_KNOWN
          if (!known) throw py::value_error("eigenbasis_refresh: unknown option " + key);
        }
        const char* bad = eigenbasis::decode_options(
            [&](const char* name, auto* value) {
              using V = std::remove_pointer_t<decltype(value)>;
              if (!attrs.contains(name)) return true;
              try {
                *value = py::cast<V>(attrs[name]);
              } catch (const py::cast_error&) {
                return false;
              }
              return true;
            },
            &o);
        if (bad != nullptr) throw py::value_error(std::string("eigenbasis_refresh: option ") + bad + " has the wrong type");
        return a.dtype().is(py::dtype::of<float>()) ? refresh_impl<float>(a, basis, o)
                                                     : refresh_impl<double>(a, basis, o);
      },
      py::arg("a"), py::arg("basis"), py::arg("attrs"));
}

}  // namespace linalg_core
