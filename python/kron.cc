// NumPy entry points for Kronecker power iteration. Binding only: linalg_core/kron.py validated
// the arguments and built the option dict (the same one the FFI adapter decodes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "arrays.h"
#include "kron.h"

namespace py = pybind11;

namespace linalg_core {
namespace {

template <typename T>
kron::Shape shape_of(const carray<T>& s) {
  const int r = static_cast<int>(s.ndim());
  kron::Shape sh;
  sh.samples = s.shape(r - 3);
  sh.m = s.shape(r - 2);
  sh.n = s.shape(r - 1);
  sh.batch = s.size() / (sh.samples * sh.m * sh.n);
  return sh;
}

template <typename T>
py::tuple approx_impl(const py::array& samples_in, const kron::Options& o) {
  auto samples = carray<T>::ensure(samples_in);
  kron::Shape s = shape_of(samples);
  carray<T> left(batch_shape(samples, 3, {s.m, s.m})), right(batch_shape(samples, 3, {s.n, s.n})),
      sigma(batch_shape(samples, 3, {})), change(batch_shape(samples, 3, {}));
  py::array_t<int32_t> status(batch_shape(samples, 3, {}));
  kron::Args<T> a{samples.data(), left.mutable_data(), right.mutable_data(), sigma.mutable_data(),
                  change.mutable_data(), status.mutable_data()};
  bool ok;
  {
    py::gil_scoped_release release;
    ok = kron::approx<T>(s, a, o);
  }
  if (!ok) throw py::value_error("kron_approx: invalid shape or options for the kernel");
  return py::make_tuple(left, right, sigma, change, status);
}

template <typename T>
py::array cosine_impl(const py::array& samples_in, const py::array& left_in, const py::array& right_in) {
  auto samples = carray<T>::ensure(samples_in);
  auto left = carray<T>::ensure(left_in);
  auto right = carray<T>::ensure(right_in);
  kron::Shape s = shape_of(samples);
  carray<T> out(batch_shape(samples, 3, {}));
  {
    py::gil_scoped_release release;
    kron::cosine<T>(s, samples.data(), left.data(), right.data(), out.mutable_data());
  }
  return out;
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

}  // namespace

void bind_kron(py::module_& m) {
  LC_EXPORT_CODES(m, "kron_status", LC_KRON_STATUS);
  m.attr("kron_options") = option_names(kron::kOptionNames);

  m.def("kron_approx", [](const py::array& samples, const py::dict& attrs) {
    // The options by name: LC_KRON_OPTIONS, the list cpp/kron_ffi.cc decodes too.
    const auto o = decode_option_dict<kron::Options>(
        attrs, kron::kOptionNames, [](auto&& get, kron::Options* o) { return kron::decode_options(get, o); },
        "kron_approx");
    return is_float32(samples) ? approx_impl<float>(samples, o) : approx_impl<double>(samples, o);
  }, py::arg("samples"), py::arg("attrs"));
  m.def("kron_cosine", [](const py::array& samples, const py::array& left, const py::array& right) {
    return is_float32(samples) ? cosine_impl<float>(samples, left, right)
                               : cosine_impl<double>(samples, left, right);
  });
}

}  // namespace linalg_core
