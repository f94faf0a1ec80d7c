#include "kron.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "blas_threads.h"
#include "eigh_workspace.h"
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

// Products W W^T (or W^T W) whose inner dimension runs over all samples (N n = 65536 against
// 256 rows) are split along it across the cores, each part on one BLAS thread, and summed:
// OpenBLAS threads such shapes poorly (measured 92 ms for a 256 x 65536 SYRK on two threads).
template <typename T, typename Part>
void split_inner(int rows, int inner, T* out, Part&& part) {
  const int workers = (inner >= 8 * rows && blas_threads_local_available()) ? hardware_threads() : 1;
  if (workers <= 1) {
    part(0, inner, out);
    return;
  }
  std::vector<std::vector<T>> partial(workers, std::vector<T>(sz(rows, rows)));
  const int chunk = (inner + workers - 1) / workers;
  parallel_for(workers, workers, [&](int, int64_t w) {
    const int begin = static_cast<int>(w) * chunk;
    const int end = std::min(inner, begin + chunk);
    if (begin < end) part(begin, end - begin, partial[w].data());
    else std::fill(partial[w].begin(), partial[w].end(), T(0));
  });
  std::memcpy(out, partial[0].data(), sz(rows, rows) * sizeof(T));
  for (int w = 1; w < workers; ++w) {
    for (size_t i = 0; i < sz(rows, rows); ++i) out[i] += partial[w][i];
  }
}

// Copies the column-major upper triangle of an n x n matrix into its lower one.
template <typename T>
void mirror_upper(int n, T* out) {
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < i; ++j) out[sz(j, n) + i] = out[sz(i, n) + j];
  }
}

// out = scale W W^T for W the (rows x inner) row-major matrix, by SYRK, full symmetric out.
template <typename T>
void gram(int rows, int inner, T scale, const T* w, T* out) {
  split_inner<T>(rows, inner, out, [&](int begin, int count, T* dst) {
    const T zero = T(0);
    // Row-major W[:, begin:begin+count] is the column-major (count x rows) block at w + begin
    // with leading dimension inner: W W^T = (W^T)^T W^T.
    Lapack<T>::syrk("U", "T", &rows, &count, &scale, w + begin, &inner, &zero, dst, &rows);
  });
  mirror_upper(rows, out);
}

// out = scale W^T W for W the (inner x cols) row-major matrix, by SYRK, full symmetric out.
template <typename T>
void gram_t(int cols, int inner, T scale, const T* w, T* out) {
  split_inner<T>(cols, inner, out, [&](int begin, int count, T* dst) {
    const T zero = T(0);
    // Row-major rows begin..begin+count of W are the column-major (cols x count) block at
    // w + begin cols: W^T W = W^T (W^T)^T.
    Lapack<T>::syrk("U", "N", &cols, &count, &scale, w + sz(begin, cols), &cols, &zero, dst, &cols);
  });
  mirror_upper(cols, out);
}

// The PSD square root of a symmetric matrix (negative rounding eigenvalues clamped to 0).
template <typename T>
bool psd_sqrt(int n, const T* a, T* out, std::vector<T>& work, std::vector<int>& iwork,
              std::vector<T>& vecs, std::vector<T>& w) {
  vecs.assign(a, a + sz(n, n));
  w.resize(n);
  if (!eigh_inplace(n, vecs.data(), w.data(), work, iwork)) return false;
  for (int j = 0; j < n; ++j) {
    const T f = std::sqrt(std::sqrt(std::max(w[j], T(0))));  // V diag(w^(1/4)), squared below
    for (int i = 0; i < n; ++i) vecs[i + sz(j, n)] *= f;
  }
  // vecs is column-major V diag(w^(1/4)), i.e. the row-major (V diag(w^(1/4)))^T =: W:
  // W^T W = V diag(w^(1/2)) V^T.
  gram_t(n, n, T(1), vecs.data(), out);
  return true;
}

}  // namespace

template <typename T>
bool approx(const Shape& s, const Args<T>& a) {
  if (s.samples < 1 || s.m < 1 || s.n < 1 || s.steps < 1 || s.batch < 0) return false;
  const int N = static_cast<int>(s.samples), m = static_cast<int>(s.m), n = static_cast<int>(s.n);
  const T inv_n = T(1) / static_cast<T>(N);
  const int mN = m * N, nN = n * N;
  std::vector<T> work, vecs, w;
  std::vector<int> iwork;
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* S = a.samples + b * sz(N, sz(m, n));  // N m x n, row-major (vertical stack)
    // G' (m x N n): G'[r, i n + c] = G_i[r, c]. Viewed as G'' (m N x n), row r N + i is G_i[r, :].
    std::vector<T> gp(sz(N, sz(m, n))), x(sz(N, sz(m, n)));
    for (int i = 0; i < N; ++i) {
      for (int r = 0; r < m; ++r) {
        std::memcpy(gp.data() + sz(r, nN) + sz(i, n), S + sz(i, sz(m, n)) + sz(r, n), sz(n) * sizeof(T));
      }
    }
    std::vector<T> L(sz(m, m)), R(sz(n, n)), root(std::max(sz(m, m), sz(n, n)));
    double sigma = 0.0, change = 0.0;
    for (int step = 0; step < s.steps; ++step) {
      std::vector<T> R_old = R;
      double norm_l = 0.0, norm_r = 0.0;
      if (step == 0) {
        // From the identities: L = E[G G^T] = (1/N) G' G'^T, R = E[G^T G] = (1/N) S^T S, both by
        // SYRK (the unit-norm scalings 1/sqrt(n), 1/sqrt(m) drop out after normalisation).
        gram(m, nN, inv_n, gp.data(), L.data());
        gram_t(n, mN, inv_n, S, R.data());
        norm_l = frobenius(L.data(), L.size()) / std::sqrt(static_cast<double>(n));
        norm_r = frobenius(R.data(), R.size()) / std::sqrt(static_cast<double>(m));
      } else {
        // L = (1/N) sum_i (G_i R^(1/2)) (G_i R^(1/2))^T: X'' = G'' R^(1/2), then SYRK of X'.
        if (!psd_sqrt(n, R.data(), root.data(), work, iwork, vecs, w)) break;
        gemm_rm<T>(false, false, mN, n, n, T(1), gp.data(), n, root.data(), n, T(0), x.data(), n);
        gram(m, nN, inv_n, x.data(), L.data());
        norm_l = frobenius(L.data(), L.size());
        if (!(norm_l > 0) || !std::isfinite(norm_l)) break;
        for (T& v : L) v = static_cast<T>(v / norm_l);
        // R = (1/N) sum_i (L^(1/2) G_i)^T (L^(1/2) G_i): Z' = L^(1/2) G' (m x N n), viewed as
        // Z'' (m N x n) its rows are (L^(1/2) G_i)[r, :], so R = (1/N) Z''^T Z'' (SYRK).
        if (!psd_sqrt(m, L.data(), root.data(), work, iwork, vecs, w)) break;
        gemm_rm<T>(false, false, m, nN, m, T(1), root.data(), m, gp.data(), nN, T(0), x.data(), nN);
        gram_t(n, mN, inv_n, x.data(), R.data());
        norm_r = frobenius(R.data(), R.size());
      }
      if (!(norm_l > 0 && norm_r > 0) || !std::isfinite(norm_l * norm_r)) {
        sigma = 0.0;
        break;
      }
      // ||R(H)^T l|| for the unit l that produced R (geometric mean with ||R(H) r|| on the first,
      // simultaneous step): tends to sigma_1.
      sigma = step > 0 ? norm_r : std::sqrt(norm_l * norm_r);
      const double rn = frobenius(R.data(), R.size());
      const double ln = frobenius(L.data(), L.size());
      double diff = 0.0;
      for (size_t i = 0; i < R.size(); ++i) {
        R[i] = static_cast<T>(R[i] / rn);
        if (step > 0) diff += static_cast<double>(R[i] - R_old[i]) * (R[i] - R_old[i]);
      }
      if (step == 0) {
        for (T& v : L) v = static_cast<T>(v / ln);
        diff = 0.0;
        const T id = T(1) / std::sqrt(static_cast<T>(n));
        for (int i = 0; i < n; ++i) {
          for (int j = 0; j < n; ++j) {
            const double d0 = static_cast<double>(R[sz(i, n) + j]) - (i == j ? id : T(0));
            diff += d0 * d0;
          }
        }
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
