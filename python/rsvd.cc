// NumPy entry points for the randomized SVD / eigh kernels. Binding only: linalg_core/rsvd.py
// validated the arguments, built omega and the probes and the option dict (the same one the FFI
// adapters decode).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "arrays.h"
#include "rsvd.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
rsvd::Shape shape_of(const carray<T>& a, const carray<T>& omega, const carray<T>& probes) {
  const int r = static_cast<int>(a.ndim());
  rsvd::Shape s;
  s.m = a.shape(r - 2);
  s.n = a.shape(r - 1);
  s.l = omega.shape(r - 1);
  s.probes = probes.shape(r - 1);
  s.batch = a.size() / (s.m * s.n);
  return s;
}

// The options by name: LC_RSVD_OPTIONS, the list cpp/rsvd_ffi.cc decodes too.
rsvd::Options options_of(const py::dict& attrs, const char* primitive) {
  return decode_option_dict<rsvd::Options>(
      attrs, rsvd::kOptionNames, [](auto&& get, rsvd::Options* o) { return rsvd::decode_options(get, o); },
      primitive);
}

template <typename T>
py::tuple svd_impl(const py::array& a_in, const py::array& omega_in, const py::array& probes_in,
                   const rsvd::Options& o) {
  auto a = carray<T>::ensure(a_in), omega = carray<T>::ensure(omega_in),
       probes = carray<T>::ensure(probes_in);
  rsvd::Shape s = shape_of(a, omega, probes);
  carray<T> u(batch_shape(a, 2, {s.m, o.k})), sv(batch_shape(a, 2, {o.k})), vt(batch_shape(a, 2, {o.k, s.n})),
      err(batch_shape(a, 2, {}));
  py::array_t<int32_t> iterations(batch_shape(a, 2, {})), status(batch_shape(a, 2, {}));
  rsvd::SvdArgs<T> args{a.data(), omega.data(), probes.data(), u.mutable_data(), sv.mutable_data(),
                        vt.mutable_data(), err.mutable_data(), iterations.mutable_data(), status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = rsvd::svd<T>(s, args, o);
  }
  if (!ok) throw py::value_error("randomized_svd: invalid shape or options for the kernel");
  return py::make_tuple(u, sv, vt, err, iterations, status);
}

template <typename T>
py::tuple eigh_impl(const py::array& a_in, const py::array& omega_in, const py::array& probes_in,
                    const rsvd::Options& o) {
  auto a = carray<T>::ensure(a_in), omega = carray<T>::ensure(omega_in),
       probes = carray<T>::ensure(probes_in);
  rsvd::Shape s = shape_of(a, omega, probes);
  carray<T> w(batch_shape(a, 2, {o.k})), v(batch_shape(a, 2, {s.n, o.k})), err(batch_shape(a, 2, {}));
  py::array_t<int32_t> iterations(batch_shape(a, 2, {})), status(batch_shape(a, 2, {})),
      method(batch_shape(a, 2, {}));
  rsvd::EighArgs<T> args{a.data(), omega.data(), probes.data(), w.mutable_data(), v.mutable_data(),
                         err.mutable_data(), iterations.mutable_data(), status.mutable_data(),
                         method.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = rsvd::eigh<T>(s, args, o);
  }
  if (!ok) throw py::value_error("randomized_eigh: invalid shape or options for the kernel");
  return py::make_tuple(w, v, err, iterations, status, method);
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

}  // namespace

void bind_rsvd(py::module_& m) {
  LC_EXPORT_CODES(m, "rsvd_status", LC_RSVD_STATUS);
  LC_EXPORT_CODES(m, "rsvd_methods", LC_RSVD_METHODS);
  m.attr("rsvd_options") = option_names(rsvd::kOptionNames);

  m.def("randomized_svd", [](const py::array& a, const py::array& omega, const py::array& probes,
                             const py::dict& attrs) {
    const rsvd::Options o = options_of(attrs, "randomized_svd");
    return is_float32(a) ? svd_impl<float>(a, omega, probes, o) : svd_impl<double>(a, omega, probes, o);
  }, py::arg("a"), py::arg("omega"), py::arg("probes"), py::arg("attrs"));
  m.def("randomized_eigh", [](const py::array& a, const py::array& omega, const py::array& probes,
                              const py::dict& attrs) {
    const rsvd::Options o = options_of(attrs, "randomized_eigh");
    return is_float32(a) ? eigh_impl<float>(a, omega, probes, o) : eigh_impl<double>(a, omega, probes, o);
  }, py::arg("a"), py::arg("omega"), py::arg("probes"), py::arg("attrs"));
}

}  // namespace linalg_core
