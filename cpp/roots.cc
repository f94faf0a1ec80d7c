#include "roots.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lapack.h"
#include "parallel.h"

namespace linalg_core::roots {
namespace {

template <typename T>
size_t sq(int n) {
  return static_cast<size_t>(n) * static_cast<size_t>(n);
}

template <typename T>
bool finite(const T* x, size_t count) {
  T acc = T(0);
  for (size_t i = 0; i < count; ++i) acc += x[i] * T(0);
  return acc == T(0);
}

// C = A B for n x n matrices (column-major; every matrix here is a polynomial in the symmetric A,
// so the storage order of the caller's row-major arrays does not matter).
template <typename T>
void matmul(int n, const T* a, const T* b, T* c) {
  const T one = T(1), zero = T(0);
  Lapack<T>::gemm("N", "N", &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
}

template <typename T>
void set_identity(int n, T scale, T* x) {
  std::fill(x, x + sq<T>(n), T(0));
  for (int i = 0; i < n; ++i) x[i + static_cast<size_t>(i) * n] = scale;
}

// max_i sum_j |M_ij - delta_ij| (the infinity norm; M is nearly symmetric, rows = columns).
template <typename T>
double distance_to_identity(int n, const T* m) {
  double worst = 0.0;
  for (int j = 0; j < n; ++j) {
    double sum = 0.0;
    const T* col = m + static_cast<size_t>(j) * n;
    for (int i = 0; i < n; ++i) sum += std::abs(static_cast<double>(col[i]) - (i == j ? 1.0 : 0.0));
    worst = std::max(worst, sum);
  }
  return worst;
}

// out = base^p (p >= 1 integer) by binary powering; `tmp` and `acc` are scratch.
template <typename T>
void matrix_power(int n, const T* base, int p, T* out, T* square, T* tmp) {
  std::memcpy(square, base, sq<T>(n) * sizeof(T));
  bool have = false;
  while (p > 0) {
    if (p & 1) {
      if (!have) {
        std::memcpy(out, square, sq<T>(n) * sizeof(T));
        have = true;
      } else {
        matmul(n, out, square, tmp);
        std::memcpy(out, tmp, sq<T>(n) * sizeof(T));
      }
    }
    p >>= 1;
    if (p > 0) {
      matmul(n, square, square, tmp);
      std::memcpy(square, tmp, sq<T>(n) * sizeof(T));
    }
  }
}

// lambda_max of a symmetric PSD matrix by power steps from A 1, stopping at a relative change of
// 1e-3 (at most 50 steps); the Rayleigh quotient of the last unit vector, never above the true
// lambda_max.
template <typename T>
double power_lambda_max(int n, const T* a, std::vector<T>& v, std::vector<T>& av) {
  const T one = T(1), zero = T(0);
  const int k = 1;
  std::fill(v.begin(), v.end(), T(1));
  double estimate = 0.0;
  for (int step = 0; step < 50; ++step) {
    Lapack<T>::gemm("N", "N", &n, &k, &n, &one, a, &n, v.data(), &n, &zero, av.data(), &n);
    double norm = 0.0, rayleigh = 0.0, vnorm = 0.0;
    for (int i = 0; i < n; ++i) {
      norm += static_cast<double>(av[i]) * av[i];
      rayleigh += static_cast<double>(v[i]) * av[i];
      vnorm += static_cast<double>(v[i]) * v[i];
    }
    if (norm == 0.0) return 0.0;
    const double next = rayleigh / vnorm;
    norm = std::sqrt(norm);
    for (int i = 0; i < n; ++i) v[i] = static_cast<T>(av[i] / norm);
    const bool settled = step > 0 && std::abs(next - estimate) <= 1e-3 * std::abs(next);
    estimate = next;
    if (settled) break;
  }
  return std::max(estimate, 0.0);
}

template <typename T>
struct Scratch {
  std::vector<T> x, m, t, tp, sqr, tmp, best, v, av, w, work;
  std::vector<int> iwork;
};

template <typename T>
class Solver {
 public:
  Solver(const Shape& s, const Options& o) : n_(static_cast<int>(s.n)), o_(o) {
    const double eps = std::numeric_limits<T>::epsilon();
    // ||M - I||_inf sums n entries: its rounding floor is ~ n eps.
    tol_ = o.tol > 0 ? o.tol : 16.0 * n_ * eps;
    accept_ = o.accept > 0 ? o.accept : std::max(std::sqrt(eps), 64.0 * n_ * eps);
    T q = T(0);
    int info = 0, lw = -1, liw = -1, iq = 0;
    Lapack<T>::syevd("V", "L", &n_, nullptr, &n_, nullptr, &q, &lw, &iq, &liw, &info);
    lwork_ = std::max(1, static_cast<int>(q) + 1);
    liwork_ = std::max(1, iq);
  }

  Scratch<T> make_scratch() const {
    Scratch<T> sc;
    for (auto* buf : {&sc.x, &sc.m, &sc.t, &sc.tp, &sc.sqr, &sc.tmp, &sc.best}) buf->resize(sq<T>(n_));
    sc.v.resize(n_);
    sc.av.resize(n_);
    sc.w.resize(n_);
    sc.work.resize(lwork_);
    sc.iwork.resize(liwork_);
    return sc;
  }

  void run(const Args<T>& a, int64_t b, Scratch<T>& sc) const {
    const int n = n_;
    const size_t nn = sq<T>(n);
    const T* A = a.a + b * nn;
    const T* prev = a.previous ? a.previous + b * nn : nullptr;
    T* X = a.root + b * nn;
    a.iterations[b] = 0;
    a.residual[b] = T(-1);
    a.lambda_max[b] = T(0);
    a.ridge[b] = T(0);
    if (!finite(A, nn)) {
      give_up(a, b, prev, X, Status::kNonFiniteInput);
      return;
    }
    const double lmax = power_lambda_max(n, A, sc.v, sc.av);
    const double ridge = o_.pinv_threshold > 0 ? 0.0 : (o_.eps_relative ? o_.eps * lmax : o_.eps);
    a.lambda_max[b] = static_cast<T>(lmax);
    a.ridge[b] = static_cast<T>(ridge);

    Method requested = o_.method == Method::kAuto ? Method::kEigh : o_.method;
    if (requested == Method::kEigh && o_.double_accumulate && sizeof(T) < sizeof(double)) {
      requested = Method::kEighDouble;
    }
    // The chain: the requested method, then eigh, then eigh in double, then the previous root.
    Method chain[3] = {requested, Method::kEigh, Method::kEighDouble};
    for (int i = 0; i < 3; ++i) {
      const Method m = chain[i];
      if (i > 0 && (m == requested || (m == Method::kEigh && requested == Method::kEighDouble))) continue;
      if (i > 0 && m == Method::kEighDouble && sizeof(T) == sizeof(double)) continue;
      double residual = -1.0;
      int iterations = 0;
      bool ok = false;
      if (m == Method::kNewton || m == Method::kNewton3) {
        ok = iterate(A, lmax, ridge, m == Method::kNewton3, X, &residual, &iterations, sc);
      } else if (m == Method::kEigh) {
        ok = eigh(A, lmax, ridge, X, sc);
      } else {
        ok = eigh_double(A, lmax, ridge, X);
      }
      if (ok && o_.true_residual) residual = true_residual(A, ridge, X, sc);
      if (ok) {
        a.residual[b] = static_cast<T>(residual);
        a.iterations[b] = iterations;
        a.method[b] = static_cast<int32_t>(m);
        a.status[b] = static_cast<int32_t>(i == 0 ? Status::kOk : Status::kFellBack);
        return;
      }
      a.iterations[b] += iterations;
    }
    give_up(a, b, prev, X, Status::kFailed);
  }

 private:
  void give_up(const Args<T>& a, int64_t b, const T* prev, T* X, Status status) const {
    if (prev != nullptr) {
      std::memcpy(X, prev, sq<T>(n_) * sizeof(T));
      a.method[b] = static_cast<int32_t>(Method::kPrevious);
    } else {
      std::fill(X, X + sq<T>(n_), T(0));
      a.method[b] = static_cast<int32_t>(o_.method == Method::kAuto ? Method::kEigh : o_.method);
    }
    a.status[b] = static_cast<int32_t>(status);
  }

  // Eigendecomposition root in precision U (T, or double for the last fallback).
  template <typename U, typename Src>
  bool eigh_in(const Src* A, double lmax, double ridge, U* X, U* V, U* w, U* work, int lwork,
               int* iwork, int liwork) const {
    const int n = n_;
    for (size_t i = 0; i < sq<U>(n); ++i) V[i] = static_cast<U>(A[i]);
    int info = 0;
    {
      SmallThreads threads(n);
      Lapack<U>::syevd("V", "L", &n, V, &n, w, work, &lwork, iwork, &liwork, &info);
    }
    if (info != 0 || !finite(w, n)) return false;
    const double exponent = -0.5 / o_.p;  // X = (V f^(1/2)) (V f^(1/2))^T
    const double cut = o_.pinv_threshold * lmax;
    for (int j = 0; j < n; ++j) {
      const double lam = std::max(static_cast<double>(w[j]), 0.0);
      double f;
      if (o_.pinv_threshold > 0) {
        f = lam > cut && lam > 0 ? std::pow(lam, exponent) : 0.0;
      } else {
        f = lam + ridge > 0 ? std::pow(lam + ridge, exponent) : 0.0;
      }
      if (!std::isfinite(f)) return false;
      U* col = V + static_cast<size_t>(j) * n;
      for (int i = 0; i < n; ++i) col[i] = static_cast<U>(col[i] * f);
    }
    const U one = U(1), zero = U(0);
    Lapack<U>::syrk("L", "N", &n, &n, &one, V, &n, &zero, X, &n);
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < j; ++i) X[i + static_cast<size_t>(j) * n] = X[j + static_cast<size_t>(i) * n];
    }
    return finite(X, sq<U>(n));
  }

  bool eigh(const T* A, double lmax, double ridge, T* X, Scratch<T>& sc) const {
    return eigh_in<T, T>(A, lmax, ridge, X, sc.tmp.data(), sc.w.data(), sc.work.data(),
                         static_cast<int>(sc.work.size()), sc.iwork.data(),
                         static_cast<int>(sc.iwork.size()));
  }

  bool eigh_double(const T* A, double lmax, double ridge, T* X) const {
    const int n = n_;
    double q = 0;
    int info = 0, lw = -1, liw = -1, iq = 0;
    Lapack<double>::syevd("V", "L", &n, nullptr, &n, nullptr, &q, &lw, &iq, &liw, &info);
    std::vector<double> V(sq<double>(n)), Xd(sq<double>(n)), w(n), work(static_cast<size_t>(q) + 1);
    std::vector<int> iwork(std::max(1, iq));
    if (!eigh_in<double, T>(A, lmax, ridge, Xd.data(), V.data(), w.data(), work.data(),
                            static_cast<int>(work.size()), iwork.data(), static_cast<int>(iwork.size()))) {
      return false;
    }
    for (size_t i = 0; i < sq<double>(n); ++i) X[i] = static_cast<T>(Xd[i]);
    return finite(X, sq<T>(n));
  }

  // Coupled iteration; returns the best iterate in X and whether its residual is acceptable.
  bool iterate(const T* A, double lmax, double ridge, bool third_order, T* X,
               double* residual, int* iterations, Scratch<T>& sc) const {
    const int n = n_;
    const int p = static_cast<int>(o_.p);
    const size_t nn = sq<T>(n);
    T *x = sc.x.data(), *m = sc.m.data(), *t = sc.t.data(), *tp = sc.tp.data();
    T *tmp = sc.tmp.data(), *best = sc.best.data();
    // A_r = A + ridge I, kept in `t` while M_0 is formed.
    std::memcpy(t, A, nn * sizeof(T));
    for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += static_cast<T>(ridge);
    {
      // Scaled start: the eigenvalues of M_0 = z A_r lie in (0, (1 + p) / 2], inside the
      // region (0, p + 1) where the coupled iteration converges (Guo and Higham 2006).
      const double z = (1.0 + o_.p) / (2.0 * (lmax + ridge));
      if (!(z > 0) || !std::isfinite(z)) return false;
      set_identity(n, static_cast<T>(std::pow(z, 1.0 / o_.p)), x);
      for (size_t i = 0; i < nn; ++i) m[i] = static_cast<T>(z * t[i]);
    }
    double best_err = distance_to_identity(n, m), last = best_err;
    std::memcpy(best, x, nn * sizeof(T));
    const double c2 = (o_.p + 1.0) / (2.0 * o_.p * o_.p);
    int k = 0;
    for (; k < o_.max_iters && best_err > tol_; ++k) {
      // T_k from E = I - M_k.
      for (size_t i = 0; i < nn; ++i) t[i] = -m[i];
      for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += T(1);
      if (third_order) {
        matmul(n, t, t, tmp);  // E^2
        for (size_t i = 0; i < nn; ++i) t[i] = static_cast<T>(t[i] / o_.p + c2 * tmp[i]);
      } else {
        for (size_t i = 0; i < nn; ++i) t[i] = static_cast<T>(t[i] / o_.p);
      }
      for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += T(1);
      matmul(n, x, t, tmp);
      std::memcpy(x, tmp, nn * sizeof(T));
      matrix_power(n, t, p, tp, sc.sqr.data(), tmp);
      matmul(n, tp, m, tmp);
      std::memcpy(m, tmp, nn * sizeof(T));
      const double err = distance_to_identity(n, m);
      if (!std::isfinite(err)) break;
      if (err < best_err) {
        best_err = err;
        std::memcpy(best, x, nn * sizeof(T));
      }
      // Stop when the residual grows, or stalls once it is small (rounding floor reached).
      if (err > 1.5 * last || (err < 1e-2 && err > 0.9 * last)) {
        ++k;
        break;
      }
      last = err;
    }
    *iterations = k;
    std::memcpy(X, best, nn * sizeof(T));
    *residual = best_err;
    return best_err <= accept_ && finite(X, nn);
  }

  // ||X^p (A + ridge I) - I||_inf.
  double true_residual(const T* A, double ridge, const T* X, Scratch<T>& sc) const {
    const int n = n_;
    const size_t nn = sq<T>(n);
    T *t = sc.t.data(), *tp = sc.tp.data(), *tmp = sc.tmp.data();
    std::memcpy(t, A, nn * sizeof(T));
    for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += static_cast<T>(ridge);
    if (o_.p != std::floor(o_.p)) return -1.0;
    matrix_power(n, X, static_cast<int>(o_.p), tp, sc.sqr.data(), tmp);
    matmul(n, tp, t, tmp);
    return distance_to_identity(n, tmp);
  }

  struct SmallThreads {
    explicit SmallThreads(int n) : guard(n <= 512 ? 1 : 0) {}
    ScopedBlasThreads guard;
  };

  int n_;
  Options o_;
  double tol_ = 0, accept_ = 0;
  int lwork_ = 1, liwork_ = 1;
};

}  // namespace

Method choose_method(const Shape&) { return Method::kEigh; }

template <typename T>
bool inverse_root(const Shape& shape, const Args<T>& args, const Options& options) {
  if (shape.n < 1 || shape.batch < 0 || !(options.p > 0)) return false;
  if ((options.method == Method::kNewton || options.method == Method::kNewton3) &&
      (options.p != std::floor(options.p) || options.p > 64)) {
    return false;
  }
  if (shape.batch == 0) return true;
  const Solver<T> solver(shape, options);
  const int workers = batch_workers(shape.batch, shape.n);
  std::vector<Scratch<T>> scratch;
  for (int w = 0; w < std::max(1, std::min<int>(workers, static_cast<int>(shape.batch))); ++w) {
    scratch.push_back(solver.make_scratch());
  }
  parallel_for(shape.batch, workers, [&](int worker, int64_t b) { solver.run(args, b, scratch[worker]); });
  return true;
}

template bool inverse_root<float>(const Shape&, const Args<float>&, const Options&);
template bool inverse_root<double>(const Shape&, const Args<double>&, const Options&);

}  // namespace linalg_core::roots
