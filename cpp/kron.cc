#include "kron.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "blas_threads.h"
#include "eigh_workspace.h"
#include "finite.h"
#include "lapack.h"
#include "parallel.h"
#include "scaling.h"
#include "symmetry.h"

namespace linalg_core::kron {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }


// out = x 2^-e elementwise (exact unless the result is subnormal).
template <typename T>
void scaled_copy(const T* x, size_t count, int e, T* out) {
  std::copy(x, x + count, out);
  scale_by_power_of_two(out, count, -e);
}

// Row-major GEMM: C (rows x cols) = alpha op(A) op(B) + beta C, via the column-major routine on
// the transposed problem C^T = op(B)^T op(A)^T.
template <typename T>
void gemm_rm(bool ta, bool tb, int rows, int cols, int inner, T alpha, const T* a, int lda,
             const T* b, int ldb, T beta, T* c, int ldc) {
  Lapack<T>::gemm(tb ? "T" : "N", ta ? "T" : "N", &cols, &rows, &inner, &alpha, b, &ldb, a, &lda,
                  &beta, c, &ldc);
}


// out = scale W^T W for W the (inner x cols) row-major matrix, by SYRK, full symmetric out.
template <typename T>
void gram_t(int cols, int inner, T scale, const T* w, T* out) {
  const T zero = T(0);
  // Row-major W is the column-major (cols x inner) W^T: W^T W = W^T (W^T)^T.
  Lapack<T>::syrk("U", "N", &cols, &inner, &scale, w, &cols, &zero, out, &cols);
  mirror_upper(cols, out);
}

// A factor F of a PSD matrix M for the sample products below: the upper Cholesky factor U
// (M = U^T U, column-major, lower triangle ignored) where potrf succeeds -- each sample's
// product is then a TRMM, half a GEMM's flops -- and otherwise the PSD square root (M singular
// to working precision).
template <typename T>
struct Factor {
  const T* data = nullptr;
  bool triangular = false;
};

// The sample products run one worker per core (one BLAS thread each) from 8 samples on.
inline int sample_workers(int count) {
  return count >= 8 && blas_threads_local_available() ? hardware_threads() : 1;
}

// Sums over the N row-major (m x n) samples G_i stacked in s, each sample first scaled by 2^-e
// (when e != 0, into a per-worker copy) and multiplied by an optional factor (Factor above) of a
// PSD matrix (right: n x n, R = F F^T, or left: m x m, L = F^T F; at most one):
//   outer: out (m x m) = scale sum_i H_i H_i^T, H_i = G_i F    (or G_i): G_i R G_i^T
//   inner: out (n x n) = scale sum_i H_i^T H_i, H_i = F G_i    (or G_i): G_i^T L G_i
// with F = U^T (right) or U (left) for a Cholesky factor, F = M^(1/2) for a square root.
// One GEMM or TRMM (when a factor is given) and one accumulating SYRK per sample, the samples split
// across the cores (one BLAS thread each). Per-sample products read each G_i where it lies: the
// earlier formulation as one SYRK over a rearranged m x N n copy of the stack measured 115 ms for
// the first step at N = m = n = 256 float32 (strided SYRK, the 64 MB copy and its page faults);
// this one 38 ms.
template <typename T>
void sample_grams(int m, int n, int count, int e, T scale, const T* s, Factor<T> right, Factor<T> left,
                  bool outer, T* out) {
  const int dim = outer ? m : n;
  const int workers = sample_workers(count);
  std::vector<std::vector<T>> partial(workers, std::vector<T>(sz(dim, dim), T(0)));
  const int chunk = (count + workers - 1) / workers;
  parallel_for(workers, workers, [&](int, int64_t wk) {
    const T one = T(1), zero = T(0);
    std::vector<T> h(right.data != nullptr || left.data != nullptr ? sz(m, n) : 0), scaled(e != 0 ? sz(m, n) : 0);
    const int begin = static_cast<int>(wk) * chunk, end = std::min(count, begin + chunk);
    for (int i = begin; i < end; ++i) {
      const T* g = s + sz(i, sz(m, n));
      if (e != 0) {
        scaled_copy(g, sz(m, n), e, scaled.data());
        g = scaled.data();
      }
      const T* hi = g;
      // Row-major G_i is the column-major (n x m) G_i^T; TRMM overwrites its copy in h.
      if (right.triangular) {
        std::copy(g, g + sz(m, n), h.begin());
        Lapack<T>::trmm("L", "U", "N", "N", &n, &m, &one, right.data, &n, h.data(), &n);  // U G_i^T
        hi = h.data();
      } else if (left.triangular) {
        std::copy(g, g + sz(m, n), h.begin());
        Lapack<T>::trmm("R", "U", "T", "N", &n, &m, &one, left.data, &m, h.data(), &n);  // G_i^T U^T
        hi = h.data();
      } else if (right.data != nullptr) {
        gemm_rm<T>(false, false, m, n, n, one, g, n, right.data, n, zero, h.data(), n);
        hi = h.data();
      } else if (left.data != nullptr) {
        gemm_rm<T>(false, false, m, n, m, one, left.data, m, g, n, zero, h.data(), n);
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

template <typename T>
bool psd_factor(int n, const T* a, T* out, std::vector<T>& work, std::vector<int>& iwork,
                std::vector<T>& vecs, std::vector<T>& w, Factor<T>& f) {
  std::copy(a, a + sz(n, n), out);
  int info = 0;
  Lapack<T>::potrf("U", &n, out, &n, &info);
  f.data = out;
  f.triangular = info == 0;
  return f.triangular || psd_sqrt(n, a, out, work, iwork, vecs, w);
}

// One batch element: the iteration on the samples scaled by 2^-e, its a-posteriori check, the
// results scaled back. Outputs are zero unless set below.
template <typename T>
Status approx_one(const Shape& s, int steps, const T* S, T* left, T* right, T* sigma_out,
                  T* change_out, std::vector<T>& work, std::vector<int>& iwork, std::vector<T>& vecs, std::vector<T>& w) {
  const int N = static_cast<int>(s.samples), m = static_cast<int>(s.m), n = static_cast<int>(s.n);
  const size_t count = sz(N, sz(m, n));
  std::fill(left, left + sz(m, m), T(0));
  std::fill(right, right + sz(n, n), T(0));
  *sigma_out = T(0);
  *change_out = T(0);
  const FiniteMax<T> scan = finite_max_abs(S, count);
  if (!scan.finite) return Status::kNonFiniteInput;
  const T amax = scan.max_abs;
  if (amax == T(0)) return Status::kOk;  // H = 0: the zero factors are exact
  const int e = safe_exponent<T>(amax);
  const T inv_n = T(1) / static_cast<T>(N);
  std::vector<T> L(sz(m, m)), R(sz(n, n)), root(std::max(sz(m, m), sz(n, n)));
  double sigma = 0.0, change = 0.0, trace_h = 0.0;
  for (int step = 0; step < steps; ++step) {
    std::vector<T> R_old = R;
    double norm_l = 0.0, norm_r = 0.0;
    if (step == 0) {
      // From the identities: L = E[G G^T] = (1/N) sum_i G_i G_i^T, R = E[G^T G] =
      // (1/N) sum_i G_i^T G_i (the unit-norm scalings 1/sqrt(n), 1/sqrt(m) drop out after
      // normalisation).
      sample_grams<T>(m, n, N, e, inv_n, S, {}, {}, true, L.data());
      sample_grams<T>(m, n, N, e, inv_n, S, {}, {}, false, R.data());
      for (int i = 0; i < m; ++i) trace_h += L[sz(i, m) + i];  // tr(H) = E ||G||_F^2
      norm_l = frobenius(L.data(), L.size()) / std::sqrt(static_cast<double>(n));
      norm_r = frobenius(R.data(), R.size()) / std::sqrt(static_cast<double>(m));
    } else {
      // L = (1/N) sum_i (G_i F) (G_i F)^T, R = F F^T.
      Factor<T> f;
      if (!psd_factor(n, R.data(), root.data(), work, iwork, vecs, w, f)) return Status::kFailed;
      sample_grams<T>(m, n, N, e, inv_n, S, f, {}, true, L.data());
      norm_l = frobenius(L.data(), L.size());
      if (!(norm_l > 0) || !std::isfinite(norm_l)) return Status::kFailed;
      for (T& v : L) v = static_cast<T>(v / norm_l);
      // R = (1/N) sum_i (F G_i)^T (F G_i), L = F^T F.
      if (!psd_factor(m, L.data(), root.data(), work, iwork, vecs, w, f)) return Status::kFailed;
      sample_grams<T>(m, n, N, e, inv_n, S, {}, f, false, R.data());
      norm_r = frobenius(R.data(), R.size());
    }
    if (!(norm_l > 0 && norm_r > 0) || !std::isfinite(norm_l * norm_r)) return Status::kFailed;
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
  // The bounds every estimate obeys (kron.h), with the rounding of N-term sums of products of
  // length m or n: 32 (N + m + n) eps relative.
  const double tol = 32.0 * (N + m + n) * std::numeric_limits<T>::epsilon();
  const double lower = trace_h / std::sqrt(static_cast<double>(m) * n) * (1 - tol), upper = trace_h * (1 + tol);
  if (!(sigma >= lower && sigma <= upper) || !std::isfinite(change)) return Status::kFailed;
  Status status = Status::kOk;
  // sqrt(sigma) 2^e in double (sigma = sigma_s 2^(2e)); the factors' entries are at most
  // sqrt(sigma) in size, so only samples near T's largest value can overflow them.
  const double root_scale = std::ldexp(std::sqrt(sigma), e);
  bool factors_finite = true;
  for (size_t i = 0; i < L.size(); ++i) {
    left[i] = static_cast<T>(root_scale * L[i]);
    factors_finite = factors_finite && std::isfinite(left[i]);
  }
  for (size_t i = 0; i < R.size(); ++i) {
    right[i] = static_cast<T>(root_scale * R[i]);
    factors_finite = factors_finite && std::isfinite(right[i]);
  }
  if (!factors_finite) {
    std::fill(left, left + sz(m, m), T(0));
    std::fill(right, right + sz(n, n), T(0));
    status = Status::kOutOfRange;
  }
  const double sigma_full = std::ldexp(sigma, 2 * e);
  const double lo = std::numeric_limits<T>::min(), hi = std::numeric_limits<T>::max();
  if (!(sigma_full >= lo && sigma_full <= hi)) status = Status::kOutOfRange;
  *sigma_out = static_cast<T>(std::min(std::max(sigma_full, lo), hi));
  *change_out = static_cast<T>(change);
  return status;
}

// N, m, n and m n are LAPACK ints (and loop bounds) inside the kernels.
bool fits_int(const Shape& s) {
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  return s.samples <= kIntMax && s.m <= kIntMax && s.n <= kIntMax && s.m * s.n <= kIntMax;
}

}  // namespace

template <typename T>
bool approx(const Shape& s, const Args<T>& a, const Options& o) {
  if (!fits_int(s) || o.steps > std::numeric_limits<int>::max()) return false;
  if (s.samples < 1 || s.m < 1 || s.n < 1 || o.steps < 1 || s.batch < 0) return false;
  const size_t per = sz(s.samples, sz(s.m, s.n));
  std::vector<T> work, vecs, w;
  std::vector<int> iwork;
  // Where the sample products run on one worker per core (sample_grams), the whole call keeps
  // one BLAS thread: a multithreaded call between them (the factor of an m x m statistic)
  // leaves the BLAS pool's threads spinning on the cores the workers need next.
  ScopedBlasThreads single(sample_workers(static_cast<int>(s.samples)) > 1 ? 1 : 0);
  for (int64_t b = 0; b < s.batch; ++b) {
    a.status[b] = static_cast<int32_t>(approx_one<T>(s, static_cast<int>(o.steps), a.samples + b * per,
                                                     a.left + b * sz(s.m, s.m),
                                                     a.right + b * sz(s.n, s.n), a.sigma + b, a.change + b,
                                                     work, iwork, vecs, w));
  }
  return true;
}

template <typename T>
bool cosine(const Shape& s, const T* samples, const T* left, const T* right, T* out) {
  if (!fits_int(s) || s.samples < 1 || s.m < 1 || s.n < 1) return false;
  const int N = static_cast<int>(s.samples), m = static_cast<int>(s.m), n = static_cast<int>(s.n);
  const int mn = m * n;
  std::vector<T> lg(sz(m, n)), lgr(sz(m, n)), gram(sz(N, N)), Ls(sz(m, m)), Rs(sz(n, n)), Ss;
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* S = samples + b * sz(N, mn);
    const T* L = left + b * sz(m, m);
    const T* R = right + b * sz(n, n);
    const FiniteMax<T> scan_s = finite_max_abs(S, sz(N, mn)), scan_l = finite_max_abs(L, sz(m, m)),
                       scan_r = finite_max_abs(R, sz(n, n));
    if (!scan_s.finite || !scan_l.finite || !scan_r.finite) {
      out[b] = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    // The cosine is invariant under scaling of each argument: L and R are scaled to a largest
    // entry in [1/2, 1) (small copies), the samples only outside safe_exponent's range.
    const T amax_s = scan_s.max_abs, amax_l = scan_l.max_abs, amax_r = scan_r.max_abs;
    if (amax_s == T(0) || amax_l == T(0) || amax_r == T(0)) {
      out[b] = T(0);
      continue;
    }
    int el = 0, er = 0;
    std::frexp(amax_l, &el);
    std::frexp(amax_r, &er);
    scaled_copy(L, sz(m, m), el, Ls.data());
    scaled_copy(R, sz(n, n), er, Rs.data());
    const int es = safe_exponent<T>(amax_s);
    if (es != 0) {
      Ss.resize(sz(N, mn));
      scaled_copy(S, sz(N, mn), es, Ss.data());
      S = Ss.data();
    }
    // tr(H (R (x) L)) = (1/N) sum_i <G_i, L G_i R>.
    double num = 0.0;
    for (int i = 0; i < N; ++i) {
      const T* G = S + sz(i, mn);
      gemm_rm<T>(false, false, m, n, m, T(1), Ls.data(), m, G, n, T(0), lg.data(), n);
      gemm_rm<T>(false, false, m, n, n, T(1), lg.data(), n, Rs.data(), n, T(0), lgr.data(), n);
      for (int e = 0; e < mn; ++e) num += static_cast<double>(G[e]) * lgr[e];
    }
    num /= N;
    // ||H||_F = ||Gram||_F / N, Gram = F F^T with F the N x mn matrix of flattened samples.
    gemm_rm<T>(false, true, N, N, mn, T(1), S, mn, S, mn, T(0), gram.data(), N);
    const double norm_h = frobenius(gram.data(), gram.size()) / N;
    const double norm_k = frobenius(Ls.data(), sz(m, m)) * frobenius(Rs.data(), sz(n, n));
    out[b] = static_cast<T>(norm_h > 0 && norm_k > 0 ? num / (norm_h * norm_k) : 0.0);
  }
  return true;
}

template bool approx<float>(const Shape&, const Args<float>&, const Options&);
template bool approx<double>(const Shape&, const Args<double>&, const Options&);
template bool cosine<float>(const Shape&, const float*, const float*, const float*, float*);
template bool cosine<double>(const Shape&, const double*, const double*, const double*, double*);

}  // namespace linalg_core::kron
