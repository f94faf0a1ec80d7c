// Eigendecomposition of small symmetric matrices without LAPACK's per-call overhead:
// Householder tridiagonalisation with the orthogonal factor formed explicitly, then implicit QL
// iterations with Wilkinson shifts whose plane rotations are applied to that factor. Faster than
// syevd only up to n ~ 64 (float32) / ~48 (float64): above, syevd's blocked code wins.
//
// Why: the shared-basis update decomposes one k x k matrix per block (m = 1024 of them with
// k = 32 per layer), and on a 32 x 32 matrix syevd spends most of its time in call,
// argument-checking and BLAS-2 dispatch overhead for ~0.3 Mflop of work; the loops here run the
// same algorithm (tridiagonal reduction as in sytd2, the QL iteration of Bowdler, Martin,
// Reinsch and Wilkinson, Numer. Math. 11, 1968) with contiguous, vectorisable column updates.
//
// Accuracy: both phases are backward stable (orthogonal transformations only), so the computed
// pairs are exact for A + E with ||E||_2 = O(n eps ||A||_2), like syevd. The matrix is scaled by a
// power of two (exact) to unit max-norm first, so no intermediate overflows or underflows for any
// finite input. A non-finite input, or a QL iteration that has not converged after 30 n sweeps in
// all, returns false: callers fall back to LAPACK.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace linalg_core {

namespace detail {
// sqrt(x^2 + y^2) without std::hypot's cost (~30 ns, called once per plane rotation) whenever
// the plain formula can neither overflow nor lose accuracy to underflow; std::hypot otherwise.
template <typename T>
inline T rotation_norm(T x, T y) {
  const T s2 = x * x + y * y;
  if (s2 >= std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon() &&
      s2 <= std::numeric_limits<T>::max()) {
    return std::sqrt(s2);
  }
  return std::hypot(x, y);
}
}  // namespace detail

// a (n x n, column-major, full symmetric storage read: callers symmetrise) <- orthonormal
// eigenvectors (columns); w <- eigenvalues, ascending. scratch is resized as needed (3 n).
template <typename T>
bool small_eigh(int n, T* a, T* w, std::vector<T>& scratch) {
  if (n <= 0) return true;
  const size_t N = static_cast<size_t>(n);
  auto at = [&](int r, int c) -> T& { return a[static_cast<size_t>(r) + static_cast<size_t>(c) * N]; };
  if (scratch.size() < 3 * N) scratch.resize(3 * N);
  T* e = scratch.data();        // sub-diagonal of the tridiagonal matrix (e[i] couples i, i+1)
  T* p = scratch.data() + N;    // Householder work vectors
  T* tau = scratch.data() + 2 * N;

  // Scale to unit max-norm by a power of two (exact).
  T amax = T(0);
  for (size_t i = 0; i < N * N; ++i) {
    const T v = std::abs(a[i]);
    if (!(v <= std::numeric_limits<T>::max())) return false;  // NaN or Inf
    amax = std::max(amax, v);
  }
  int expo = 0;
  if (amax > T(0)) {
    std::frexp(amax, &expo);
    const T down = std::ldexp(T(1), -expo);  // a power of two: the products are exact (denormals aside)
    for (size_t i = 0; i < N * N; ++i) a[i] *= down;
  }

  // Tridiagonalisation: for column j, H_j = I - tau v v^T maps a[j+1:, j] to beta e_1; the
  // trailing block becomes H_j A22 H_j = A22 - v q^T - q v^T with q = tau A22 v - (tau^2/2)(v^T A22 v) v.
  // v (v[0] = 1) is kept below the sub-diagonal of column j.
  for (int j = 0; j + 2 < n; ++j) {
    const int len = n - j - 1;  // length of x = a[j+1:, j]
    T* x = &at(j + 1, j);
    T xnorm2 = T(0);
    for (int i = 1; i < len; ++i) xnorm2 += x[i] * x[i];
    const T alpha = x[0];
    if (xnorm2 == T(0)) {  // already reduced
      tau[j] = T(0);
      e[j] = alpha;
      continue;
    }
    T beta = std::sqrt(alpha * alpha + xnorm2);
    if (alpha > T(0)) beta = -beta;
    tau[j] = (beta - alpha) / beta;
    const T scale = T(1) / (alpha - beta);
    for (int i = 1; i < len; ++i) x[i] *= scale;
    x[0] = T(1);
    // p = tau A22 v (A22 symmetric, full storage: column-wise axpys).
    std::fill(p, p + len, T(0));
    for (int c = 0; c < len; ++c) {
      const T vc = tau[j] * x[c];
      const T* col = &at(j + 1, j + 1 + c);
      for (int r = 0; r < len; ++r) p[r] += col[r] * vc;
    }
    T vp = T(0);
    for (int i = 0; i < len; ++i) vp += x[i] * p[i];
    const T half = T(0.5) * tau[j] * vp;
    for (int i = 0; i < len; ++i) p[i] -= half * x[i];
    for (int c = 0; c < len; ++c) {
      T* col = &at(j + 1, j + 1 + c);
      const T vc = x[c], pc = p[c];
      for (int r = 0; r < len; ++r) col[r] -= x[r] * pc + p[r] * vc;
    }
    e[j] = beta;
  }
  if (n >= 2) e[n - 2] = at(n - 1, n - 2);
  e[n - 1] = T(0);
  for (int i = 0; i < n; ++i) w[i] = at(i, i);

  // Q = H_0 H_1 ... H_{n-3}, accumulated in place from the last reflector backwards: reflector j
  // (v = [1, a[j+2:, j]]) only touches Q[j+1:, j+1:], which at that point holds H_{j+1}...H_{n-3}
  // restricted to those rows and columns, while column j still holds v. After applying it, column
  // j and row j become those of the identity. The last two columns carry no reflector.
  {
    for (int c = std::max(0, n - 2); c < n; ++c) {
      for (int r = 0; r < n; ++r) at(r, c) = r == c ? T(1) : T(0);
    }
    for (int j = n - 3; j >= 0; --j) {
      const int len = n - j - 1;
      T* v = &at(j + 1, j);
      v[0] = T(1);
      if (tau[j] != T(0)) {
        for (int c = 0; c < len; ++c) {
          T* col = &at(j + 1, j + 1 + c);
          T dot = T(0);
#pragma omp simd reduction(+ : dot)
          for (int r = 0; r < len; ++r) dot += v[r] * col[r];
          dot *= tau[j];
          for (int r = 0; r < len; ++r) col[r] -= dot * v[r];
        }
      }
      for (int r = 0; r < n; ++r) at(r, j) = r == j ? T(1) : T(0);
      for (int c = j + 1; c < n; ++c) at(j, c) = T(0);
    }
  }

  // Implicit QL on (w, e) with Wilkinson shifts; rotations applied to the columns of a.
  const T eps = std::numeric_limits<T>::epsilon();
  int sweeps = 0;
  for (int l = 0; l < n; ++l) {
    for (;;) {
      int mm = l;
      for (; mm + 1 < n; ++mm) {
        const T dd = std::abs(w[mm]) + std::abs(w[mm + 1]);
        if (std::abs(e[mm]) <= eps * dd || std::abs(e[mm]) < std::numeric_limits<T>::min()) break;
      }
      if (mm == l) break;
      if (++sweeps > 30 * n) return false;
      T g = (w[l + 1] - w[l]) / (T(2) * e[l]);
      T r = detail::rotation_norm(g, T(1));
      g = w[mm] - w[l] + e[l] / (g + (g >= T(0) ? r : -r));
      T s = T(1), c = T(1), shift = T(0);
      int i = mm - 1;
      bool deflated = false;
      for (; i >= l; --i) {
        const T f = s * e[i], bb = c * e[i];
        r = detail::rotation_norm(f, g);
        e[i + 1] = r;
        if (r == T(0)) {  // underflow in the chase: split here and restart
          w[i + 1] -= shift;
          e[mm] = T(0);
          deflated = true;
          break;
        }
        const T inv = T(1) / r;
        s = f * inv;
        c = g * inv;
        g = w[i + 1] - shift;
        r = (w[i] - g) * s + T(2) * c * bb;
        shift = s * r;
        w[i + 1] = g + shift;
        g = c * r - bb;
        T* __restrict zi = a + static_cast<size_t>(i) * N;
        T* __restrict zj = zi + N;
        for (int k = 0; k < n; ++k) {
          const T zk1 = zj[k], zk0 = zi[k];
          zj[k] = s * zk0 + c * zk1;
          zi[k] = c * zk0 - s * zk1;
        }
      }
      if (deflated) continue;
      w[l] -= shift;
      e[l] = g;
      e[mm] = T(0);
    }
  }

  // Ascending order (selection sort: n swaps of whole columns at most), then unscale.
  for (int i = 0; i + 1 < n; ++i) {
    int lo = i;
    for (int j = i + 1; j < n; ++j) {
      if (w[j] < w[lo]) lo = j;
    }
    if (lo != i) {
      std::swap(w[i], w[lo]);
      std::swap_ranges(a + static_cast<size_t>(i) * N, a + static_cast<size_t>(i + 1) * N,
                       a + static_cast<size_t>(lo) * N);
    }
  }
  const T up = std::ldexp(T(1), expo);
  for (int i = 0; i < n; ++i) {
    w[i] *= up;
    if (!std::isfinite(w[i])) return false;
  }
  return true;
}

}  // namespace linalg_core
