// Power-of-two scaling shared by the kernels that prescale their operands (kron.cc,
// shared_basis.cc): multiplying by 2^e is exact unless the result leaves the normal range.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

namespace linalg_core {

template <typename T>
T max_abs(const T* x, size_t count) {
  T v = T(0);
  for (size_t i = 0; i < count; ++i) v = std::max(v, std::abs(x[i]));
  return v;
}

// The exponent e with v 2^-e in [1/2, 1) when v (> 0) lies outside [2^-lim, 2^lim],
// lim = max_exponent / 8 of T (16 for float, 128 for double), else 0 (no scaling). Inside that
// range the products of up to four entries that the callers form, their sums and the squares in
// their double-precision norms stay normal and finite.
template <typename T>
int safe_exponent(double v) {
  if (!(v > 0)) return 0;
  int e = 0;
  std::frexp(v, &e);
  const int lim = std::numeric_limits<T>::max_exponent / 8;
  return e >= -lim && e <= lim ? 0 : e;
}

// x <- x 2^e elementwise.
template <typename T>
void scale_by_power_of_two(T* x, size_t count, int e) {
  for (size_t i = 0; i < count; ++i) x[i] = std::ldexp(x[i], e);
}

}  // namespace linalg_core
