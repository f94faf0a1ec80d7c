// NumPy entry point for the polar factor. Binding only: linalg_core/polar.py validated the
// arguments and built the option dict (the same one the FFI adapter decodes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>

#include "arrays.h"
#include "polar.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

// The scalar options by name (LC_POLAR_OPTIONS, the list cpp/polar_ffi.cc decodes too).
polar::Options decode_options(const py::dict& attrs) {
  polar::Options o;
#define LC_POLAR_DECODE(type, name)                                                     \
  if (!attrs.contains(#name)) throw py::value_error("polar: option '" #name "' missing"); \
  o.name = attrs[#name].cast<type>();
  LC_POLAR_OPTIONS(LC_POLAR_DECODE)
#undef LC_POLAR_DECODE
  return o;
}

template <typename T>
py::tuple polar_impl(const py::array& a_in, const py::dict& attrs) {
  auto a = carray<T>::ensure(a_in);
  auto schedule = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(attrs["schedule"]);
  if (!schedule || schedule.size() % 3 != 0) throw py::value_error("polar: schedule must have length 3 * steps");
  const int nd = static_cast<int>(a.ndim());
  polar::Shape s;
  s.m = a.shape(nd - 2);
  s.n = a.shape(nd - 1);
  s.batch = s.m * s.n > 0 ? a.size() / (s.m * s.n) : 0;
  const polar::Options o = decode_options(attrs);
  carray<T> q(std::vector<py::ssize_t>(a.shape(), a.shape() + nd)), residual(batch_shape(a, 2)),
      lower(batch_shape(a, 2)), upper(batch_shape(a, 2)), norm(batch_shape(a, 2));
  py::array_t<int32_t> iterations(batch_shape(a, 2)), method(batch_shape(a, 2)), status(batch_shape(a, 2));
  polar::Args<T> args{a.data(), schedule.data(), static_cast<int64_t>(schedule.size() / 3), q.mutable_data(),
                      residual.mutable_data(), lower.mutable_data(), upper.mutable_data(), norm.mutable_data(),
                      iterations.mutable_data(), method.mutable_data(), status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = polar::polar<T>(s, args, o);
  }
  if (!ok) throw py::value_error("polar: invalid shape or options for the kernel");
  return py::make_tuple(q, residual, lower, upper, norm, iterations, method, status);
}

}  // namespace

void bind_polar(py::module_& m) {
  m.def("polar", [](const py::array& a, const py::dict& attrs) {
    return a.dtype().is(py::dtype::of<float>()) ? polar_impl<float>(a, attrs) : polar_impl<double>(a, attrs);
  }, py::arg("a"), py::arg("attrs"));
  py::dict status, methods;
#define LC_POLAR_EXPORT(name, value) status[#name] = value;
  LC_POLAR_STATUS(LC_POLAR_EXPORT)
#undef LC_POLAR_EXPORT
#define LC_POLAR_EXPORT(name, value) methods[#name] = value;
  LC_POLAR_METHODS(LC_POLAR_EXPORT)
#undef LC_POLAR_EXPORT
  m.attr("polar_status") = status;
  m.attr("polar_methods") = methods;
  py::list options;
#define LC_POLAR_NAME(type, name) options.append(#name);
  LC_POLAR_OPTIONS(LC_POLAR_NAME)
#undef LC_POLAR_NAME
  m.attr("polar_options") = options;
}

}  // namespace linalg_core
