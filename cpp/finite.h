// Finiteness and size scans over an array, shared by the kernels' input and output checks.
//
// Every call of a kernel passes its operands and its results through these scans, so they are
// written to vectorise: `omp simd` reductions (compiled with -fopenmp-simd) let the compiler
// split the sums and maxima into lanes, which it may not do on its own because floating-point
// addition is not associative. A serial sum over a few million entries costs several times the
// memory traffic of the pass.
#pragma once

#include <cmath>
#include <cstddef>

namespace linalg_core {

// True when no element is NaN or Inf: x * 0 is 0 for finite x and NaN otherwise, and a sum
// propagates NaN, so one branch-free pass answers.
template <typename T>
bool all_finite(const T* x, size_t count) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (size_t i = 0; i < count; ++i) acc += x[i] * T(0);
  return acc == T(0);
}

// max |x_i| (0 for count = 0). NaN entries are not seen by the maximum: callers that need
// finiteness as well use finite_max_abs.
template <typename T>
T max_abs(const T* x, size_t count) {
  T v = T(0);
#pragma omp simd reduction(max : v)
  for (size_t i = 0; i < count; ++i) {
    const T a = std::abs(x[i]);
    v = v > a ? v : a;
  }
  return v;
}

// Both in one pass over memory: whether every entry is finite, and the largest magnitude.
template <typename T>
struct FiniteMax {
  bool finite = true;
  T max_abs = T(0);
};

template <typename T>
FiniteMax<T> finite_max_abs(const T* x, size_t count) {
  T acc = T(0), v = T(0);
#pragma omp simd reduction(+ : acc) reduction(max : v)
  for (size_t i = 0; i < count; ++i) {
    acc += x[i] * T(0);
    const T a = std::abs(x[i]);
    v = v > a ? v : a;
  }
  return {acc == T(0), v};
}

// ||x||_2 of `count` entries, accumulated in double (no overflow for float; double callers keep
// their entries in range by prescaling).
template <typename T>
double frobenius(const T* x, size_t count) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < count; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s);
}

}  // namespace linalg_core
