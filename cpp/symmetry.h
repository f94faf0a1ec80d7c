// The symmetry check of the symmetric routines' inputs, one rule for every kernel (the rule of
// linalg_core._validation.symmetry_tolerance): A (n x n) is symmetric when
// max|A - A^T| <= 8 n eps max|A|. A matrix formed symmetrically in exact arithmetic (G G^T,
// Q diag(l) Q^T) but evaluated in floating point differs from its transpose by ~n eps max|A|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "finite.h"

namespace linalg_core {

// Copies the column-major upper triangle of an n x n matrix into its lower one (SYRK writes one
// triangle).
template <typename T>
void mirror_upper(int n, T* a) {
  for (int j = 0; j < n; ++j) {
    for (int i = j + 1; i < n; ++i) a[i + static_cast<size_t>(j) * n] = a[j + static_cast<size_t>(i) * n];
  }
}

template <typename T>
double symmetry_tolerance(int n) {
  return 8.0 * std::max(n, 1) * static_cast<double>(std::numeric_limits<T>::epsilon());
}

struct SymmetryScan {
  bool finite = true;
  double max_abs = 0.0;
  double max_asymmetry = 0.0;
};

template <typename T>
bool is_symmetric(const SymmetryScan& scan, int n) {
  return scan.finite && scan.max_asymmetry <= symmetry_tolerance<T>(n) * scan.max_abs;
}

// Finiteness, max|A| and max|A - A^T| of an n x n matrix (either storage order) in one pass for
// the first two and one over the upper triangle for the last, in 32 x 32 tiles: the transposed
// tile is copied first so that both operands of the comparison are read with unit stride.
template <typename T>
SymmetryScan scan_symmetry(int n, const T* a) {
  constexpr int kTile = 32;
  SymmetryScan out;
  const size_t nn = static_cast<size_t>(n) * n;
  const FiniteMax<T> fm = finite_max_abs(a, nn);
  out.finite = fm.finite;
  out.max_abs = static_cast<double>(fm.max_abs);
  if (!fm.finite) return out;
  T transposed[kTile * kTile];
  T asym = T(0);
  for (int jb = 0; jb < n; jb += kTile) {
    const int jw = std::min(kTile, n - jb);
    for (int ib = 0; ib <= jb; ib += kTile) {
      const int iw = std::min(kTile, n - ib);
      // transposed[r][c] = a(ib + c, jb + r) for the tile at rows ib.., columns jb.. of a's
      // storage; it is compared with a(jb + r, ib + c).
      for (int c = 0; c < iw; ++c) {
        const T* src = a + jb + static_cast<size_t>(ib + c) * n;
        for (int r = 0; r < jw; ++r) transposed[r * kTile + c] = src[r];
      }
      for (int r = 0; r < jw; ++r) {
        const T* row = a + ib + static_cast<size_t>(jb + r) * n;
        const T* t = transposed + r * kTile;
#pragma omp simd reduction(max : asym)
        for (int c = 0; c < iw; ++c) {
          const T d = std::abs(row[c] - t[c]);
          asym = asym > d ? asym : d;
        }
      }
    }
  }
  out.max_asymmetry = static_cast<double>(asym);
  return out;
}

}  // namespace linalg_core
