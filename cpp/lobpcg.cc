#include "lobpcg.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "finite.h"
#include "eigh_workspace.h"
#include "lapack.h"
#include "symmetry.h"
#include "lcg.h"
#include "tridiagonal_eigh.h"

namespace linalg_core::lobpcg {
namespace {

size_t sz(int a, int b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

// C (rows_a x cols_b) = op(A) op(B), column-major.
template <typename T>
void gemm(const char* ta, const char* tb, int m, int n, int k, T alpha, const T* a, int lda,
          const T* b, int ldb, T beta, T* c, int ldc) {
  Lapack<T>::gemm(ta, tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// Euclidean norm that neither overflows nor underflows (the sum of squares is taken of x / max|x|,
// as LAPACK's nrm2 does), in double.
template <typename T>
double norm2(const T* x, int n) {
  double amax = 0.0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::abs(static_cast<double>(x[i])));
  if (!(amax > 0.0) || !std::isfinite(amax)) return amax;
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const double t = static_cast<double>(x[i]) / amax;
    sum += t * t;
  }
  return amax * std::sqrt(sum);
}

// Scales each of `cols` columns of s (and of as, by the same factor) to unit length; zero columns
// stay zero (SVQB then drops them).
template <typename T>
void normalize_columns(int n, T* s, T* as, int cols) {
  for (int j = 0; j < cols; ++j) {
    const double len = norm2(s + sz(j, n), n);
    if (!(len > 0.0)) continue;
    const T inv = static_cast<T>(1.0 / len);
    for (int i = 0; i < n; ++i) s[i + sz(j, n)] *= inv;
    if (as != nullptr) {
      for (int i = 0; i < n; ++i) as[i + sz(j, n)] *= inv;
    }
  }
}

// Power of two 2^-e with `value` * 2^-e in [0.5, 1); 1 for zero or non-finite values.
double power_of_two_scale(double value) {
  if (!(value > 0.0) || !std::isfinite(value)) return 1.0;
  int e = 0;
  std::frexp(value, &e);
  return std::ldexp(1.0, -e);
}

// The tolerance actually applied: the requested one (default 10 sqrt(eps)) or the attainable
// floor kTolFloor * n * eps, whichever is larger.
template <typename T>
double effective_tol(int n, double tol) {
  const double eps = std::numeric_limits<T>::epsilon();
  return std::max(tol > 0 ? tol : 10.0 * std::sqrt(eps), kTolFloor * n * eps);
}

template <typename T>
class Solver {
 public:
  // k_ is the block size (the wanted pairs plus guard vectors); want_ pairs must converge.
  Solver(int n, const Apply<T>& apply, const Options& o, int block)
      : n_(n), k_(block), want_(o.k), apply_(apply), o_(o) {
    const int m = 3 * k_;
    s_.resize(sz(n_, m));
    as_.resize(sz(n_, m));
    tmp_.resize(sz(n_, m));
    tmp2_.resize(sz(n_, m));
    x_.resize(sz(n_, k_));
    ax_.resize(sz(n_, k_));
    p_.resize(sz(n_, k_));
    ap_.resize(sz(n_, k_));
    small_.resize(sz(m, m));
    small2_.resize(sz(m, m));
    w_.resize(m);
    theta_.resize(k_);
    res_.resize(k_);
    eps_ = std::numeric_limits<T>::epsilon();
    tol_ = effective_tol<T>(n_, o.tol);
  }

  // ax <- scale * A x for `cols` columns; ||A||_est grows with ||A s|| / ||s|| of every column.
  // The scale (a power of two) is fixed by the first product. False when A x is not finite.
  bool product(const T* x, int cols, T* ax) {
    apply_(x, n_, cols, ax);
    if (!all_finite(ax, sz(n_, cols))) return false;
    double ratio = 0.0;
    for (int j = 0; j < cols; ++j) {
      const double lx = norm2(x + sz(j, n_), n_);
      if (lx > 0.0) ratio = std::max(ratio, norm2(ax + sz(j, n_), n_) / lx);
    }
    if (!scale_fixed_) {
      scale_ = power_of_two_scale(ratio);
      scale_fixed_ = true;
    }
    if (scale_ != 1.0) {
      const T s = static_cast<T>(scale_);
      for (size_t i = 0; i < sz(n_, cols); ++i) ax[i] *= s;
    }
    anorm_ = std::max(anorm_, ratio * scale_);
    return true;
  }

  // SVQB on `cols` columns of s (and the same rotation on as): s <- s V D^-1/2 over the kept
  // eigenpairs of s^T s. Returns the number of kept columns (packed to the front), -1 on failure.
  // `reference` (squared length) floors the scale the drop threshold is relative to: blocks
  // of unit columns projected off an orthonormal basis pass 1, so what the projection left only
  // as rounding residue is dropped.
  int svqb(T* s, T* as, int cols, T reference = T(0)) {
    if (cols == 0) return 0;
    T* g = small_.data();
    gemm<T>("T", "N", cols, cols, n_, T(1), s, n_, s, n_, T(0), g, cols);
    if (!eigh_inplace(cols, g, w_.data(), work_, iwork_)) return -1;
    const T top = std::max(std::max(w_[cols - 1], T(0)), reference);
    const T drop = top * static_cast<T>(kSvqbDrop) * eps_;
    int kept = 0;
    for (int j = cols - 1; j >= 0; --j) {  // largest first
      if (!(w_[j] > drop)) break;
      const T scale = T(1) / std::sqrt(w_[j]);
      T* dst = small2_.data() + sz(kept, cols);
      for (int i = 0; i < cols; ++i) dst[i] = g[i + sz(j, cols)] * scale;
      ++kept;
    }
    if (kept == 0) return 0;
    smallest_kept_ = w_[cols - kept];
    gemm<T>("N", "N", n_, kept, cols, T(1), s, n_, small2_.data(), cols, T(0), tmp_.data(), n_);
    std::memcpy(s, tmp_.data(), sz(n_, kept) * sizeof(T));
    if (as != nullptr) {
      gemm<T>("N", "N", n_, kept, cols, T(1), as, n_, small2_.data(), cols, T(0), tmp_.data(), n_);
      std::memcpy(as, tmp_.data(), sz(n_, kept) * sizeof(T));
    }
    return kept;
  }

  int svqb2(T* s, T* as, int cols, T reference = T(0)) {
    int kept = svqb(s, as, cols, reference);
    if (kept > 0) kept = svqb(s, as, kept, reference);
    return kept;
  }

  // Rayleigh-Ritz on the orthonormal s (cols columns) with as = A s: X, AX <- the top k Ritz pairs.
  bool rayleigh_ritz(const T* s, const T* as, int cols) {
    T* t = small_.data();
    gemm<T>("T", "N", cols, cols, n_, T(1), s, n_, as, n_, T(0), t, cols);
    for (int j = 0; j < cols; ++j) {
      for (int i = 0; i < j; ++i) t[i + sz(j, cols)] = t[j + sz(i, cols)] = T(0.5) * (t[i + sz(j, cols)] + t[j + sz(i, cols)]);
    }
    if (!eigh_inplace(cols, t, w_.data(), work_, iwork_)) return false;
    T* c = small2_.data();  // cols x k, descending
    for (int j = 0; j < k_; ++j) {
      theta_[j] = w_[cols - 1 - j];
      std::memcpy(c + sz(j, cols), t + sz(cols - 1 - j, cols), sz(cols) * sizeof(T));
    }
    gemm<T>("N", "N", n_, k_, cols, T(1), s, n_, c, cols, T(0), x_.data(), n_);
    gemm<T>("N", "N", n_, k_, cols, T(1), as, n_, c, cols, T(0), ax_.data(), n_);
    return true;
  }

  // Residual norms of (theta, X) with the current AX, relative to ||A||_est.
  void residuals() {
    for (int j = 0; j < k_; ++j) {
      double sum = 0.0;
      const T* x = x_.data() + sz(j, n_);
      const T* ax = ax_.data() + sz(j, n_);
      for (int i = 0; i < n_; ++i) {
        const double r = static_cast<double>(ax[i]) - static_cast<double>(theta_[j]) * x[i];
        sum += r * r;
      }
      res_[j] = anorm_ > 0 ? std::sqrt(sum) / anorm_ : std::sqrt(sum);
    }
  }

  // The a-posteriori test behind a converged status, on an explicit A X: X orthonormal to tol
  // and every Ritz value equal to its Rayleigh quotient x_j^T A x_j to tol ||A||_est (with the
  // residuals <= tol, checked by the caller, the Ritz values are then within sqrt(k) tol ||A||
  // of eigenvalues of A).
  bool honest() {
    T* g = small_.data();
    gemm<T>("T", "N", k_, k_, n_, T(1), x_.data(), n_, x_.data(), n_, T(0), g, k_);
    const double unit = anorm_ > 0 ? anorm_ : 1.0;
    for (int j = 0; j < k_; ++j) {
      for (int i = 0; i < k_; ++i) {
        const double dev = static_cast<double>(g[i + sz(j, k_)]) - (i == j ? 1.0 : 0.0);
        if (!(std::abs(dev) <= tol_)) return false;
      }
      double rq = 0.0;
      const T* x = x_.data() + sz(j, n_);
      const T* ax = ax_.data() + sz(j, n_);
      for (int i = 0; i < n_; ++i) rq += static_cast<double>(x[i]) * ax[i];
      if (!(std::abs(rq - static_cast<double>(theta_[j])) <= tol_ * unit)) return false;
    }
    return true;
  }

  // Ritz vectors of an orthonormal basis have unit length: one that lost it (beyond sqrt(eps))
  // shows that S was not orthonormal, and its Ritz value is not to be trusted.
  bool unit_ritz_vectors() const {
    const double slack = std::sqrt(static_cast<double>(eps_));
    for (int j = 0; j < k_; ++j) {
      if (!(std::abs(norm2(x_.data() + sz(j, n_), n_) - 1.0) <= slack)) return false;
    }
    return true;
  }

  // The smallest residual among the block's columns still iterated (unconverged wanted pairs and
  // guard vectors); +inf when there are none.
  double min_active_residual() const {
    double best = std::numeric_limits<double>::infinity();
    for (int j = 0; j < k_; ++j) {
      if (j < want_ && res_[j] <= tol_) continue;
      best = std::min(best, res_[j]);
    }
    return best;
  }

  int unconverged() const {
    int count = 0;
    for (int j = 0; j < want_; ++j) count += !(res_[j] <= tol_);
    return count;
  }

  // X, AX, theta from the first `cols` columns of s (any scale, possibly dependent): normalise,
  // SVQB twice, fill up to k with deterministic pseudo-random columns, one explicit product,
  // Rayleigh-Ritz. P is emptied.
  Status start(int cols) {
    T* s = s_.data();
    T* as = as_.data();
    normalize_columns<T>(n_, s, nullptr, cols);
    cols = svqb2(s, nullptr, cols, T(1));
    if (cols < 0) return Status::kBreakdown;
    while (cols < k_) {
      for (int fill = cols; fill < k_; ++fill) {
        for (int i = 0; i < n_; ++i) s[i + sz(fill, n_)] = static_cast<T>(random_.next());
      }
      normalize_columns<T>(n_, s + sz(cols, n_), nullptr, k_ - cols);
      cols = svqb2(s, nullptr, k_, T(1));
      if (cols < 0) return Status::kBreakdown;
    }
    if (!product(s, cols, as)) return Status::kNonFinite;
    if (!rayleigh_ritz(s, as, cols)) return Status::kBreakdown;
    residuals();
    p_cols_ = 0;
    ap_err_ = 0.0;
    since_explicit_ = 0;
    return Status::kConverged;
  }

  // Restart from the current X (re-orthonormalised, explicit product, P dropped).
  Status restart() {
    if (++restarts_ > kMaxRestarts) return Status::kBreakdown;
    std::memcpy(s_.data(), x_.data(), sz(n_, k_) * sizeof(T));
    return start(k_);
  }

  // One LOBPCG step from (X, AX, theta, P). Returns kConverged when it went through.
  Status step() {
    T* s = s_.data();
    T* as = as_.data();
    // W: residuals of the unconverged wanted pairs (soft locking) and of every guard vector, each
    // normalised, projected off X twice, SVQB'd relative to unit length.
    int a = 0;
    T* w = s + sz(k_, n_);
    for (int j = 0; j < k_; ++j) {
      if (j < want_ && res_[j] <= tol_) continue;
      T* col = w + sz(a, n_);
      const T* x = x_.data() + sz(j, n_);
      const T* ax = ax_.data() + sz(j, n_);
      for (int i = 0; i < n_; ++i) col[i] = ax[i] - theta_[j] * x[i];
      ++a;
    }
    normalize_columns<T>(n_, w, nullptr, a);
    for (int pass = 0; pass < 2; ++pass) {
      T* c = small_.data();
      gemm<T>("T", "N", k_, a, n_, T(1), x_.data(), n_, w, n_, T(0), c, k_);
      gemm<T>("N", "N", n_, a, k_, T(-1), x_.data(), n_, c, k_, T(1), w, n_);
    }
    a = svqb2(w, nullptr, a, T(1));
    if (a < 0) return Status::kBreakdown;
    // S = [X, W, P], AS = [AX, AW, AP].
    std::memcpy(s, x_.data(), sz(n_, k_) * sizeof(T));
    std::memcpy(as, ax_.data(), sz(n_, k_) * sizeof(T));
    if (a > 0 && !product(w, a, as + sz(k_, n_))) return Status::kNonFinite;
    std::memcpy(s + sz(k_ + a, n_), p_.data(), sz(n_, p_cols_) * sizeof(T));
    std::memcpy(as + sz(k_ + a, n_), ap_.data(), sz(n_, p_cols_) * sizeof(T));
    // [X, W] is orthonormal already (X from Rayleigh-Ritz, W projected off X twice and then
    // SVQB'd on its own), so only P needs work: unit columns, two block Gram-Schmidt passes
    // against [X, W] (the same coefficients applied to AP), then two SVQB passes on P alone with
    // the drop threshold referred to its unit columns. A third of the flops of two SVQB passes
    // over all of [X, W, P].
    int p_kept = 0;
    if (p_cols_ > 0) {
      const int q = k_ + a;
      T* pb = s + sz(q, n_);
      T* apb = as + sz(q, n_);
      normalize_columns<T>(n_, pb, apb, p_cols_);
      for (int pass = 0; pass < 2; ++pass) {
        T* c = small_.data();
        gemm<T>("T", "N", q, p_cols_, n_, T(1), s, n_, pb, n_, T(0), c, q);
        gemm<T>("N", "N", n_, p_cols_, q, T(-1), s, n_, c, q, T(1), pb, n_);
        gemm<T>("N", "N", n_, p_cols_, q, T(-1), as, n_, c, q, T(1), apb, n_);
      }
      p_kept = svqb(pb, apb, p_cols_, T(1));
      if (p_kept < 0) return Status::kBreakdown;
      // AP is implicit: its error relative to P, ap_err_, is divided by the length P kept in
      // the projection (cancellation), and compounds across iterations. ap_err_ is that
      // worst case (every rounding aligned, every loss compounding), far above the typical error
      // when the roundings are independent. Once the bound passes 10 tol (where the error
      // itself can reach tol and stall the residuals there), AP is recomputed
      // explicitly: one product of the kept P columns on that iteration only. A stale AP costs
      // iterations, never honesty: convergence is declared on an explicit A X (run()).
      bool explicit_ap = false;
      if (p_kept > 0) {
        ap_err_ = (ap_err_ + static_cast<double>(eps_)) / std::sqrt(static_cast<double>(smallest_kept_));
        explicit_ap = ap_err_ > 10 * tol_;
      }
      if (p_kept > 0) p_kept = svqb(pb, apb, p_kept, T(1));
      if (p_kept < 0) return Status::kBreakdown;
      if (p_kept > 0 && explicit_ap) {
        if (!product(pb, p_kept, apb)) return Status::kNonFinite;
        ap_err_ = static_cast<double>(eps_);
      }
    }
    if (p_kept == 0) ap_err_ = 0.0;
    const int cols = k_ + a + p_kept;
    // Keep the old X for a restart.
    std::memcpy(tmp2_.data(), x_.data(), sz(n_, k_) * sizeof(T));
    if (!rayleigh_ritz(s, as, cols)) return Status::kBreakdown;
    // P = [W, P] C_[W,P], AP likewise: the part of the new Ritz vectors outside the old X, formed
    // from the coefficients (X_new - X_old X_old^T X_new in exact arithmetic, without its
    // cancellation: AP's error stays relative to P, which is normalised next iteration).
    std::fill(p_.begin(), p_.end(), T(0));
    std::fill(ap_.begin(), ap_.end(), T(0));
    if (cols > k_) {
      const T* c = small2_.data() + k_;  // rows k.. of the cols x k coefficients
      gemm<T>("N", "N", n_, k_, cols - k_, T(1), s + sz(k_, n_), n_, c, cols, T(0), p_.data(), n_);
      gemm<T>("N", "N", n_, k_, cols - k_, T(1), as + sz(k_, n_), n_, c, cols, T(0), ap_.data(), n_);
    }
    p_cols_ = k_;
    ++since_explicit_;
    if (!all_finite(x_.data(), sz(n_, k_))) return Status::kNonFinite;
    if (!unit_ritz_vectors()) {
      // The basis lost orthonormality: go back to the previous X and drop P.
      std::memcpy(x_.data(), tmp2_.data(), sz(n_, k_) * sizeof(T));
      return restart();
    }
    residuals();
    // AX is carried through the rotations, drifting by ~eps ||A|| per iteration: harmless while
    // the residuals it measures are far above that. Recompute it explicitly every 10 iterations
    // once an active residual is below sqrt(eps) (and every 100 regardless); convergence is
    // always confirmed with an explicit product (run()).
    const double floor = std::sqrt(static_cast<double>(eps_));
    if (since_explicit_ >= 100 || (since_explicit_ >= 10 && min_active_residual() < floor)) {
      if (!product(x_.data(), k_, ax_.data())) return Status::kNonFinite;
      since_explicit_ = 0;
      residuals();
    }
    return Status::kConverged;
  }

  // Returns the status; X, theta, res hold the answer.
  Status run(const T* x0, int m0, int* iterations) {
    // Start: the warm start (m0 >= k columns; m0 <= 3k is used).
    const int cols0 = std::min(m0, 3 * k_);
    for (int j = 0; j < cols0; ++j) {
      for (int i = 0; i < n_; ++i) s_[i + sz(j, n_)] = x0[sz(i, m0) + j];
    }
    Status status = start(cols0);
    if (status != Status::kConverged) return status;
    int it = 0;
    while (true) {
      if (unconverged() == 0) {
        // Confirm with an explicit A X and the a-posteriori test before declaring convergence.
        if (since_explicit_ > 0) {
          if (!product(x_.data(), k_, ax_.data())) return Status::kNonFinite;
          since_explicit_ = 0;
          residuals();
        }
        if (unconverged() == 0) {
          if (honest()) break;
          status = restart();
          if (status != Status::kConverged) return status;
          continue;
        }
      }
      if (it >= o_.max_iters) break;
      ++it;
      status = step();
      if (status != Status::kConverged) {
        *iterations = it;
        return status;
      }
    }
    *iterations = it;
    return unconverged() == 0 ? Status::kConverged : Status::kMaxIters;
  }

  // The answer in the operator's own scale.
  T eigenvalue(int j) const { return static_cast<T>(static_cast<double>(theta_[j]) / scale_); }
  const std::vector<T>& x() const { return x_; }
  const std::vector<double>& res() const { return res_; }

 private:
  static constexpr int kMaxRestarts = 8;
  int n_, k_, want_;
  const Apply<T>& apply_;
  Options o_;
  std::vector<T> s_, as_, tmp_, tmp2_, x_, ax_, p_, ap_, small_, small2_, w_, theta_, work_;
  std::vector<int> iwork_;
  std::vector<double> res_;
  double anorm_ = 0.0, tol_ = 0.0, scale_ = 1.0;
  double ap_err_ = 0.0;
  T smallest_kept_ = T(1);
  bool scale_fixed_ = false;
  int p_cols_ = 0, since_explicit_ = 0, restarts_ = 0;
  Lcg random_;
  T eps_ = T(0);
};

// Dense answer for 5 k >= n: the eigendecomposition of A (explicit, or assembled from n products)
// with only the top k vectors back-transformed (tridiagonal_eigh.h, which scales A by a power of
// two into range), checked by the explicit residuals ||A v_j - w_j v_j|| / ||A||_2 (one product
// of k columns; ||A||_2 from the full spectrum).
template <typename T>
Status dense(int n, const Apply<T>& apply, const T* matrix, int k, double tol, const Result<T>& out) {
  std::vector<T> a(sz(n, n)), z(sz(n, n)), w(n);
  if (matrix != nullptr) {
    std::memcpy(a.data(), matrix, sz(n, n) * sizeof(T));
  } else {
    std::vector<T> eye(sz(n, n), T(0));
    for (int i = 0; i < n; ++i) eye[i + sz(i, n)] = T(1);
    apply(eye.data(), n, n, a.data());
    const SymmetryScan scan = scan_symmetry(n, a.data());
    if (!scan.finite) return Status::kNonFinite;
    if (!is_symmetric<T>(scan, n)) return Status::kNonSymmetric;
  }
  TridiagonalEigh<T> eigh(n);
  if (!eigh(a.data(), w.data(), z.data(), k)) return Status::kBreakdown;
  std::vector<T> v(sz(n, k)), av(sz(n, k));
  for (int j = 0; j < k; ++j) std::memcpy(v.data() + sz(j, n), z.data() + sz(n - 1 - j, n), sz(n) * sizeof(T));
  apply(v.data(), n, k, av.data());
  if (!all_finite(av.data(), sz(n, k))) return Status::kNonFinite;
  const double anorm = std::max(std::abs(static_cast<double>(w[0])), std::abs(static_cast<double>(w[n - 1])));
  std::vector<double> r(n);
  bool ok = true;
  for (int j = 0; j < k; ++j) {
    const double lambda = w[n - 1 - j];
    for (int i = 0; i < n; ++i) r[i] = static_cast<double>(av[i + sz(j, n)]) - lambda * v[i + sz(j, n)];
    const double res = anorm > 0 ? norm2(r.data(), n) / anorm : norm2(r.data(), n);
    ok = ok && res <= tol;
    out.eigvals[j] = static_cast<T>(lambda);
    out.residuals[j] = static_cast<T>(res);
    for (int i = 0; i < n; ++i) out.eigvecs[sz(i, k) + j] = v[i + sz(j, n)];
  }
  return ok ? Status::kConverged : Status::kBreakdown;
}

template <typename T>
void zero_outputs(int n, int k, const Result<T>& out) {
  std::fill(out.eigvals, out.eigvals + k, T(0));
  std::fill(out.residuals, out.residuals + k, T(0));
  std::fill(out.eigvecs, out.eigvecs + sz(n, k), T(0));
}

}  // namespace

template <typename T>
bool largest(int n, const Apply<T>& apply, const T* dense_matrix, const T* x0, int m,
             const Options& o, const Result<T>& out) {
  if (n < 1 || o.k < 1 || o.k > n || m < o.k) return false;
  const int k = o.k;
  *out.iterations = 0;
  *out.dense = 5 * k >= n ? 1 : 0;
  zero_outputs(n, k, out);
  auto finish = [&](Status status) {
    *out.status = static_cast<int32_t>(status);
    if (status == Status::kNonFinite || status == Status::kNonSymmetric) zero_outputs(n, k, out);
    return true;
  };
  if (!all_finite(x0, sz(n, m))) return finish(Status::kNonFinite);
  if (dense_matrix != nullptr) {
    const SymmetryScan scan = scan_symmetry(n, dense_matrix);
    if (!scan.finite) return finish(Status::kNonFinite);
    if (!is_symmetric<T>(scan, n)) return finish(Status::kNonSymmetric);
  }
  if (*out.dense) return finish(dense(n, apply, dense_matrix, k, effective_tol<T>(n, o.tol), out));
  const int block = std::min(k + std::max(o.guard, 0), n / 3);
  Solver<T> solver(n, apply, o, std::max(block, k));
  int iterations = 0;
  const Status status = solver.run(x0, m, &iterations);
  *out.iterations = iterations;
  if (status != Status::kNonFinite && all_finite(solver.x().data(), sz(n, k))) {
    for (int j = 0; j < k; ++j) {
      out.eigvals[j] = solver.eigenvalue(j);
      out.residuals[j] = static_cast<T>(solver.res()[j]);
      for (int i = 0; i < n; ++i) out.eigvecs[sz(i, k) + j] = solver.x()[i + sz(j, n)];
    }
  }
  return finish(status);
}

template bool largest<float>(int, const Apply<float>&, const float*, const float*, int,
                             const Options&, const Result<float>&);
template bool largest<double>(int, const Apply<double>&, const double*, const double*, int,
                              const Options&, const Result<double>&);

}  // namespace linalg_core::lobpcg
