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

// Copies the column-major upper triangle of an n x n matrix into its lower one.
template <typename T>
void mirror_upper(int n, T* out) {
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < i; ++j) out[sz(j, n) + i] = out[sz(i, n) + j];
  }
}

// out = scale W^T W for W the (inner x cols) row-major matrix, by SYRK, full symmetric out.
template <typename T>
void gram_t(int cols, int inner, T scale, const T* w, T* out) {
  const T zero = T(0);
  // Row-major W is the column-major (cols x inner) W^T: W^T W = W^T (W^T)^T.
  Lapack<T>::syrk("U", "N", &cols, &inner, &scale, w, &cols, &zero, out, &cols);
  mirror_upper(cols, out);
}

// Sums over the N row-major (m x n) samples G_i stacked in s, each sample first multiplied by an
// optional symmetric factor (right: n x n, or left: m x m; at most one):
//   outer: out (m x m) = scale sum_i H_i H_i^T, H_i = G_i right   (or G_i)
//   inner: out (n x n) = scale sum_i H_i^T H_i, H_i = left G_i    (or G_i)
// One GEMM (when a factor is given) and one accumulating SYRK per sample, the samples split
// across the cores (one BLAS thread each). Per-sample products read each G_i where it lies: the
// earlier formulation as one SYRK over a rearranged m x N n copy of the stack measured 115 ms for
// the first step at N = m = n = 256 float32 (strided SYRK, the 64 MB copy and its page faults);
// this one 38 ms.
template <typename T>
void sample_grams(int m, int n, int count, T scale, const T* s, const T* right, const T* left,
                  bool outer, T* out) {
  const int dim = outer ? m : n;
  const int workers = count >= 8 && blas_threads_local_available() ? hardware_threads() : 1;
  std::vector<std::vector<T>> partial(workers, std::vector<T>(sz(dim, dim), T(0)));
  const int chunk = (count + workers - 1) / workers;
  parallel_for(workers, workers, [&](int, int64_t wk) {
    const T one = T(1), zero = T(0);
    std::vector<T> h(right != nullptr || left != nullptr ? sz(m, n) : 0);
    const int begin = static_cast<int>(wk) * chunk, end = std::min(count, begin + chunk);
    for (int i = begin; i < end; ++i) {
      const T* g = s + sz(i, sz(m, n));
      const T* hi = g;
      if (right != nullptr) {
        gemm_rm<T>(false, false, m, n, n, one, g, n, right, n, zero, h.data(), n);
        hi = h.data();
      } else if (left != nullptr) {
        gemm_rm<T>(false, false, m, n, m, one, left, m, g, n, zero, h.data(), n);
        hi = h.data();
      }
      // Row-major H_i is the column-major (n x m) H_i^T.
      if (outer) {
        Lapack<T>::syrk("U", "T", &m, &n, &scale, hi, &n, &one, partial[wk].data(), &m);
      } else {
        Lapack<T>::syrk("U", "N", &n, &m, &scale, hi, &n, &one, partial[wk].data(), &n);
      }
    }
  });
  std::memcpy(out, partial[0].data(), sz(dim, dim) * sizeof(T));
  for (int wk = 1; wk < workers; ++wk) {
    for (size_t i = 0; i < sz(dim, dim); ++i) out[i] += partial[wk][i];
  }
  mirror_upper(dim, out);
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
  std::vector<T> work, vecs, w;
  std::vector<int> iwork;
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* S = a.samples + b * sz(N, sz(m, n));  // N m x n, row-major (vertical stack)
    std::vector<T> L(sz(m, m)), R(sz(n, n)), root(std::max(sz(m, m), sz(n, n)));
    double sigma = 0.0, change = 0.0;
    for (int step = 0; step < s.steps; ++step) {
      std::vector<T> R_old = R;
      double norm_l = 0.0, norm_r = 0.0;
      if (step == 0) {
        // From the identities: L = E[G G^T] = (1/N) sum_i G_i G_i^T, R = E[G^T G] =
        // (1/N) sum_i G_i^T G_i (the unit-norm scalings 1/sqrt(n), 1/sqrt(m) drop out after
        // normalisation).
        sample_grams<T>(m, n, N, inv_n, S, nullptr, nullptr, true, L.data());
        sample_grams<T>(m, n, N, inv_n, S, nullptr, nullptr, false, R.data());
        norm_l = frobenius(L.data(), L.size()) / std::sqrt(static_cast<double>(n));
        norm_r = frobenius(R.data(), R.size()) / std::sqrt(static_cast<double>(m));
      } else {
        // L = (1/N) sum_i (G_i R^(1/2)) (G_i R^(1/2))^T.
        if (!psd_sqrt(n, R.data(), root.data(), work, iwork, vecs, w)) break;
        sample_grams<T>(m, n, N, inv_n, S, root.data(), nullptr, true, L.data());
        norm_l = frobenius(L.data(), L.size());
        if (!(norm_l > 0) || !std::isfinite(norm_l)) break;
        for (T& v : L) v = static_cast<T>(v / norm_l);
        // R = (1/N) sum_i (L^(1/2) G_i)^T (L^(1/2) G_i).
        if (!psd_sqrt(m, L.data(), root.data(), work, iwork, vecs, w)) break;
        sample_grams<T>(m, n, N, inv_n, S, nullptr, root.data(), false, R.data());
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
