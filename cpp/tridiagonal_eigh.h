// Symmetric eigendecomposition A = V diag(w) V^T by the same algorithm as LAPACK's syevd --
// Householder tridiagonalisation A = Q T Q^T (?sytrd), divide and conquer on T = Z diag(w) Z^T
// (?stedc) -- with the back-transformation V = Q Z done here in blocks of 128 reflectors instead
// of ?ormtr's 32.
//
// Why: ?ormtr applies Q as block reflectors of NB = 32 columns (ilaenv's choice, capped at 64),
// so its 2 n^3 flops run as GEMMs with an inner dimension of 32 plus ?larfb's own serial copy
// loops, and at n ~ 1000 that takes several times one n^3 GEMM of the same flop count; blocks of
// 128 give the GEMMs an inner dimension they run at full rate (bench/bench_roots.py times it).
// Used by the eigh inverse root, the FD dense update and LOBPCG's dense path (the last two
// back-transform only the top vectors they keep).
//
// Back-transformation: Q = H_0 H_1 ... H_{n-2}, H_j = I - tau_j v_j v_j^T, v_j zero above row
// j + 1, one at row j + 1 and A[j+2:, j] below (sytrd's lower storage). A block of k consecutive
// reflectors is I - Y T Y^T with T upper triangular and (the UT transform: Joffrain, Low,
// Quintana-Orti, van de Geijn, ACM TOMS 32, 2006)
//     T^{-1} = diag(1 / tau) + strictly_upper(Y^T Y),
// so applying it to the rows it touches is W = Y^T Z, W <- T W (a triangular solve with T^{-1}),
// Z <- Z - Y W: two GEMMs of inner dimension k = 128 or m and one k x k x n TRSM. The blocks are
// applied last to first. A reflector with tau = 0 (H = I) gets a zero column and a unit diagonal,
// which removes it exactly. Like ormtr, this is backward stable (products of exact orthogonal
// reflectors, Higham, Accuracy and Stability, Sec. 19.3).
//
// Like syevd, a matrix whose max-norm lies outside [sqrt(safmin / eps), sqrt(eps / safmin)] is
// scaled into it first (by a power of two here, so exactly) and the eigenvalues scaled back, so
// no intermediate product overflows or underflows for any finite input.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "finite.h"
#include "lapack.h"

namespace linalg_core {

// Columns of the back-transformation's blocks (see above).
constexpr int kReflectorBlock = 128;

// Workspace (entries) that apply_sytrd_q needs for an n x n reduction and `cols` columns.
inline size_t apply_sytrd_q_work(int n, int cols) {
  const size_t k = static_cast<size_t>(kReflectorBlock);
  return (static_cast<size_t>(std::max(n, 1)) + static_cast<size_t>(std::max(cols, 1))) * k + k * k;
}

// z (n x cols, column-major, leading dimension n) <- Q z, for Q = H_0 ... H_{n-2} as ?sytrd("L")
// left it in a (reflectors below the subdiagonal) and tau: the product ?ormtr("L", "L", "N")
// computes, in blocks of kReflectorBlock reflectors. work: apply_sytrd_q_work(n, cols) entries.
template <typename T>
void apply_sytrd_q(int n, const T* a, const T* tau, T* z, int cols, T* work) {
  const size_t N = static_cast<size_t>(n);
  const int reflectors = n - 1;
  if (reflectors <= 0 || cols <= 0) return;
  constexpr int kb = kReflectorBlock;
  T* y = work;                                 // m x k, leading dimension m
  T* tinv = y + N * kb;                        // k x k
  T* wk = tinv + static_cast<size_t>(kb) * kb;  // k x cols
  const T one = T(1), zero = T(0), minus_one = T(-1);
  const int last_start = ((reflectors - 1) / kb) * kb;
  for (int j0 = last_start; j0 >= 0; j0 -= kb) {
    const int k = std::min(kb, reflectors - j0);
    const int m = n - 1 - j0;  // rows j0 + 1 .. n - 1
    // Y: column c is reflector j0 + c relative to row j0 + 1.
    for (int c = 0; c < k; ++c) {
      T* col = y + static_cast<size_t>(c) * m;
      const T* src = a + static_cast<size_t>(j0 + 1) + static_cast<size_t>(j0 + c) * N;
      const bool identity = tau[j0 + c] == T(0);
      for (int r = 0; r < c; ++r) col[r] = T(0);
      col[c] = identity ? T(0) : T(1);
      for (int r = c + 1; r < m; ++r) col[r] = identity ? T(0) : src[r];
    }
    // T^{-1} = diag(1 / tau) + strictly_upper(Y^T Y).
    Lapack<T>::syrk("U", "T", &k, &m, &one, y, &m, &zero, tinv, &k);
    for (int c = 0; c < k; ++c) {
      const T t = tau[j0 + c];
      tinv[c + static_cast<size_t>(c) * k] = t == T(0) ? T(1) : T(1) / t;
    }
    T* zr = z + static_cast<size_t>(j0 + 1);
    Lapack<T>::gemm("T", "N", &k, &cols, &m, &one, y, &m, zr, &n, &zero, wk, &k);
    Lapack<T>::trsm("L", "U", "N", "N", &k, &cols, &one, tinv, &k, wk, &k);
    Lapack<T>::gemm("N", "N", &m, &cols, &k, &minus_one, y, &m, wk, &k, &one, zr, &n);
  }
}

template <typename T>
class TridiagonalEigh {
 public:
  // Sizes every workspace for n x n matrices once (sytrd and stedc workspace queries).
  explicit TridiagonalEigh(int n) : n_(n) {
    const size_t N = static_cast<size_t>(std::max(n, 1));
    e_.resize(N);
    tau_.resize(N);
    int info = 0, lw = -1, liw = -1, iq = 0;
    T q = T(0);
    Lapack<T>::sytrd("L", &n_, nullptr, &n_, nullptr, nullptr, nullptr, &q, &lw, &info);
    size_t work = static_cast<size_t>(q) + 1;
    q = T(0);
    Lapack<T>::stedc("I", &n_, nullptr, nullptr, nullptr, &n_, &q, &lw, &iq, &liw, &info);
    work = std::max(work, static_cast<size_t>(q) + 1);
    work = std::max(work, apply_sytrd_q_work(n, n));
    work_.resize(work);
    iwork_.resize(static_cast<size_t>(std::max(1, iq)));
  }

  // a: n x n column-major, lower triangle read, overwritten with sytrd's reflectors.
  // w <- eigenvalues, ascending; z (n x n, column-major) <- orthonormal eigenvectors; with
  // top < n only the last `top` columns (the largest eigenvalues' vectors) are back-transformed
  // (the others hold eigenvectors of the tridiagonal matrix).
  // False for a non-finite input, when LAPACK reports failure or the eigenvalues are not finite.
  bool operator()(T* a, T* w, T* z, int top = -1) {
    const int n = n_;
    if (n == 0) return true;
    const int shift = scale_exponent(a);
    if (shift == kNonFinite) return false;
    if (shift != 0) scale_lower(a, shift);
    int info = 0;
    int lw = static_cast<int>(work_.size());
    int liw = static_cast<int>(iwork_.size());
    Lapack<T>::sytrd("L", &n, a, &n, w, e_.data(), tau_.data(), work_.data(), &lw, &info);
    if (info != 0) return false;
    Lapack<T>::stedc("I", &n, w, e_.data(), z, &n, work_.data(), &lw, iwork_.data(), &liw, &info);
    if (info != 0 || !all_finite(w, static_cast<size_t>(n))) return false;
    const int cols = top < 0 || top > n ? n : top;
    apply_sytrd_q(n, a, tau_.data(), z + static_cast<size_t>(n - cols) * n, cols, work_.data());
    if (shift != 0) {
      for (int i = 0; i < n; ++i) w[i] = std::ldexp(w[i], -shift);
    }
    return true;
  }

 private:
  static constexpr int kNonFinite = std::numeric_limits<int>::min();

  // The power of two that brings max|a_ij| (lower triangle) into syevd's safe range, 0 when it
  // is there already (or a is zero), kNonFinite for NaN or Inf entries.
  int scale_exponent(const T* a) const {
    const size_t N = static_cast<size_t>(n_);
    T amax = T(0);
    for (size_t j = 0; j < N; ++j) {
      for (size_t i = j; i < N; ++i) {
        const T v = std::abs(a[i + j * N]);
        amax = v > amax ? v : amax;
        if (!(v <= std::numeric_limits<T>::max())) return kNonFinite;
      }
    }
    const T small = std::sqrt(std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon());
    const T big = T(1) / small;
    if (amax == T(0) || (amax >= small && amax <= big)) return 0;
    int e = 0;
    std::frexp(amax, &e);  // amax in [2^(e-1), 2^e): scale it to [0.5, 1)
    return -e;
  }

  void scale_lower(T* a, int shift) const {
    const size_t N = static_cast<size_t>(n_);
    for (size_t j = 0; j < N; ++j) {
      for (size_t i = j; i < N; ++i) a[i + j * N] = std::ldexp(a[i + j * N], shift);
    }
  }

  int n_;
  std::vector<T> e_, tau_, work_;
  std::vector<int> iwork_;
};

}  // namespace linalg_core
