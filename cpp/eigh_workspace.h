// Symmetric eigendecomposition (syevd) with its workspace sized by a query on each call, for
// the kernels that decompose matrices of varying size (Rayleigh-Ritz blocks, k x k coefficients,
// square roots); fixed-size batches query once instead (fd.cc, roots.cc).
#pragma once

#include <algorithm>
#include <vector>

#include "finite.h"
#include "lapack.h"

namespace linalg_core {

// a (n x n, column-major, lower triangle read) <- eigenvectors; w <- eigenvalues, ascending.
// False when LAPACK reports failure or the eigenvalues are not finite.
template <typename T>
bool eigh_inplace(int n, T* a, T* w, std::vector<T>& work, std::vector<int>& iwork) {
  int info = 0, lw = -1, liw = -1, iq = 0;
  T q = T(0);
  Lapack<T>::syevd("V", "L", &n, a, &n, w, &q, &lw, &iq, &liw, &info);
  if (work.size() < static_cast<size_t>(q) + 1) work.resize(static_cast<size_t>(q) + 1);
  if (iwork.size() < static_cast<size_t>(std::max(1, iq))) iwork.resize(std::max(1, iq));
  lw = static_cast<int>(work.size());
  liw = static_cast<int>(iwork.size());
  Lapack<T>::syevd("V", "L", &n, a, &n, w, work.data(), &lw, iwork.data(), &liw, &info);
  return info == 0 && all_finite(w, static_cast<size_t>(n));
}

}  // namespace linalg_core
