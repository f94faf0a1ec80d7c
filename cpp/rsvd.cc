#include "rsvd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "finite.h"
#include "lapack.h"
#include "parallel.h"

namespace linalg_core::rsvd {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

template <typename T>
struct Scratch {
  std::vector<T> q, z, b, ub, vtb, sv, t, y, out, tau, work, omega_probes;
  std::vector<T> residual;  // tolerance mode: (I - Q Q^T) A W, recomputed from A W at each check
  std::vector<int> iwork;
};

// Range finder and the two projections. A row-major m x n is the column-major A^T (n x m, ld n),
// so A X = A_cm^T X and A^T X = A_cm X.
template <typename T>
class Solver {
 public:
  Solver(const Shape& s, const Options& o)
      : power_iters_(static_cast<int>(o.power_iters)),
        nystrom_(static_cast<Method>(o.method) == Method::kNystrom),
        tol_(o.tol) {
    m_ = static_cast<int>(s.m);
    n_ = static_cast<int>(s.n);
    l_ = static_cast<int>(s.l);
    k_ = static_cast<int>(o.k);
    r_ = static_cast<int>(s.probes);
    T q = T(0);
    int info = 0, lw = -1, iq = 0, liw = -1;
    const int rows = std::max(m_, n_);
    Lapack<T>::geqrf(&rows, &l_, nullptr, &rows, nullptr, &q, &lw, &info);
    grow(q);
    Lapack<T>::orgqr(&rows, &l_, &l_, nullptr, &rows, nullptr, &q, &lw, &info);
    grow(q);
    Lapack<T>::gesdd("S", &l_, &n_, nullptr, &l_, nullptr, nullptr, &l_, nullptr, &l_, &q, &lw,
                     nullptr, &info);
    grow(q);
    Lapack<T>::syevd("V", "L", &l_, nullptr, &l_, nullptr, &q, &lw, &iq, &liw, &info);
    grow(q);
    Lapack<T>::gesdd("S", &n_, &l_, nullptr, &n_, nullptr, nullptr, &n_, nullptr, &l_, &q, &lw,
                     nullptr, &info);
    grow(q);
    liwork_ = std::max(8 * l_, iq);
  }

  Scratch<T> make_scratch() const {
    Scratch<T> sc;
    sc.q.resize(sz(m_, l_ + r_));  // + r: the probes' products ride along the last pass over A
    sc.z.resize(sz(n_, l_ + r_));
    if ((power_iters_ == 0 || tolerance_mode()) && r_ > 0) sc.omega_probes.resize(sz(l_ + r_, n_));
    if (tolerance_mode()) sc.residual.resize(sz(m_, r_));
    sc.b.resize(sz(l_, n_));
    sc.ub.resize(sz(l_, l_));
    sc.vtb.resize(sz(l_, n_));
    sc.sv.resize(l_);
    sc.t.resize(sz(l_, std::max(l_, r_)));
    sc.y.resize(sz(m_, std::max(r_, 1)));
    sc.out.resize(sz(std::max(m_, n_), k_));  // the kept vectors before transposition
    sc.tau.resize(l_);
    sc.work.resize(lwork_);
    sc.iwork.resize(liwork_);
    return sc;
  }

  // Q (m x l, column-major) spanning A Omega after the power iterations. The probes W (n x r)
  // are appended to the last product with A, so A W costs no pass over A of its own (memory-bound
  // at r = 10: ~10% of a warm-started q = 1 call); it lands in sc.y.
  bool range(const T* a, const T* omega, const T* probes, Scratch<T>& sc) const {
    const int m = m_, n = n_, l = l_;
    const int r = probes != nullptr ? r_ : 0, lr = l + r;
    const T one = T(1), zero = T(0);
    T *q = sc.q.data(), *z = sc.z.data();
    // Omega row-major n x l is the column-major Omega^T (l x n, ld l).
    if (power_iters_ == 0 && r > 0) {
      first_product_with_probes(a, omega, probes, sc);
    } else {
      Lapack<T>::gemm("T", "T", &m, &l, &n, &one, a, &n, omega, &l, &zero, q, &m);
    }
    // Inside the power iterations only the span matters: normalise by the P L factor of a
    // partially pivoted LU (getrf, ~half the flops of Householder QR and no orgqr), as sklearn
    // does; the final basis is orthonormalised by Householder QR.
    for (int it = 0; it < power_iters_; ++it) {
      if (!lu_normalise(q, m, sc)) return false;
      Lapack<T>::gemm("N", "N", &n, &l, &m, &one, a, &n, q, &m, &zero, z, &n);  // A^T Q
      if (!lu_normalise(z, n, sc)) return false;
      const bool last = it + 1 == power_iters_;
      if (last && r > 0) {
        for (int i = 0; i < n; ++i) {
          for (int j = 0; j < r; ++j) z[i + sz(l + j, n)] = probes[sz(i, r) + j];
        }
      }
      const int cols = last ? lr : l;
      Lapack<T>::gemm("T", "N", &m, &cols, &n, &one, a, &n, z, &n, &zero, q, &m);  // A Z
    }
    if (r > 0) std::memcpy(sc.y.data(), q + sz(m, l), sz(m, r) * sizeof(T));
    return orthonormalise(q, m, sc);
  }

  // The tolerance mode's range finder: Q (in sc.q) and Z = A^T Q (n x l, column-major, in
  // sc.z) for the first Q whose bound is <= tol ||Z||_2, or after power_iters iterations; the
  // bound goes to *err, the iterations run to *iterations, whether the bound was met to *met.
  // A W rides along the first product (sc.y), so each check costs no pass over A: Householder QR
  // of Y (where the fixed mode's LU would be), ||Z||_2 from the l x l Gram Z^T Z, and the
  // probes' projection; the Z of the last check is the B^T (svd) or A Q (eigh) the caller needs.
  bool range_to_tolerance(const T* a, const T* omega, const T* probes, Scratch<T>& sc, T* err,
                          int32_t* iterations, bool* met) const {
    const int m = m_, n = n_, l = l_, r = r_;
    const T one = T(1), zero = T(0);
    T *q = sc.q.data(), *z = sc.z.data();
    first_product_with_probes(a, omega, probes, sc);
    std::memcpy(sc.y.data(), q + sz(m, l), sz(m, r) * sizeof(T));
    for (int it = 0;; ++it) {
      if (!orthonormalise(q, m, sc)) return false;
      Lapack<T>::gemm("N", "N", &n, &l, &m, &one, a, &n, q, &m, &zero, z, &n);  // A^T Q
      std::memcpy(sc.residual.data(), sc.y.data(), sz(m, r) * sizeof(T));
      *err = error_bound(sc.residual.data(), sc);
      *iterations = it;
      double sigma = 0.0;
      if (!spectral_norm(z, n, sc, &sigma)) return false;
      *met = static_cast<double>(*err) <= tol_ * sigma;
      if (*met || it == power_iters_) return true;
      if (!lu_normalise(z, n, sc)) return false;
      Lapack<T>::gemm("T", "N", &m, &l, &n, &one, a, &n, z, &n, &zero, q, &m);  // A Z
    }
  }

  // 10 sqrt(2/pi) max_j ||(I - Q Q^T) A w_j|| over the probes (HMT Lemma 4.1), from A W in y
  // (m x r, overwritten by its projection).
  T error_bound(T* y, Scratch<T>& sc) const {
    if (r_ == 0) return T(0);
    const int m = m_, l = l_, r = r_;
    const T one = T(1), zero = T(0), minus_one = T(-1);
    T* c = sc.t.data();
    Lapack<T>::gemm("T", "N", &l, &r, &m, &one, sc.q.data(), &m, y, &m, &zero, c, &l);
    Lapack<T>::gemm("N", "N", &m, &r, &l, &minus_one, sc.q.data(), &m, c, &l, &one, y, &m);
    double worst = 0.0;
    for (int j = 0; j < r; ++j) {
      double sum = 0.0;
      for (int i = 0; i < m; ++i) sum += static_cast<double>(y[i + sz(j, m)]) * y[i + sz(j, m)];
      worst = std::max(worst, std::sqrt(sum));
    }
    return static_cast<T>(10.0 * std::sqrt(2.0 / M_PI) * worst);
  }

  // Q and the bound, by the fixed or the tolerance mode; *met is false only when tol was not met.
  // In the tolerance mode sc.z holds A^T Q afterwards.
  bool range_and_bound(const T* a, const T* omega, const T* probes, Scratch<T>& sc, T* err,
                       int32_t* iterations, bool* met) const {
    *met = true;
    if (tolerance_mode()) return range_to_tolerance(a, omega, probes, sc, err, iterations, met);
    *iterations = power_iters_;
    if (!range(a, omega, probes, sc)) return false;
    *err = error_bound(sc.y.data(), sc);
    return true;
  }

  bool svd(const T* a, const T* omega, const T* probes, T* u, T* s, T* vt, T* err,
           int32_t* iterations, bool* met, Scratch<T>& sc) const {
    const int m = m_, n = n_, l = l_, k = k_;
    const T one = T(1), zero = T(0);
    if (!range_and_bound(a, omega, probes, sc, err, iterations, met)) return false;
    // B^T = A^T Q (n x l, column-major): its thin SVD B^T = V_B S U_B^T by gesdd takes the
    // tall-matrix QR path instead of the wide l x n B's LQ path (measured at 4000 x 2000, k = 64:
    // a warm-started q = 1 call 44-49 ms -> 34-36 ms, same singular values). Then
    // A ~ (Q U_B) S V_B^T.
    T* bt = tolerance_mode() ? sc.z.data() : sc.b.data();
    if (!tolerance_mode()) Lapack<T>::gemm("N", "N", &n, &l, &m, &one, a, &n, sc.q.data(), &m, &zero, bt, &n);
    int info = 0;
    const int lwork = static_cast<int>(sc.work.size());
    T* vb = sc.vtb.data();  // n x l: V_B
    T* ubt = sc.ub.data();  // l x l: U_B^T
    Lapack<T>::gesdd("S", &n, &l, bt, &n, sc.sv.data(), vb, &n, ubt, &l, sc.work.data(), &lwork,
                     sc.iwork.data(), &info);
    if (info != 0) return false;
    // U = Q U_B[:, :k] = Q (U_B^T)[:k, :]^T (m x k, column-major), then transposed into the
    // row-major output.
    T* ucol = sc.out.data();
    Lapack<T>::gemm("N", "T", &m, &k, &l, &one, sc.q.data(), &m, ubt, &l, &zero, ucol, &m);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < k; ++j) u[sz(i, k) + j] = ucol[i + sz(j, m)];
    }
    for (int j = 0; j < k; ++j) {
      s[j] = sc.sv[j];
      std::memcpy(vt + sz(j, n), vb + sz(j, n), sz(n) * sizeof(T));
    }
    return all_finite(u, sz(m, k)) && all_finite(vt, sz(k, n));
  }

  // Stabilised Nystrom approximation for PSD A (Tropp, Yurtsever, Udell, Cevher 2017, Alg. 3)
  // with the orthonormal Q as test matrix: Y_nu = A Q + nu Q, nu = sqrt(n) eps ||A Q||_F,
  // C = chol(Q^T Y_nu), F = Y_nu C^-1 = U S V^T, eigenpairs (max(S^2 - nu, 0), U). A Y (Q^T A
  // Q)^+ Y^T is the PSD approximation closer to A than the Rayleigh-Ritz Q Q^T A Q Q^T. False
  // when the Cholesky factorisation fails (A not PSD numerically): Rayleigh-Ritz then answers.
  bool nystrom(T* y, T* eigvals, T* eigvecs, Scratch<T>& sc) const {
    const int n = n_, l = l_, k = k_;
    const T one = T(1), zero = T(0);
    double frob = 0.0;
    for (size_t i = 0; i < sz(n, l); ++i) frob += static_cast<double>(y[i]) * y[i];
    const T nu = static_cast<T>(std::sqrt(static_cast<double>(n)) *
                                std::numeric_limits<T>::epsilon() * std::sqrt(frob));
    const T* q = sc.q.data();
    for (size_t i = 0; i < sz(n, l); ++i) y[i] += nu * q[i];
    T* c = sc.t.data();
    Lapack<T>::gemm("T", "N", &l, &l, &n, &one, q, &n, y, &n, &zero, c, &l);
    for (int j = 0; j < l; ++j) {
      for (int i = 0; i < j; ++i) c[i + sz(j, l)] = c[j + sz(i, l)] = T(0.5) * (c[i + sz(j, l)] + c[j + sz(i, l)]);
    }
    int info = 0;
    Lapack<T>::potrf("U", &l, c, &l, &info);
    if (info != 0) return false;
    Lapack<T>::trsm("R", "U", "N", "N", &n, &l, &one, c, &l, y, &n);  // F = Y_nu C^-1
    T* u = sc.vtb.data();  // n x l
    const int lwork = static_cast<int>(sc.work.size());
    Lapack<T>::gesdd("S", &n, &l, y, &n, sc.sv.data(), u, &n, sc.ub.data(), &l, sc.work.data(),
                     &lwork, sc.iwork.data(), &info);
    if (info != 0) return false;
    for (int j = 0; j < k; ++j) {
      eigvals[j] = std::max(sc.sv[j] * sc.sv[j] - nu, T(0));
      for (int i = 0; i < n; ++i) eigvecs[sz(i, k) + j] = u[i + sz(j, n)];
    }
    return true;
  }

  bool eigh(const T* a, const T* omega, const T* probes, T* eigvals, T* eigvecs, T* err,
            int32_t* iterations, bool* met, int32_t* method, Scratch<T>& sc) const {
    const int n = n_, l = l_, k = k_;
    const T one = T(1), zero = T(0);
    if (!range_and_bound(a, omega, probes, sc, err, iterations, met)) return false;
    T* aq = sc.z.data();  // A Q, n x l (A^T Q = A Q: already there in the tolerance mode)
    if (!tolerance_mode()) Lapack<T>::gemm("T", "N", &n, &l, &n, &one, a, &n, sc.q.data(), &n, &zero, aq, &n);
    *method = static_cast<int32_t>(Method::kRayleighRitz);
    if (nystrom_ && nystrom(aq, eigvals, eigvecs, sc)) {
      *method = static_cast<int32_t>(Method::kNystrom);
      return all_finite(eigvecs, sz(n, k)) && all_finite(eigvals, sz(k));
    }
    if (nystrom_) {  // the failed Nystrom attempt overwrote A Q
      Lapack<T>::gemm("T", "N", &n, &l, &n, &one, a, &n, sc.q.data(), &n, &zero, aq, &n);
    }
    // Rayleigh-Ritz: T = Q^T A Q (l x l), symmetrised, then its eigenpairs.
    T* t = sc.t.data();
    Lapack<T>::gemm("T", "N", &l, &l, &n, &one, sc.q.data(), &n, aq, &n, &zero, t, &l);
    for (int j = 0; j < l; ++j) {
      for (int i = 0; i < j; ++i) {
        const T mean = T(0.5) * (t[i + sz(j, l)] + t[j + sz(i, l)]);
        t[i + sz(j, l)] = t[j + sz(i, l)] = mean;
      }
    }
    int info = 0;
    const int lwork = static_cast<int>(sc.work.size());
    const int liwork = static_cast<int>(sc.iwork.size());
    Lapack<T>::syevd("V", "L", &l, t, &l, sc.sv.data(), sc.work.data(), &lwork, sc.iwork.data(),
                     &liwork, &info);
    if (info != 0) return false;
    // Top k (syevd is ascending): W = t[:, l-1 .. l-k]; V = Q W (n x k) into the row-major output.
    T* w = sc.ub.data();
    for (int j = 0; j < k; ++j) {
      eigvals[j] = sc.sv[l - 1 - j];
      std::memcpy(w + sz(j, l), t + sz(l - 1 - j, l), sz(l) * sizeof(T));
    }
    T* vcol = sc.out.data();
    Lapack<T>::gemm("N", "N", &n, &k, &l, &one, sc.q.data(), &n, w, &l, &zero, vcol, &n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < k; ++j) eigvecs[sz(i, k) + j] = vcol[i + sz(j, n)];
    }
    return all_finite(eigvecs, sz(n, k)) && all_finite(eigvals, sz(k));
  }

 private:
  void grow(T q) { lwork_ = std::max(lwork_, static_cast<int>(q) + 1); }

  bool tolerance_mode() const { return tol_ > 0; }

  // Y = A [Omega, W] into sc.q (m x (l + r)): the probes' product rides along the first pass.
  void first_product_with_probes(const T* a, const T* omega, const T* probes, Scratch<T>& sc) const {
    const int m = m_, n = n_, l = l_, r = r_, lr = l + r;
    const T one = T(1), zero = T(0);
    T* comb = sc.omega_probes.data();  // [Omega^T; W^T], (l + r) x n
    for (int c = 0; c < n; ++c) {
      std::memcpy(comb + sz(c, lr), omega + sz(c, l), sz(l) * sizeof(T));
      std::memcpy(comb + sz(c, lr) + l, probes + sz(c, r), sz(r) * sizeof(T));
    }
    Lapack<T>::gemm("T", "T", &m, &lr, &n, &one, a, &n, comb, &lr, &zero, sc.q.data(), &m);
  }

  // ||Z||_2 of the column-major rows x l block Z, as sqrt(lambda_max(Z^T Z)): the Gram squares
  // the condition, but only its largest eigenvalue is used, which it keeps to relative rounding.
  bool spectral_norm(const T* block, int rows, Scratch<T>& sc, double* norm) const {
    const int l = l_;
    const T one = T(1), zero = T(0);
    T* gram = sc.ub.data();  // l x l, lower triangle
    Lapack<T>::syrk("L", "T", &l, &rows, &one, block, &rows, &zero, gram, &l);
    int info = 0;
    const int lwork = static_cast<int>(sc.work.size());
    const int liwork = static_cast<int>(sc.iwork.size());
    Lapack<T>::syevd("N", "L", &l, gram, &l, sc.sv.data(), sc.work.data(), &lwork, sc.iwork.data(),
                     &liwork, &info);
    if (info != 0) return false;
    *norm = std::sqrt(std::max(static_cast<double>(sc.sv[l - 1]), 0.0));
    return true;
  }

  // block (rows x l) <- P L from block = P L U (getrf): same column span, unit lower
  // trapezoidal L with |entries| <= 1, so the columns cannot collapse onto the top singular
  // vector between power iterations.
  bool lu_normalise(T* block, int rows, Scratch<T>& sc) const {
    const int l = l_;
    int info = 0;
    int* ipiv = sc.iwork.data();
    Lapack<T>::getrf(&rows, &l, block, &rows, ipiv, &info);
    if (info < 0) return false;  // info > 0: an exactly zero pivot; L is still usable
    for (int j = 0; j < l; ++j) {
      T* col = block + sz(j, rows);
      for (int i = 0; i < j; ++i) col[i] = T(0);
      col[j] = T(1);
    }
    // Undo the row interchanges (P L): apply them in reverse order.
    const int one = 1, minus_one = -1;
    Lapack<T>::laswp(&l, block, &rows, &one, &l, ipiv, &minus_one);
    return true;
  }

  bool orthonormalise(T* block, int rows, Scratch<T>& sc) const {
    int info = 0;
    const int l = l_;
    const int lwork = static_cast<int>(sc.work.size());
    Lapack<T>::geqrf(&rows, &l, block, &rows, sc.tau.data(), sc.work.data(), &lwork, &info);
    if (info != 0) return false;
    Lapack<T>::orgqr(&rows, &l, &l, block, &rows, sc.tau.data(), sc.work.data(), &lwork, &info);
    return info == 0;
  }

  int power_iters_ = 0;
  bool nystrom_ = false;
  double tol_ = 0;  // > 0: the tolerance mode
  int m_ = 0, n_ = 0, l_ = 0, k_ = 0, r_ = 0;
  int lwork_ = 1, liwork_ = 1;
};

bool valid(const Shape& s, const Options& o) {
  // Every dimension and count is a LAPACK int (or a loop bound) inside the solver.
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  for (int64_t v : {s.m, s.n, s.l, s.probes, o.k, o.power_iters}) {
    if (v > kIntMax) return false;
  }
  return s.m >= 1 && s.n >= 1 && o.k >= 1 && s.l >= o.k && s.l <= std::min(s.m, s.n) &&
         s.probes >= 0 && o.power_iters >= 0 && s.batch >= 0 && std::isfinite(o.tol) && o.tol >= 0 &&
         (o.tol == 0 || s.probes > 0);
}

template <typename T, typename Run>
bool for_batch(const Shape& shape, const Options& options, Run&& run) {
  if (!valid(shape, options)) return false;
  if (shape.batch == 0) return true;
  const Solver<T> solver(shape, options);
  const int workers = batch_workers(shape.batch, std::max(shape.m, shape.n));
  std::vector<Scratch<T>> scratch;
  for (int w = 0; w < std::max<int64_t>(1, std::min<int64_t>(workers, shape.batch)); ++w) {
    scratch.push_back(solver.make_scratch());
  }
  parallel_for(shape.batch, workers, [&](int worker, int64_t b) { run(solver, b, scratch[worker]); });
  return true;
}

}  // namespace

template <typename T>
bool svd(const Shape& shape, const SvdArgs<T>& a, const Options& options) {
  const int64_t m = shape.m, n = shape.n, k = options.k, l = shape.l, r = shape.probes;
  if (static_cast<Method>(options.method) != Method::kSvd) return false;
  return for_batch<T>(shape, options, [&](const Solver<T>& solver, int64_t b, Scratch<T>& sc) {
    const T* ab = a.a + b * m * n;
    T *u = a.u + b * m * k, *s = a.s + b * k, *vt = a.vt + b * k * n;
    Status status = Status::kOk;
    bool met = true;
    a.iterations[b] = 0;
    if (!all_finite(ab, sz(m, n))) {
      status = Status::kNonFiniteInput;
    } else if (!solver.svd(ab, a.omega + b * n * l, r ? a.probes + b * n * r : nullptr, u, s, vt,
                           a.error + b, a.iterations + b, &met, sc)) {
      status = Status::kLapackFailure;
    } else if (!met) {
      status = Status::kMaxIters;
    }
    if (status != Status::kOk && status != Status::kMaxIters) {
      std::fill(u, u + m * k, T(0));
      std::fill(s, s + k, T(0));
      std::fill(vt, vt + k * n, T(0));
      a.error[b] = T(0);
    }
    a.status[b] = static_cast<int32_t>(status);
  });
}

template <typename T>
bool eigh(const Shape& shape, const EighArgs<T>& a, const Options& options) {
  const int64_t n = shape.n, k = options.k, l = shape.l, r = shape.probes;
  const auto method = static_cast<Method>(options.method);
  if (shape.m != shape.n || (method != Method::kRayleighRitz && method != Method::kNystrom)) return false;
  return for_batch<T>(shape, options, [&](const Solver<T>& solver, int64_t b, Scratch<T>& sc) {
    const T* ab = a.a + b * n * n;
    T *w = a.eigvals + b * k, *v = a.eigvecs + b * n * k;
    Status status = Status::kOk;
    bool met = true;
    a.method[b] = static_cast<int32_t>(method);
    a.iterations[b] = 0;
    if (!all_finite(ab, sz(n, n))) {
      status = Status::kNonFiniteInput;
    } else if (!solver.eigh(ab, a.omega + b * n * l, r ? a.probes + b * n * r : nullptr, w, v,
                            a.error + b, a.iterations + b, &met, a.method + b, sc)) {
      status = Status::kLapackFailure;
    } else if (!met) {
      status = Status::kMaxIters;
    }
    if (status != Status::kOk && status != Status::kMaxIters) {
      std::fill(w, w + k, T(0));
      std::fill(v, v + n * k, T(0));
      a.error[b] = T(0);
    }
    a.status[b] = static_cast<int32_t>(status);
  });
}

template bool svd<float>(const Shape&, const SvdArgs<float>&, const Options&);
template bool svd<double>(const Shape&, const SvdArgs<double>&, const Options&);
template bool eigh<float>(const Shape&, const EighArgs<float>&, const Options&);
template bool eigh<double>(const Shape&, const EighArgs<double>&, const Options&);

}  // namespace linalg_core::rsvd
