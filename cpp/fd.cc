#include "fd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "blas_threads.h"
#include "finite.h"
#include "lapack.h"
#include "parallel.h"
#include "symmetry.h"
#include "tridiagonal_eigh.h"

namespace linalg_core::fd {
namespace {

int lwork_from(double query) { return std::max(1, static_cast<int>(query) + 1); }

// Scratch for one worker, sized once per call (LAPACK workspace queried once per batch).
template <typename T>
struct Scratch {
  std::vector<T> a, b, c, e, f, g, w, y, tau, work;
  std::vector<T> lam;     // lambda 2^-E
  std::vector<T> factor;  // dense method, factor term: row-major G 2^-(E/2)
  std::vector<int> iwork;
};

template <typename T>
size_t sz(int a, int b = 1) {
  return static_cast<size_t>(a) * static_cast<size_t>(b);
}

template <typename T>
class Updater {
 public:
  Updater(const UpdateShape& s, Method method) : s_(s), method_(method) {
    d_ = static_cast<int>(s.dim);
    l_ = static_cast<int>(s.rank);
    r_ = static_cast<int>(s.columns);
    n_ = l_ + r_;
    k_ = std::min(d_, n_);
    m_ = std::min(l_ + 1, d_);
    if (method_ == Method::kThinStack && n_ > d_) method_ = Method::kThinStackHouseholder;
    if (method_ == Method::kDenseEigh) {
      query_dense();
    } else {
      query_householder();
      if (method_ == Method::kThinStack) query_projected();
    }
  }

  Scratch<T> make_scratch() const {
    Scratch<T> sc;
    const int d = d_, l = l_, r = r_, n = n_, k = k_, m = m_;
    if (method_ == Method::kDenseEigh) {
      sc.a.resize(sz<T>(d, d));  // C, then the tridiagonal reduction's reflectors
      sc.b.resize(sz<T>(d, l));  // U diag(lambda)^(1/2)
      sc.c.resize(sz<T>(d, d));  // eigenvectors of the tridiagonal matrix
      sc.e.resize(sz<T>(d));     // tridiagonal diagonal
      sc.f.resize(sz<T>(d));     // tridiagonal off-diagonal
      sc.w.resize(sz<T>(d));
      sc.tau.resize(sz<T>(d));
      sc.iwork.resize(liwork_ + 2 * m);  // iwork, then isuppz
    } else {
      // Householder: Z (d x n), R (k x n), R R^T (k x k). Projected: G1 and Q2 (d x r each),
      // C, C2 (l x r) and R2 (r x r), F and K (n x n), W (n x (l+1)), Gram (l x l).
      sc.a.resize(std::max(sz<T>(d, n), 2 * sz<T>(d, r)));
      sc.b.resize(std::max(sz<T>(k, n), 2 * sz<T>(l, r) + sz<T>(r, r)));
      sc.c.resize(std::max(sz<T>(k, k), sz<T>(n, n)));
      sc.e.resize(sz<T>(n, n));
      sc.f.resize(std::max(sz<T>(n, l + 1), sz<T>(k, l + 1)));
      sc.y.resize(sz<T>(n, l + 1));
      sc.g.resize(sz<T>(l, l));
      sc.w.resize(sz<T>(std::max(k, n)));
      sc.tau.resize(sz<T>(std::max(k, r)));
      sc.iwork.resize(liwork_);
    }
    sc.work.resize(lwork_);
    sc.lam.resize(l);
    return sc;
  }

  void run(const UpdateArgs<T>& a, int64_t b, Scratch<T>& sc) const {
    const size_t dl = sz<T>(d_, l_);
    const T* U = a.basis + b * dl;
    const T* lam = a.eigvals + b * l_;
    const T rho = a.escaped_mass[b];
    const size_t term_size = sz<T>(d_, s_.term_is_matrix ? d_ : r_);
    const T* term = a.term + b * term_size;
    const T beta = a.beta[b];
    T* U_out = a.basis_out + b * dl;
    T* lam_out = a.eigvals_out + b * l_;

    Method used = method_;
    Status status = check_input(U, lam, rho, term, term_size, beta);
    if (status == Status::kOk) {
      const int E = scale_exponent(lam, term, term_size, beta);
      const T term_scale = std::ldexp(T(1), s_.term_is_matrix ? -E : -E / 2);
      T* lam_scaled = sc.lam.data();
      for (int j = 0; j < l_; ++j) lam_scaled[j] = std::ldexp(lam[j], -E);
      Result res;
      bool ok = false;
      if (method_ == Method::kDenseEigh) {
        ok = dense(U, lam_scaled, term, term_scale, beta, U_out, lam_out, &res, sc);
      } else {
        if (method_ == Method::kThinStack) {
          ok = projected(U, lam_scaled, term, term_scale, beta, U_out, lam_out, &res, sc);
        }
        if (!ok) {
          used = Method::kThinStackHouseholder;
          ok = householder(U, lam_scaled, term, term_scale, beta, U_out, lam_out, &res, sc);
        }
      }
      status = ok ? finish(res, E, rho, beta, U_out, lam_out, a, b) : Status::kLapackFailure;
      if (status == Status::kOk) {
        a.method[b] = static_cast<int32_t>(used);
        a.status[b] = static_cast<int32_t>(Status::kOk);
        return;
      }
    }
    // Failure: the state passes through unchanged, so no NaN ever enters it.
    std::memcpy(U_out, U, dl * sizeof(T));
    std::memcpy(lam_out, lam, l_ * sizeof(T));
    a.escaped_mass_out[b] = rho;
    a.step_mass[b] = T(0);
    a.residual[b] = T(0);
    a.method[b] = static_cast<int32_t>(used);
    a.status[b] = static_cast<int32_t>(status);
  }

 private:
  struct Result {
    T rho_t = T(0);   // mu_{l+1}
    T top = T(0);     // mu_1
    T bottom = T(0);  // mu_d when the method computed it (dense), else 0
  };

  static constexpr T eps() { return std::numeric_limits<T>::epsilon(); }

  // The input contract, O(d r) or O(d^2): every check is a pass over data the update reads anyway.
  Status check_input(const T* U, const T* lam, T rho, const T* term, size_t term_size,
                     T beta) const {
    if (!(beta > T(0) && beta <= T(1))) return Status::kBadBeta;
    if (!all_finite(term, term_size) || !all_finite(U, sz<T>(d_, l_)) || !all_finite(lam, l_) ||
        !all_finite(&rho, 1)) {
      return Status::kNonFiniteInput;
    }
    if (!(rho >= T(0)) || !(lam[l_ - 1] >= T(0))) return Status::kInvalidState;
    for (int j = 0; j + 1 < l_; ++j) {
      if (!(lam[j] >= lam[j + 1])) return Status::kInvalidState;
    }
    if (!s_.term_is_matrix) return Status::kOk;
    const SymmetryScan scan = scan_symmetry(d_, term);
    if (!is_symmetric<T>(scan, d_)) return Status::kNonSymmetricTerm;
    const T largest = static_cast<T>(scan.max_abs);
    T lowest_diagonal = T(0);
    for (int i = 0; i < d_; ++i) lowest_diagonal = std::min(lowest_diagonal, term[sz<T>(i, d_) + i]);
    if (lowest_diagonal < -indefinite_tolerance() * largest) return Status::kIndefiniteTerm;
    return Status::kOk;
  }

  // Relative size of a negative eigenvalue that is more than rounding: a PSD matrix formed in
  // floating point (G G^T, a sum of them) is PSD to ~n eps of its norm; sqrt(eps) says "clearly".
  T indefinite_tolerance() const { return std::sqrt(eps()) + T(16) * T(d_) * eps(); }

  // frexp's exponent: |x| 2^-e in [0.5, 1) for x != 0.
  static int exponent_of(T x) {
    int e = 0;
    std::frexp(x, &e);
    return e;
  }

  // E with max(beta lambda_1, max|M|, max|G|^2) 2^-E in [0.25, 1): even (the factor is scaled by
  // 2^-(E/2)), within +-(max_exponent - 4) so that 2^-E, 2^-(E/2) and the symmetrisation's
  // 2^-(E+1) are normal numbers (XLA runs handlers with denormals flushed to zero); the scaled
  // magnitudes stay below 16. 0 when everything is zero. Only magnitudes are compared: no square
  // of an input is formed.
  int scale_exponent(const T* lam, const T* term, size_t term_size, T beta) const {
    const T largest = max_abs(term, term_size);
    int E = std::numeric_limits<int>::min();
    if (largest > T(0)) E = s_.term_is_matrix ? exponent_of(largest) : 2 * exponent_of(largest);
    const T top = beta * lam[0];
    if (top > T(0)) E = std::max(E, exponent_of(top));
    if (E == std::numeric_limits<int>::min()) return 0;
    if (E % 2 != 0) E += 1;
    const int limit = std::numeric_limits<T>::max_exponent - 4;
    return std::max(-limit, std::min(limit, E));
  }

  // Unscales a successful update, checks it a posteriori and writes the diagnostics. Returns kOk
  // only for a finite answer that keeps the invariants (lambda descending >= 0, rho >= 0).
  Status finish(const Result& res, int E, T rho, T beta, const T* U_out, T* lam_out,
                const UpdateArgs<T>& a, int64_t b) const {
    if (s_.term_is_matrix && res.bottom < -indefinite_tolerance() * res.top) {
      return Status::kIndefiniteTerm;
    }
    const T top = std::ldexp(res.top, E);
    const T rho_t = std::ldexp(res.rho_t, E);
    const T escaped = beta * rho + rho_t;
    // Below min / eps the smaller eigenvalues (and rho_t) fall under the smallest normal number,
    // where XLA's flush-to-zero drops them: an error above eps relative to mu_1.
    const bool underflow = res.top > T(0) && top < std::numeric_limits<T>::min() / eps();
    if (!std::isfinite(top) || !std::isfinite(escaped) || underflow) {
      return Status::kNotRepresentable;
    }
    for (int j = 0; j < l_; ++j) lam_out[j] = std::ldexp(lam_out[j], E);
    bool valid = all_finite(U_out, sz<T>(d_, l_)) && all_finite(lam_out, l_) &&
                 lam_out[l_ - 1] >= T(0) && rho_t >= T(0) && escaped >= T(0);
    for (int j = 0; valid && j + 1 < l_; ++j) valid = lam_out[j] >= lam_out[j + 1];
    if (!valid) return Status::kLapackFailure;
    a.escaped_mass_out[b] = escaped;
    a.step_mass[b] = rho_t;
    a.residual[b] = res.top > T(0) ? res.rho_t / res.top : T(0);
    return Status::kOk;
  }

  void grow_work(T query) { lwork_ = std::max(lwork_, lwork_from(query)); }

  void query_householder() {
    T q = T(0);
    int info = 0, lw = -1, liw = -1, iq = 0;
    Lapack<T>::geqrf(&d_, &n_, nullptr, &d_, nullptr, &q, &lw, &info);
    grow_work(q);
    Lapack<T>::ormqr("R", "T", &l_, &d_, &k_, nullptr, &d_, nullptr, nullptr, &l_, &q, &lw, &info);
    grow_work(q);
    Lapack<T>::syevd("V", "U", &k_, nullptr, &k_, nullptr, &q, &lw, &iq, &liw, &info);
    grow_work(q);
    liwork_ = std::max(liwork_, iq);
  }

  void query_projected() {
    T q = T(0);
    int info = 0, lw = -1, liw = -1, iq = 0;
    Lapack<T>::geqrf(&d_, &r_, nullptr, &d_, nullptr, &q, &lw, &info);
    grow_work(q);
    Lapack<T>::orgqr(&d_, &r_, &r_, nullptr, &d_, nullptr, &q, &lw, &info);
    grow_work(q);
    Lapack<T>::syevd("V", "U", &n_, nullptr, &n_, nullptr, &q, &lw, &iq, &liw, &info);
    grow_work(q);
    liwork_ = std::max(liwork_, iq);
  }

  void query_dense() {
    T q = T(0), zero = T(0);
    int info = 0, lw = -1, liw = -1, iq = 0, found = 0;
    const int il = d_ - m_ + 1, iu = d_;
    Lapack<T>::sytrd("L", &d_, nullptr, &d_, nullptr, nullptr, nullptr, &q, &lw, &info);
    grow_work(q);
    Lapack<T>::stedc("I", &d_, nullptr, nullptr, nullptr, &d_, &q, &lw, &iq, &liw, &info);
    grow_work(q);
    liwork_ = std::max(liwork_, iq);
    lwork_ = std::max(lwork_, static_cast<int>(apply_sytrd_q_work(d_, m_)));
    Lapack<T>::syevr("V", "I", "L", &d_, nullptr, &d_, &zero, &zero, &il, &iu, &zero, &found,
                     nullptr, nullptr, &d_, nullptr, &q, &lw, &iq, &liw, &info);
    grow_work(q);
    liwork_ = std::max(liwork_, iq);
  }

  // Writes the top eigenpairs of an ascending eigendecomposition (w, vectors) of size `size`:
  // lambda_out = mu_1..mu_l - rho_t (clamped at 0), rho_t = mu_{l+1} (0 when size = l).
  void take_top(const T* w, int size, T* lam_out, Result* res) const {
    res->top = std::max(w[size - 1], T(0));
    res->rho_t = size > l_ ? std::max(w[size - 1 - l_], T(0)) : T(0);
    for (int j = 0; j < l_; ++j) lam_out[j] = std::max(std::max(w[size - 1 - j], T(0)) - res->rho_t, T(0));
  }

  // Replaces the top `count` eigenvalues of K = F F^T (K's eigenvectors W, n x count, descending)
  // by Rayleigh quotients mu_j = ||F^T w_j||^2, accumulated in double. Forming K squares F, so
  // eigh(K) has absolute eigenvalue errors ~ eps ||F||^2; the quotient's error is quadratic in the
  // eigenvector's plus ~ eps ||F|| sqrt(mu_j): small eigenvalues, the escaped mass among them,
  // come out as accurately as from an SVD of F. `f` is `f_rows x n` (column-major), `w` is
  // `f_rows x count`; writes into `ascending` (count values, ascending, as take_top reads them).
  void rayleigh_quotients(const T* f, int f_rows, int n, const T* w, int count, T* y,
                          T* ascending) const {
    const T one = T(1), zero = T(0);
    Lapack<T>::gemm("T", "N", &n, &count, &f_rows, &one, f, &f_rows, w, &f_rows, &zero, y, &n);
    double previous = std::numeric_limits<double>::infinity();
    for (int j = 0; j < count; ++j) {
      double mu = 0.0;
      const T* col = y + sz<T>(j, n);
      for (int i = 0; i < n; ++i) mu += static_cast<double>(col[i]) * static_cast<double>(col[i]);
      previous = std::min(previous, mu);  // keep the order descending through rounding
      ascending[count - 1 - j] = static_cast<T>(previous);
    }
  }

  // The top `count` eigenvectors W (rows x count, descending) of K = F F^T for the column-major
  // rows x cols factor F, by SYRK and syevd (on one BLAS thread below 512 rows; K is scratch), and
  // their Rayleigh quotients, ascending, in sc.w.
  bool top_of_gram(const T* f, int rows, int cols, int count, T* K, T* W, Scratch<T>& sc) const {
    const T one = T(1), zero = T(0);
    int info = 0;
    Lapack<T>::syrk("U", "N", &rows, &cols, &one, f, &rows, &zero, K, &rows);
    {
      SmallProblemBlasThreads threads(rows);
      const int lwork = static_cast<int>(sc.work.size());
      const int liwork = static_cast<int>(sc.iwork.size());
      Lapack<T>::syevd("V", "U", &rows, K, &rows, sc.w.data(), sc.work.data(), &lwork,
                       sc.iwork.data(), &liwork, &info);
    }
    if (info != 0) return false;
    for (int j = 0; j < count; ++j) {
      std::memcpy(W + sz<T>(j, rows), K + sz<T>(rows - 1 - j, rows), rows * sizeof(T));
    }
    rayleigh_quotients(f, rows, cols, W, count, sc.y.data(), sc.w.data());
    return true;
  }

  // Overwrites the d x r column-major block with the Q of its Householder QR.
  bool orthonormalise(T* block, Scratch<T>& sc) const {
    int info = 0;
    const int d = d_, r = r_;
    const int lwork = static_cast<int>(sc.work.size());
    Lapack<T>::geqrf(&d, &r, block, &d, sc.tau.data(), sc.work.data(), &lwork, &info);
    if (info != 0) return false;
    Lapack<T>::orgqr(&d, &r, &r, block, &d, sc.tau.data(), sc.work.data(), &lwork, &info);
    return info == 0;
  }

  // Projected thin stack (see Method::kThinStack). Returns false when [U, Q2] is too far from
  // orthonormal for the Cholesky-QR correction; the caller then takes the Householder update.
  bool projected(const T* U, const T* lam, const T* G, T gscale, T beta, T* U_out, T* lam_out,
                 Result* res, Scratch<T>& sc) const {
    const int d = d_, l = l_, r = r_, n = n_;
    const T one = T(1), zero = T(0), minus_one = T(-1);
    int info = 0;
    // Column-major views: U^T is l x d (ld l). G1 and Q2 are tall d x r blocks (ld d): Householder
    // QR of a tall block streams through contiguous columns (LQ of the r x d transpose measured
    // 6x slower at d = 1024, r = 32).
    T* G1 = sc.a.data();
    T* Q2 = G1 + sz<T>(d, r);
    T* C = sc.b.data();
    T* C2 = C + sz<T>(l, r);
    T* R2 = C2 + sz<T>(l, r);
    for (int j = 0; j < r; ++j) {
      for (int i = 0; i < d; ++i) G1[i + sz<T>(j, d)] = gscale * G[sz<T>(i, r) + j];
    }
    // Two classical Gram-Schmidt passes against U ("twice is enough"): C = U^T G, G1 = G - U C.
    Lapack<T>::gemm("N", "N", &l, &r, &d, &one, U, &l, G1, &d, &zero, C, &l);
    Lapack<T>::gemm("T", "N", &d, &r, &l, &minus_one, U, &l, C, &l, &one, G1, &d);
    Lapack<T>::gemm("N", "N", &l, &r, &d, &one, U, &l, G1, &d, &zero, C2, &l);
    Lapack<T>::gemm("T", "N", &d, &r, &l, &minus_one, U, &l, C2, &l, &one, G1, &d);
    for (size_t i = 0; i < sz<T>(l, r); ++i) C[i] += C2[i];
    // Q2: an orthonormal basis of span(G1) (Householder QR).
    std::memcpy(Q2, G1, sz<T>(d, r) * sizeof(T));
    if (!orthonormalise(Q2, sc)) return false;
    // Columns of Q2 for a (numerically) dependent column of G1 are rounding noise in an arbitrary
    // direction: project them off U once more and re-orthonormalise, so they do not alias U.
    Lapack<T>::gemm("N", "N", &l, &r, &d, &one, U, &l, Q2, &d, &zero, C2, &l);
    Lapack<T>::gemm("T", "N", &d, &r, &l, &minus_one, U, &l, C2, &l, &one, Q2, &d);
    if (!orthonormalise(Q2, sc)) return false;
    // R2 = Q2^T G1 (r x r) against the final Q2, so G1 = Q2 R2 holds whatever the second pass did
    // to the noise columns (span(G1) is inside span(Q2) by construction).
    Lapack<T>::gemm("T", "N", &r, &r, &d, &one, Q2, &d, G1, &d, &zero, R2, &r);

    // Core F = [[diag(sqrt(beta lambda)), C], [0, R2]] (n x n): Z = [U, Q2] F.
    T* F = sc.c.data();
    std::fill(F, F + sz<T>(n, n), T(0));
    for (int j = 0; j < l; ++j) F[j + sz<T>(j, n)] = std::sqrt(beta * std::max(lam[j], T(0)));
    for (int j = 0; j < r; ++j) {
      for (int i = 0; i < l; ++i) F[i + sz<T>(l + j, n)] = C[i + sz<T>(j, l)];
      for (int i = 0; i < r; ++i) F[l + i + sz<T>(l + j, n)] = R2[i + sz<T>(j, r)];
    }
    // W (n x (l+1)): the top l+1 eigenvectors of F F^T, descending (n = l + r > l).
    T* W = sc.f.data();
    const int count = l + 1;
    if (!top_of_gram(F, n, n, count, sc.e.data(), W, sc)) return false;
    take_top(sc.w.data(), count, lam_out, res);
    // U_new^T = W1^T U^T + W2^T Q2^T (l x d), written straight into the row-major output.
    Lapack<T>::gemm("T", "N", &l, &d, &l, &one, W, &n, U, &l, &zero, U_out, &l);
    Lapack<T>::gemm("T", "T", &l, &d, &r, &one, W + l, &n, Q2, &d, &one, U_out, &l);
    // Cholesky-QR step: U_new <- U_new R^-1 with U_new^T U_new = R^T R. [U, Q2] is orthonormal to
    // O(eps) here, so R = I + O(eps); applied whenever max|U_new^T U_new - I| exceeds
    // 16 eps, it keeps rounding from accumulating over a stream (the check costs one SYRK,
    // the step a Cholesky and a TRSM). A small pivot means [U, Q2] was not orthonormal: give up.
    T* gram = sc.g.data();
    Lapack<T>::syrk("U", "N", &l, &d, &one, U_out, &l, &zero, gram, &l);
    const T tolerance = T(16) * std::numeric_limits<T>::epsilon();
    T departure = T(0);
    for (int j = 0; j < l; ++j) {
      for (int i = 0; i <= j; ++i) {
        departure = std::max(departure, std::abs(gram[i + sz<T>(j, l)] - (i == j ? T(1) : T(0))));
      }
    }
    if (departure <= tolerance) return true;
    {
      SmallProblemBlasThreads threads(l);
      Lapack<T>::potrf("U", &l, gram, &l, &info);
    }
    if (info != 0) return false;
    for (int j = 0; j < l; ++j) {
      if (!(gram[j + sz<T>(j, l)] >= T(0.5))) return false;
    }
    Lapack<T>::trsm("L", "U", "T", "N", &l, &d, &one, gram, &l, U_out, &l);
    return true;
  }

  // Householder thin stack: Z = [sqrt(beta) U diag(lambda)^(1/2), G] = Q R, so Z Z^T = Q (R R^T) Q^T
  // and the eigenvectors of C are Q times those of R R^T (k x k, k = min(d, n)). Q stays implicit.
  bool householder(const T* U, const T* lam, const T* G, T gscale, T beta, T* U_out, T* lam_out,
                   Result* res, Scratch<T>& sc) const {
    const int d = d_, l = l_, r = r_, n = n_, k = k_;
    T* Z = sc.a.data();  // column-major d x n
    for (int j = 0; j < l; ++j) {
      const T s = std::sqrt(beta * std::max(lam[j], T(0)));
      T* col = Z + sz<T>(j, d);
      for (int i = 0; i < d; ++i) col[i] = s * U[sz<T>(i, l) + j];
    }
    for (int j = 0; j < r; ++j) {
      T* col = Z + sz<T>(l + j, d);
      for (int i = 0; i < d; ++i) col[i] = gscale * G[sz<T>(i, r) + j];
    }
    int info = 0;
    const int lwork = static_cast<int>(sc.work.size());
    Lapack<T>::geqrf(&d, &n, Z, &d, sc.tau.data(), sc.work.data(), &lwork, &info);
    if (info != 0) return false;
    T* R = sc.b.data();  // k x n, zeros below the diagonal
    for (int j = 0; j < n; ++j) {
      const int rows = std::min(j + 1, k);
      for (int i = 0; i < rows; ++i) R[i + sz<T>(j, k)] = Z[i + sz<T>(j, d)];
      for (int i = rows; i < k; ++i) R[i + sz<T>(j, k)] = T(0);
    }
    // k = min(d, l + r) >= l: every kept direction has an eigenpair.
    const int count = std::min(l + 1, k);
    T* K = sc.c.data();
    T* W = sc.f.data();
    if (!top_of_gram(R, k, n, count, K, W, sc)) return false;
    take_top(sc.w.data(), count, lam_out, res);
    // U_out (row-major d x l) is the column-major U_new^T (l x d): fill it with the top eigenvectors
    // padded by zero rows, then U_new^T = [V; 0]^T Q^T by ormqr(side=R, trans=T).
    std::fill(U_out, U_out + sz<T>(d, l), T(0));
    for (int j = 0; j < l; ++j) {
      const T* v = K + sz<T>(k - 1 - j, k);
      for (int i = 0; i < k; ++i) U_out[sz<T>(i, l) + j] = v[i];
    }
    Lapack<T>::ormqr("R", "T", &l, &d, &k, Z, &d, sc.tau.data(), U_out, &l, sc.work.data(), &lwork,
                     &info);
    return info == 0;
  }

  // C = s term + beta (U diag(lambda)^(1/2))(U diag(lambda)^(1/2))^T in the lower triangle, with
  // s = tscale for a matrix term and tscale^2 for a factor (tscale a power of two).
  void build_dense(const T* U, const T* lam, const T* term, T tscale, T beta, Scratch<T>& sc) const {
    const int d = d_, l = l_, r = r_;
    const T one = T(1), zero = T(0);
    T* C = sc.a.data();
    if (s_.term_is_matrix) {
      // Symmetrise while copying: C = (M + M^T) / 2 (halves first: no overflow at the top).
      const T half = T(0.5) * tscale;
      for (int j = 0; j < d; ++j) {
        for (int i = j; i < d; ++i) {
          C[i + sz<T>(j, d)] = half * term[sz<T>(i, d) + j] + half * term[sz<T>(j, d) + i];
        }
      }
    } else {
      // C = (t G)(t G)^T = t^2 G G^T with t = tscale a power of two: the same bits either way
      // while the unscaled products stay normal (t within 2^(+-max_exponent / 8)), so SYRK's
      // alpha carries t^2 there and no scaled copy of G is made (a fresh d x r buffer per call
      // costs its page faults); outside, G is scaled first so that G G^T cannot overflow.
      const T* g = term;
      T alpha = tscale * tscale;
      if (std::abs(std::ilogb(tscale)) > std::numeric_limits<T>::max_exponent / 8) {
        sc.factor.resize(sz<T>(d, r));
        for (size_t i = 0; i < sz<T>(d, r); ++i) sc.factor[i] = tscale * term[i];
        g = sc.factor.data();
        alpha = one;
      }
      // Row-major G (d x r) is the column-major r x d matrix G^T: C = (G^T)^T G^T = G G^T.
      Lapack<T>::syrk("L", "T", &d, &r, &alpha, g, &r, &zero, C, &d);
    }
    T* S = sc.b.data();
    T* root = sc.w.data();
    for (int j = 0; j < l; ++j) root[j] = std::sqrt(std::max(lam[j], T(0)));
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < l; ++j) S[sz<T>(i, l) + j] = U[sz<T>(i, l) + j] * root[j];
    }
    Lapack<T>::syrk("L", "T", &d, &l, &beta, S, &l, &one, C, &d);
  }

  // Dense: tridiagonal reduction (sytrd, 4/3 d^3, half BLAS-2), every eigenpair of the tridiagonal
  // matrix by divide and conquer (stedc), back-transformation of the top m = min(l+1, d) vectors
  // only (2 d^2 m, in blocks of 128 reflectors: tridiagonal_eigh.h; ormtr's blocks of 32 measured
  // 36 ms for all 1024 vectors at d = 1024 float32, ours 10; FD (a) 45 -> 33 ms). MRRR (stemr) for
  // the m vectors alone measured 2-3x slower than stedc on sketch-plus-Wishart spectra at
  // d = 1024, and syevd would back-transform all d vectors. syevr is the fallback.
  bool dense(const T* U, const T* lam, const T* term, T tscale, T beta, T* U_out, T* lam_out,
             Result* res, Scratch<T>& sc) const {
    const int d = d_, l = l_, m = m_;
    const int lwork = static_cast<int>(sc.work.size());
    const int liwork = static_cast<int>(sc.iwork.size()) - 2 * m;
    T* C = sc.a.data();
    T* V = sc.c.data();
    const T* w = sc.e.data();  // stedc leaves the eigenvalues, ascending, in the diagonal
    int info = 0;
    build_dense(U, lam, term, tscale, beta, sc);
    Lapack<T>::sytrd("L", &d, C, &d, sc.e.data(), sc.f.data(), sc.tau.data(), sc.work.data(),
                     &lwork, &info);
    bool ok = info == 0;
    if (ok) {
      Lapack<T>::stedc("I", &d, sc.e.data(), sc.f.data(), V, &d, sc.work.data(), &lwork,
                       sc.iwork.data(), &liwork, &info);
      ok = info == 0;
    }
    T* top = V + sz<T>(d - m, d);  // the last m columns: eigenvectors of the m largest
    if (ok) apply_sytrd_q(d, C, sc.tau.data(), top, m, sc.work.data());
    if (ok) {
      take_top(w + (d - m), m, lam_out, res);
      res->bottom = w[0];
    } else {
      const T zero = T(0);
      const int il = d - m + 1, iu = d;
      int found = 0;
      build_dense(U, lam, term, tscale, beta, sc);
      Lapack<T>::syevr("V", "I", "L", &d, C, &d, &zero, &zero, &il, &iu, &zero, &found,
                       sc.w.data(), top, &d, sc.iwork.data() + liwork, sc.work.data(), &lwork,
                       sc.iwork.data(), &liwork, &info);
      if (info != 0 || found != m) return false;
      take_top(sc.w.data(), m, lam_out, res);
    }
    for (int j = 0; j < l; ++j) {
      const T* v = top + sz<T>(m - 1 - j, d);
      for (int i = 0; i < d; ++i) U_out[sz<T>(i, l) + j] = v[i];
    }
    return true;
  }

  UpdateShape s_;
  Method method_;
  int d_ = 0, l_ = 0, r_ = 0, n_ = 0, k_ = 0, m_ = 0;
  int lwork_ = 1, liwork_ = 1;
};

}  // namespace

Method choose_method(const UpdateShape& s) {
  if (s.term_is_matrix) return Method::kDenseEigh;
  // Thin stack ~ 8 d l r (projections) + 2 d n l + 3 d l^2 (assembly, Cholesky-QR), all GEMM,
  // plus an n x n eigh; dense ~ d^2 n (SYRK) + 4/3 d^3 (half BLAS-2 tridiagonal reduction) +
  // 2 d^2 m. The thin stack wins until n = l + r approaches d.
  const int64_t n = s.rank + s.columns;
  return 4 * n <= 3 * s.dim ? Method::kThinStack : Method::kDenseEigh;
}

template <typename T>
bool update(const UpdateShape& shape, const UpdateArgs<T>& args, Method requested) {
  if (shape.dim < 1 || shape.rank < 1 || shape.rank > shape.dim || shape.columns < 1 ||
      shape.batch < 0) {
    return false;
  }
  if (shape.term_is_matrix && shape.columns != shape.dim) return false;
  Method method = requested == Method::kAuto ? choose_method(shape) : requested;
  if (method != Method::kThinStack && method != Method::kDenseEigh &&
      method != Method::kThinStackHouseholder) {
    return false;
  }
  if (method != Method::kDenseEigh && shape.term_is_matrix) return false;
  if (shape.batch == 0) return true;
  const Updater<T> updater(shape, method);
  const int workers = batch_workers(shape.batch, shape.dim);
  std::vector<Scratch<T>> scratch;
  scratch.reserve(workers);
  for (int w = 0; w < std::min<int64_t>(workers, shape.batch); ++w) {
    scratch.push_back(updater.make_scratch());
  }
  parallel_for(shape.batch, workers,
               [&](int worker, int64_t b) { updater.run(args, b, scratch[worker]); });
  return true;
}

// y^T = c0 x^T + (x^T U) diag(delta) U^T in precision U, on column-major x^T (n x d, overwritten
// by y^T) and U^T (l x d); a: n x l scratch.
template <typename U, typename L>
void apply_factored(int d, int l, int n, const U* basis_t, const L* lam,
                    double floor, double c0, double p, U* a, U* r) {
  const U one = U(1), zero = U(0);
  Lapack<U>::gemm("N", "T", &n, &l, &d, &one, r, &n, basis_t, &l, &zero, a, &n);  // a^T = x^T U
  for (int j = 0; j < l; ++j) {
    // c_j - c0 = c0 ((1 + lambda_j / f)^(-1/p) - 1), free of cancellation for every lambda_j.
    const double ratio = std::max(static_cast<double>(lam[j]), 0.0) / floor;
    const U delta = static_cast<U>(c0 * std::expm1(-std::log1p(ratio) / p));
    U* col = a + static_cast<size_t>(j) * n;
    for (int i = 0; i < n; ++i) col[i] *= delta;
  }
  const U c = static_cast<U>(c0);
  const size_t dn = static_cast<size_t>(d) * n;
  for (size_t i = 0; i < dn; ++i) r[i] *= c;
  Lapack<U>::gemm("N", "N", &n, &d, &l, &one, a, &n, basis_t, &l, &one, r, &n);  // + U (delta a)
}

template <typename T>
void apply_inverse_root(const ApplyShape& s, const T* basis, const T* eigvals,
                        const T* escaped_mass, const T* x, double p, double eps, T* y,
                        uint8_t* y_finite) {
  constexpr bool in_double = std::is_same_v<T, double>;
  const int d = static_cast<int>(s.dim), l = static_cast<int>(s.rank),
            n = static_cast<int>(s.columns);
  const size_t dl = static_cast<size_t>(d) * l, dn = static_cast<size_t>(d) * n;
  const int workers = batch_workers(s.batch, s.dim);
  // Per worker: a = x^T U (n x l) in double and in T, and for float32 U^T and x^T (then y^T) in
  // double.
  struct Buffers {
    std::vector<double> a, basis, rhs;
    std::vector<T> a_t;
  };
  std::vector<Buffers> scratch(std::min<int64_t>(workers, std::max<int64_t>(s.batch, 1)));
  parallel_for(s.batch, workers, [&](int worker, int64_t b) {
    Buffers& buf = scratch[worker];
    const T* Ub = basis + b * static_cast<int64_t>(dl);  // column-major U^T (l x d)
    const T* lam = eigvals + b * l;
    const T* xb = x + b * static_cast<int64_t>(dn);  // column-major x^T (n x d)
    T* yb = y + b * static_cast<int64_t>(dn);
    const double floor = static_cast<double>(escaped_mass[b]) + eps;
    const double c0 = std::pow(floor, -1.0 / p);
    double top = 0.0;
    for (int j = 0; j < l; ++j) top = std::max(top, static_cast<double>(lam[j]));
    // The float32 evaluation's rounding, relative to y, is at most the GEMMs' own times the
    // amplification c0 / c_min = (1 + lambda_max / f)^(1/p) (x in span(U) gives |y| = c_min |x|
    // from terms of size c0 |x|). Up to 2 that costs at most one bit beyond any float32
    // product; beyond it the terms are accumulated in double.
    const bool in_working = in_double || std::pow(1.0 + top / floor, 1.0 / p) <= 2.0;
    if (in_working) {
      buf.a_t.resize(static_cast<size_t>(l) * n);
      std::memcpy(yb, xb, dn * sizeof(T));
      apply_factored<T, T>(d, l, n, Ub, lam, floor, c0, p, buf.a_t.data(), yb);
      if (y_finite != nullptr) y_finite[b] = all_finite(yb, dn) ? 1 : 0;
      return;
    }
    buf.a.resize(static_cast<size_t>(l) * n);
    buf.basis.resize(dl);
    buf.rhs.resize(dn);
    for (size_t i = 0; i < dl; ++i) buf.basis[i] = Ub[i];
    for (size_t i = 0; i < dn; ++i) buf.rhs[i] = xb[i];
    apply_factored<double, T>(d, l, n, buf.basis.data(), lam, floor, c0, p, buf.a.data(), buf.rhs.data());
    for (size_t i = 0; i < dn; ++i) yb[i] = static_cast<T>(buf.rhs[i]);
    if (y_finite != nullptr) y_finite[b] = all_finite(yb, dn) ? 1 : 0;
  });
}

template bool update<float>(const UpdateShape&, const UpdateArgs<float>&, Method);
template bool update<double>(const UpdateShape&, const UpdateArgs<double>&, Method);
template void apply_inverse_root<float>(const ApplyShape&, const float*, const float*,
                                        const float*, const float*, double, double, float*,
                                        uint8_t*);
template void apply_inverse_root<double>(const ApplyShape&, const double*, const double*,
                                         const double*, const double*, double, double, double*,
                                         uint8_t*);

}  // namespace linalg_core::fd
