// Finiteness check over an array, shared by the kernels' input validation.
#pragma once

#include <cstddef>

namespace linalg_core {

// True when no element is NaN or Inf. Multiplying by zero turns Inf into NaN and summing
// propagates NaN: one branch-free pass instead of n std::isfinite calls.
template <typename T>
bool all_finite(const T* x, size_t count) {
  T acc = T(0);
  for (size_t i = 0; i < count; ++i) acc += x[i] * T(0);
  return acc == T(0);
}

}  // namespace linalg_core
