// Power-of-two scaling shared by the kernels that prescale their operands (kron.cc,
// shared_basis.cc): multiplying by 2^e is exact unless the result leaves the normal range.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "finite.h"  // max_abs, finite_max_abs

namespace linalg_core {

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

// x <- x 2^e elementwise. Where 2^e is a normal number of T the product is a multiplication,
// which rounds exactly as ldexp does (exact unless the result leaves the normal range).
template <typename T>
void scale_by_power_of_two(T* x, size_t count, int e) {
  const T f = std::ldexp(T(1), e);
  if (std::isnormal(f)) {
#pragma omp simd
    for (size_t i = 0; i < count; ++i) x[i] *= f;
    return;
  }
  for (size_t i = 0; i < count; ++i) x[i] = std::ldexp(x[i], e);
}

}  // namespace linalg_core
