// Array helpers shared by the NumPy bindings (binding plumbing only, no math).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <type_traits>
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

// A primitive's Options from the attribute dict its Python layer built: `decode(get, &o)` is the
// primitive's decode_options over its X-macro list, `names` that list's names. Every listed key
// must be present with its field's type and no other key may be (a ValueError naming the key), so
// a list and the dict cannot drift apart silently. The FFI adapters decode the same list.
template <typename Options, typename Names, typename Decode>
Options decode_option_dict(const pybind11::dict& attrs, const Names& names, Decode&& decode,
                           const std::string& primitive) {
  for (auto item : attrs) {
    const std::string key = pybind11::str(item.first);
    if (std::none_of(std::begin(names), std::end(names), [&](const char* name) { return key == name; })) {
      throw pybind11::value_error(primitive + ": unknown option '" + key + "'");
    }
  }
  Options o;
  const char* bad = decode(
      [&](const char* name, auto* value) {
        using V = std::remove_pointer_t<decltype(value)>;
        if (!attrs.contains(name)) return false;
        try {
          *value = pybind11::cast<V>(attrs[name]);
        } catch (const pybind11::cast_error&) {
          return false;
        }
        return true;
      },
      &o);
  if (bad != nullptr) throw pybind11::value_error(primitive + ": option '" + bad + "' missing or of the wrong type");
  return o;
}

// The names of an option list as a Python list (the module attribute the contract test reads).
template <typename Names>
pybind11::list option_names(const Names& names) {
  pybind11::list out;
  for (const char* name : names) out.append(name);
  return out;
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
