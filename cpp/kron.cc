#include "kron.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "lapack.h"
#include "parallel.h"

namespace linalg_core::kron {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

template <typename T>
double frobenius(const T* x, size_t count) {
  double s = 0.0;
  for (size_t i = 0; i < count; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s);
}

// Row-major GEMM: C (rows x cols) = alpha op(A) op(B) + beta C, via the column-major routine on
// the transposed problem C^T = op(B)^T op(A)^T.
template <typename T>
void gemm_rm(bool ta, bool tb, int rows, int cols, int inner, T alpha, const T* a, int lda,
             const T* b, int ldb, T beta, T* c, int ldc) {
  Lapack<T>::gemm(tb ? "T" : "N", ta ? "T" : "N", &cols, &rows, &inner, &alpha, b, &ldb, a, &lda,
                  &beta, c, &ldc);
}

// (A + A^T) / 2 in place: the products below are symmetric in exact arithmetic.
template <typename T>
void symmetrise(int n, T* a) {
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < i; ++j) a[sz(i, n) + j] = a[sz(j, n) + i] = T(0.5) * (a[sz(i, n) + j] + a[sz(j, n) + i]);
  }
}

}  // namespace

template <typename T>
bool approx(const Shape& s, const Args<T>& a) {
  if (s.samples < 1 || s.m < 1 || s.n < 1 || s.steps < 1 || s.batch < 0) return false;
  const int N = static_cast<int>(s.samples), m = static_cast<int>(s.m), n = static_cast<int>(s.n);
  const T inv_n = T(1) / static_cast<T>(N);
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* S = a.samples + b * sz(N, sz(m, n));  // N m x n, row-major
    // G' (m x N n): G'[r, i n + c] = G_i[r, c]; as (m N x n) its row r N + i is G_i[r, :].
    std::vector<T> gp(sz(N, sz(m, n))), x(sz(N, sz(m, n))), y(sz(N, sz(m, n)));
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < m; ++r) {
        std::memcpy(gp.data() + sz(r, sz(N, n)) + sz(i, n), S + sz(i, sz(m, n)) + sz(r, n), sz(n) * sizeof(T));
      }
    }
    // The first step updates both factors from L = I / sqrt(m), R = I / sqrt(n) (simultaneous):
    // E[G G^T] and E[G^T G], Shampoo's statistics. Later steps alternate (L from R, then R from
    // the new L): power iteration on the rearranged H, monotone in the cosine similarity.
    std::vector<T> L(sz(m, m), T(0)), R(sz(n, n), T(0)), L_new(sz(m, m)), R_new(sz(n, n));
    for (int i = 0; i < m; ++i) L[sz(i, m) + i] = T(1) / std::sqrt(static_cast<T>(m));
    for (int i = 0; i < n; ++i) R[sz(i, n) + i] = T(1) / std::sqrt(static_cast<T>(n));
    double sigma = 0.0, change = 0.0;
    const int mN = m * N, nN = n * N;
    for (int step = 0; step < s.steps; ++step) {
      // X (m N x n) = G'' R; L_new = (1/N) X' G'^T with X' = X viewed as (m x N n).
      gemm_rm<T>(false, false, mN, n, n, T(1), gp.data(), n, R.data(), n, T(0), x.data(), n);
      gemm_rm<T>(false, true, m, m, nN, inv_n, x.data(), nN, gp.data(), nN, T(0), L_new.data(), m);
      symmetrise(m, L_new.data());
      const double norm_l = frobenius(L_new.data(), L_new.size());
      if (!(norm_l > 0) || !std::isfinite(norm_l)) {
        sigma = 0.0;
        break;
      }
      if (step > 0) {
        // Alternating from the second step on: R is updated from the new L, so
        // <H, R (x) L> / (||L|| ||R||) cannot decrease (each half-step maximises it over one
        // factor).
        for (size_t i = 0; i < L.size(); ++i) L[i] = static_cast<T>(L_new[i] / norm_l);
      }
      // Y' (m x N n) = L G'; restacked as Y (N m x n): Y[i m + r, :] = Y'[r, i n : i n + n];
      // R_new = (1/N) S^T Y.
      gemm_rm<T>(false, false, m, nN, m, T(1), L.data(), m, gp.data(), nN, T(0), x.data(), nN);
      for (int i = 0; i < N; ++i) {
        for (int r = 0; r < m; ++r) {
          std::memcpy(y.data() + sz(sz(i, m) + r, n), x.data() + sz(r, nN) + sz(i, n), sz(n) * sizeof(T));
        }
      }
      gemm_rm<T>(true, false, n, n, mN, inv_n, S, n, y.data(), n, T(0), R_new.data(), n);
      symmetrise(n, R_new.data());
      const double norm_r = frobenius(R_new.data(), R_new.size());
      if (!(norm_r > 0) || !std::isfinite(norm_r)) {
        sigma = 0.0;
        break;
      }
      // ||R(H)^T l|| for the unit l that produced R_new (||R(H) r|| on the first, simultaneous
      // step): tends to sigma_1.
      sigma = step > 0 ? norm_r : std::sqrt(norm_l * norm_r);
      double diff = 0.0;
      for (size_t i = 0; i < R.size(); ++i) {
        const T next = static_cast<T>(R_new[i] / norm_r);
        diff += static_cast<double>(next - R[i]) * (next - R[i]);
        R[i] = next;
      }
      if (step == 0) {
        for (size_t i = 0; i < L.size(); ++i) L[i] = static_cast<T>(L_new[i] / norm_l);
      }
      change = std::sqrt(diff);
    }
    const T scale = static_cast<T>(std::sqrt(sigma));
    for (size_t i = 0; i < L.size(); ++i) a.left[b * sz(m, m) + i] = scale * L[i];
    for (size_t i = 0; i < R.size(); ++i) a.right[b * sz(n, n) + i] = scale * R[i];
    a.sigma[b] = static_cast<T>(sigma);
    a.change[b] = static_cast<T>(change);
  }
  return true;
}

template <typename T>
bool cosine(const Shape& s, const T* samples, const T* left, const T* right, T* out) {
  if (s.samples < 1 || s.m < 1 || s.n < 1) return false;
  const int N = static_cast<int>(s.samples), m = static_cast<int>(s.m), n = static_cast<int>(s.n);
  const int mn = m * n;
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* S = samples + b * sz(N, mn);
    const T* L = left + b * sz(m, m);
    const T* R = right + b * sz(n, n);
    // tr(H (R (x) L)) = (1/N) sum_i <G_i, L G_i R>.
    std::vector<T> lg(sz(m, n)), lgr(sz(m, n));
    double num = 0.0;
    for (int i = 0; i < N; ++i) {
      const T* G = S + sz(i, mn);
      gemm_rm<T>(false, false, m, n, m, T(1), L, m, G, n, T(0), lg.data(), n);
      gemm_rm<T>(false, false, m, n, n, T(1), lg.data(), n, R, n, T(0), lgr.data(), n);
      for (int e = 0; e < mn; ++e) num += static_cast<double>(G[e]) * lgr[e];
    }
    num /= N;
    // ||H||_F = ||Gram||_F / N, Gram = F F^T with F the N x mn matrix of flattened samples.
    std::vector<T> gram(sz(N, N));
    gemm_rm<T>(false, true, N, N, mn, T(1), S, mn, S, mn, T(0), gram.data(), N);
    const double norm_h = frobenius(gram.data(), gram.size()) / N;
    const double norm_k = frobenius(L, sz(m, m)) * frobenius(R, sz(n, n));
    out[b] = static_cast<T>(norm_h > 0 && norm_k > 0 ? num / (norm_h * norm_k) : 0.0);
  }
  return true;
}

template bool approx<float>(const Shape&, const Args<float>&);
template bool approx<double>(const Shape&, const Args<double>&);
template bool cosine<float>(const Shape&, const float*, const float*, const float*, float*);
template bool cosine<double>(const Shape&, const double*, const double*, const double*, double*);

}  // namespace linalg_core::kron
