#include "fd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lapack.h"
#include "parallel.h"

namespace linalg_core::fd {
namespace {

template <typename T>
bool all_finite(const T* x, int64_t n) {
  // Summing propagates NaN and overflows Inf: one branch-free pass instead of n std::isfinite calls.
  T acc = T(0);
  for (int64_t i = 0; i < n; ++i) acc += x[i] * T(0);
  return acc == T(0);
}

int lwork_from(double query) { return std::max(1, static_cast<int>(query) + 1); }

// Scratch for one worker, sized once per call (LAPACK workspace queried once per batch).
template <typename T>
struct Scratch {
  std::vector<T> stack;    // thin: Z (d x n); dense: C (d x d)
  std::vector<T> tau;      // thin: Householder scalars
  std::vector<T> gram;     // thin: R R^T (k x k), then its eigenvectors
  std::vector<T> trap;     // thin: R copied with zeros below the diagonal (k x n)
  std::vector<T> scaled;   // dense: U diag(lambda)^(1/2), row-major d x l
  std::vector<T> vectors;  // dense: eigenvectors (d x m)
  std::vector<T> w;        // eigenvalues
  std::vector<T> work;
  std::vector<int> iwork;
};

template <typename T>
class Updater {
 public:
  Updater(const UpdateShape& s, Method method) : s_(s), method_(method) {
    d_ = static_cast<int>(s.dim);
    l_ = static_cast<int>(s.rank);
    r_ = static_cast<int>(s.columns);
    if (method_ == Method::kThinStack) {
      n_ = l_ + r_;
      k_ = std::min(d_, n_);
      query_thin();
    } else {
      m_ = std::min(l_ + 1, d_);
      query_dense();
    }
  }

  Scratch<T> make_scratch() const {
    Scratch<T> sc;
    if (method_ == Method::kThinStack) {
      sc.stack.resize(static_cast<size_t>(d_) * n_);
      sc.tau.resize(k_);
      sc.gram.resize(static_cast<size_t>(k_) * k_);
      sc.trap.resize(static_cast<size_t>(k_) * n_);
      sc.w.resize(k_);
    } else {
      sc.stack.resize(static_cast<size_t>(d_) * d_);
      sc.scaled.resize(static_cast<size_t>(d_) * l_);
      sc.vectors.resize(static_cast<size_t>(d_) * m_);
      sc.w.resize(d_);
      sc.iwork.resize(liwork_ + 2 * m_);  // syevr's iwork, then isuppz (2 m)
    }
    if (method_ == Method::kThinStack) sc.iwork.resize(liwork_);
    sc.work.resize(lwork_);
    return sc;
  }

  void run(const UpdateArgs<T>& a, int64_t b, Scratch<T>& sc) const {
    const size_t dl = static_cast<size_t>(d_) * l_;
    const T* U = a.basis + b * dl;
    const T* lam = a.eigvals + b * l_;
    const T rho = a.escaped_mass[b];
    const size_t term_size = static_cast<size_t>(d_) * (s_.term_is_matrix ? d_ : r_);
    const T* term = a.term + b * term_size;
    const T beta = a.beta[b];
    T* U_out = a.basis_out + b * dl;
    T* lam_out = a.eigvals_out + b * l_;
    a.method[b] = static_cast<int32_t>(method_);

    Status status = Status::kOk;
    if (!(beta > T(0) && beta <= T(1))) {
      status = Status::kBadBeta;
    } else if (!all_finite(term, term_size) || !all_finite(U, dl) || !all_finite(lam, l_) ||
               !all_finite(&rho, 1)) {
      status = Status::kNonFiniteInput;
    } else {
      T rho_t = T(0), top = T(0);
      const bool ok = method_ == Method::kThinStack
                          ? thin(U, lam, term, beta, U_out, lam_out, &rho_t, &top, sc)
                          : dense(U, lam, term, beta, U_out, lam_out, &rho_t, &top, sc);
      if (ok) {
        a.escaped_mass_out[b] = beta * rho + rho_t;
        a.step_mass[b] = rho_t;
        a.residual[b] = top > T(0) ? rho_t / top : T(0);
        a.status[b] = static_cast<int32_t>(Status::kOk);
        return;
      }
      status = Status::kLapackFailure;
    }
    // Failure: the state passes through unchanged, so no NaN ever enters it.
    std::memcpy(U_out, U, dl * sizeof(T));
    std::memcpy(lam_out, lam, l_ * sizeof(T));
    a.escaped_mass_out[b] = rho;
    a.step_mass[b] = T(0);
    a.residual[b] = T(0);
    a.status[b] = static_cast<int32_t>(status);
  }

 private:
  void query_thin() {
    T q = T(0);
    int info = 0, lw = -1;
    int liw = -1, iq = 0;
    Lapack<T>::geqrf(&d_, &n_, nullptr, &d_, nullptr, &q, &lw, &info);
    lwork_ = lwork_from(q);
    Lapack<T>::ormqr("R", "T", &l_, &d_, &k_, nullptr, &d_, nullptr, nullptr, &l_, &q, &lw, &info);
    lwork_ = std::max(lwork_, lwork_from(q));
    Lapack<T>::syevd("V", "U", &k_, nullptr, &k_, nullptr, &q, &lw, &iq, &liw, &info);
    lwork_ = std::max(lwork_, lwork_from(q));
    liwork_ = std::max(1, iq);
  }

  void query_dense() {
    T q = T(0), zero = T(0);
    int info = 0, lw = -1, liw = -1, iq = 0, found = 0;
    const int il = d_ - m_ + 1, iu = d_;
    Lapack<T>::syevr("V", "I", "L", &d_, nullptr, &d_, &zero, &zero, &il, &iu, &zero, &found,
                     nullptr, nullptr, &d_, nullptr, &q, &lw, &iq, &liw, &info);
    lwork_ = lwork_from(q);
    liwork_ = std::max(1, iq);
  }

  // Thin stack: Z = [sqrt(beta) U diag(lambda)^(1/2), G] = Q R, so Z Z^T = Q (R R^T) Q^T and the
  // eigenvectors of C are Q times those of the small k x k matrix R R^T. Q stays implicit
  // (Householder reflectors), so the new basis is orthonormal to working precision at every step:
  // no loss of orthogonality accumulates over a stream.
  bool thin(const T* U, const T* lam, const T* G, T beta, T* U_out, T* lam_out, T* rho_t,
            T* top, Scratch<T>& sc) const {
    const int d = d_, l = l_, r = r_, n = n_, k = k_;
    T* Z = sc.stack.data();  // column-major d x n
    for (int j = 0; j < l; ++j) {
      const T s = std::sqrt(beta * std::max(lam[j], T(0)));
      T* col = Z + static_cast<size_t>(j) * d;
      for (int i = 0; i < d; ++i) col[i] = s * U[static_cast<size_t>(i) * l + j];
    }
    for (int j = 0; j < r; ++j) {
      T* col = Z + static_cast<size_t>(l + j) * d;
      for (int i = 0; i < d; ++i) col[i] = G[static_cast<size_t>(i) * r + j];
    }
    int info = 0;
    const int lwork = static_cast<int>(sc.work.size());
    Lapack<T>::geqrf(&d, &n, Z, &d, sc.tau.data(), sc.work.data(), &lwork, &info);
    if (info != 0) return false;

    // R (k x n, upper trapezoidal) with explicit zeros below the diagonal, then K = R R^T.
    T* R = sc.trap.data();
    for (int j = 0; j < n; ++j) {
      const int top_rows = std::min(j + 1, k);
      for (int i = 0; i < top_rows; ++i) R[i + static_cast<size_t>(j) * k] = Z[i + static_cast<size_t>(j) * d];
      for (int i = top_rows; i < k; ++i) R[i + static_cast<size_t>(j) * k] = T(0);
    }
    const T one = T(1), zero = T(0);
    T* K = sc.gram.data();
    Lapack<T>::syrk("U", "N", &k, &n, &one, R, &k, &zero, K, &k);
    const int liwork = static_cast<int>(sc.iwork.size());
    Lapack<T>::syevd("V", "U", &k, K, &k, sc.w.data(), sc.work.data(), &lwork, sc.iwork.data(),
                     &liwork, &info);
    if (info != 0) return false;

    // Eigenvalues come ascending: mu_i = w[k-1-i]. rho_t = mu_{l+1}, or 0 when l = k (no l+1-th).
    const T* w = sc.w.data();
    *top = std::max(w[k - 1], T(0));
    *rho_t = k > l ? std::max(w[k - 1 - l], T(0)) : T(0);
    // k = min(d, l + r) >= l: every kept direction has an eigenpair.
    for (int j = 0; j < l; ++j) lam_out[j] = std::max(std::max(w[k - 1 - j], T(0)) - *rho_t, T(0));
    // U_out (row-major d x l) = column-major U_new^T (l x d). Fill it with the top eigenvectors
    // padded by zero rows (C = [V; 0], row-major), then apply Q from the right:
    // U_new^T = C^T Q^T, i.e. ormqr(side=R, trans=T) on the l x d column-major view.
    std::fill(U_out, U_out + static_cast<size_t>(d) * l, T(0));
    for (int j = 0; j < l; ++j) {
      const T* v = K + static_cast<size_t>(k - 1 - j) * k;
      for (int i = 0; i < k; ++i) U_out[static_cast<size_t>(i) * l + j] = v[i];
    }
    Lapack<T>::ormqr("R", "T", &l, &d, &k, Z, &d, sc.tau.data(), U_out, &l, sc.work.data(),
                     &lwork, &info);
    return info == 0;
  }

  // Dense: C = term + beta (U diag(lambda)^(1/2)) (U diag(lambda)^(1/2))^T in the lower triangle
  // (column-major), then its top m = min(l+1, d) eigenpairs by syevr (MRRR, O(d^2 m) after the
  // tridiagonal reduction).
  bool dense(const T* U, const T* lam, const T* term, T beta, T* U_out, T* lam_out, T* rho_t,
             T* top, Scratch<T>& sc) const {
    const int d = d_, l = l_, r = r_, m = m_;
    T* C = sc.stack.data();
    const T one = T(1), zero = T(0);
    if (s_.term_is_matrix) {
      // Symmetrise while copying: C = (M + M^T) / 2 on the lower triangle.
      for (int j = 0; j < d; ++j) {
        for (int i = j; i < d; ++i) {
          C[i + static_cast<size_t>(j) * d] =
              T(0.5) * (term[static_cast<size_t>(i) * d + j] + term[static_cast<size_t>(j) * d + i]);
        }
      }
    } else {
      // Row-major G (d x r) is the column-major r x d matrix G^T: C = (G^T)^T G^T = G G^T.
      Lapack<T>::syrk("L", "T", &d, &r, &one, term, &r, &zero, C, &d);
    }
    T* S = sc.scaled.data();
    T* root = sc.w.data();  // sqrt(lambda), before w holds eigenvalues
    for (int j = 0; j < l; ++j) root[j] = std::sqrt(std::max(lam[j], T(0)));
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < l; ++j) S[static_cast<size_t>(i) * l + j] = U[static_cast<size_t>(i) * l + j] * root[j];
    }
    Lapack<T>::syrk("L", "T", &d, &l, &beta, S, &l, &one, C, &d);

    int info = 0, found = 0;
    const int il = d - m + 1, iu = d;
    const int lwork = static_cast<int>(sc.work.size());
    const int liwork = static_cast<int>(sc.iwork.size()) - 2 * m;
    int* isuppz = sc.iwork.data() + liwork;
    Lapack<T>::syevr("V", "I", "L", &d, C, &d, &zero, &zero, &il, &iu, &zero, &found, sc.w.data(),
                     sc.vectors.data(), &d, isuppz, sc.work.data(), &lwork, sc.iwork.data(),
                     &liwork, &info);
    if (info != 0 || found != m) return false;
    const T* w = sc.w.data();  // ascending: w[m-1] is the largest
    *top = std::max(w[m - 1], T(0));
    *rho_t = m > l ? std::max(w[0], T(0)) : T(0);
    const T* V = sc.vectors.data();
    for (int j = 0; j < l; ++j) {
      lam_out[j] = std::max(std::max(w[m - 1 - j], T(0)) - *rho_t, T(0));
      const T* v = V + static_cast<size_t>(m - 1 - j) * d;
      for (int i = 0; i < d; ++i) U_out[static_cast<size_t>(i) * l + j] = v[i];
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
  // Thin-stack cost ~ 2 d n^2 (QR) + 4 d n l (apply Q) + ~5 n^3 (eigh of R R^T), all BLAS-3;
  // dense ~ d^2 n (SYRK) + 4/3 d^3 (half BLAS-2 tridiagonal reduction) + 2 d^2 l. The thin stack
  // wins until n = l + r approaches d.
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
  if (method == Method::kThinStack && shape.term_is_matrix) return false;
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

template <typename T>
void apply_inverse_root(const ApplyShape& s, const T* basis, const T* eigvals,
                        const T* escaped_mass, const T* x, double p, double eps, T* y) {
  const int d = static_cast<int>(s.dim), l = static_cast<int>(s.rank),
            n = static_cast<int>(s.columns);
  const int workers = batch_workers(s.batch, s.dim);
  std::vector<std::vector<T>> scratch(std::min<int64_t>(workers, std::max<int64_t>(s.batch, 1)),
                                      std::vector<T>(static_cast<size_t>(l) * n));
  parallel_for(s.batch, workers, [&](int worker, int64_t b) {
    const T* U = basis + b * static_cast<int64_t>(d) * l;  // column-major U^T (l x d)
    const T* lam = eigvals + b * l;
    const T* xb = x + b * static_cast<int64_t>(d) * n;  // column-major x^T (n x d)
    T* yb = y + b * static_cast<int64_t>(d) * n;
    const double floor = static_cast<double>(escaped_mass[b]) + eps;
    const double c0 = std::pow(floor, -1.0 / p);
    T* Tt = scratch[worker].data();  // column-major (U^T x)^T = x^T U (n x l)
    const T one = T(1), zero = T(0);
    Lapack<T>::gemm("N", "T", &n, &l, &d, &one, xb, &n, U, &l, &zero, Tt, &n);
    for (int j = 0; j < l; ++j) {
      const double lj = std::max(static_cast<double>(lam[j]), 0.0);
      const T c = static_cast<T>(std::pow(lj + floor, -1.0 / p) - c0);
      T* col = Tt + static_cast<size_t>(j) * n;
      for (int i = 0; i < n; ++i) col[i] *= c;
    }
    const T c0t = static_cast<T>(c0);
    const size_t dn = static_cast<size_t>(d) * n;
    for (size_t i = 0; i < dn; ++i) yb[i] = c0t * xb[i];
    // y^T += (x^T U diag(c)) U^T
    Lapack<T>::gemm("N", "N", &n, &d, &l, &one, Tt, &n, U, &l, &one, yb, &n);
  });
}

template bool update<float>(const UpdateShape&, const UpdateArgs<float>&, Method);
template bool update<double>(const UpdateShape&, const UpdateArgs<double>&, Method);
template void apply_inverse_root<float>(const ApplyShape&, const float*, const float*,
                                        const float*, const float*, double, double, float*);
template void apply_inverse_root<double>(const ApplyShape&, const double*, const double*,
                                         const double*, const double*, double, double, double*);

}  // namespace linalg_core::fd
