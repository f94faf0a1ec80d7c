// Array helpers shared by the NumPy bindings (binding plumbing only, no math).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

// {name: value} of an X-macro list of (enumerator, name, value) (cpp/codes.h), as a module
// attribute: the Python layer reads its status and method dicts from these.
#define LC_CODE_ITEM(enumerator, name, value) codes[#name] = static_cast<int>(value);
#define LC_EXPORT_CODES(module, attribute, LIST) \
  do {                                          \
    pybind11::dict codes;                       \
    LIST(LC_CODE_ITEM)                          \
    (module).attr(attribute) = codes;           \
  } while (0)

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

// Eigendecompositions of a C-contiguous stack (..., n, n) of symmetric matrices by a
// kernel-internal solver, for its tests and benchmarks: `solve(n, a, w)` overwrites the
// column-major n x n `a` with eigenvectors, writes ascending eigenvalues to `w` and returns
// success. Returns (w (..., n), eigenvectors as columns (..., n, n), ok (...)).
template <typename T, typename Solve>
pybind11::tuple eigh_stack(const pybind11::array& a_in, Solve&& solve) {
  auto a = carray<T>::ensure(a_in);
  const pybind11::ssize_t n = a.shape(a.ndim() - 1);
  const pybind11::ssize_t count = n > 0 ? a.size() / (n * n) : 0;
  carray<T> vecs(std::vector<pybind11::ssize_t>(a.shape(), a.shape() + a.ndim()));
  carray<T> w(batch_shape(a, 2, {n}));
  pybind11::array_t<bool> ok(batch_shape(a, 2));
  {
    pybind11::gil_scoped_release release;
    std::vector<T> col(static_cast<size_t>(n * n));
    for (pybind11::ssize_t b = 0; b < count; ++b) {
      const T* src = a.data() + b * n * n;
      for (pybind11::ssize_t r = 0; r < n; ++r) {  // row-major symmetric in, column-major out
        for (pybind11::ssize_t c = 0; c < n; ++c) col[r + c * n] = src[r * n + c];
      }
      ok.mutable_data()[b] = solve(static_cast<int>(n), col.data(), w.mutable_data() + b * n);
      T* dst = vecs.mutable_data() + b * n * n;
      for (pybind11::ssize_t r = 0; r < n; ++r) {
        for (pybind11::ssize_t c = 0; c < n; ++c) dst[r * n + c] = col[r + c * n];
      }
    }
  }
  return pybind11::make_tuple(w, vecs, ok);
}

}  // namespace linalg_core
