// Array helpers shared by the NumPy bindings (binding plumbing only, no math).
#pragma once

#include <pybind11/numpy.h>

#include <vector>

namespace linalg_core {

template <typename T>
using carray = pybind11::array_t<T, pybind11::array::c_style>;

// The leading (batch) axes of `a`, all but its last `trailing`, followed by `tail`: the shape of
// an output with one `tail`-shaped result per batch element.
inline std::vector<pybind11::ssize_t> batch_shape(const pybind11::array& a, int trailing,
                                                  const std::vector<pybind11::ssize_t>& tail = {}) {
  std::vector<pybind11::ssize_t> dims(a.shape(), a.shape() + a.ndim() - trailing);
  dims.insert(dims.end(), tail.begin(), tail.end());
  return dims;
}

}  // namespace linalg_core
