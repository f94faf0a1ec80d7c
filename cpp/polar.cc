#include "polar.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "blas_threads.h"
#include "finite.h"
#include "lapack.h"
#include "parallel.h"
#include "scaling.h"
#include "symmetry.h"

namespace linalg_core::polar {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }


// The wide orientation of one problem. The row-major (m x n) buffer of A is the column-major
// (n x m) A^T; the iterate X (k x K) keeps that same buffer layout throughout, so the result is
// written back as it lies:
//   tall (m > n): the buffer is X = A^T column-major (k x K, leading dimension k);
//   wide (m <= n): the buffer is X^T = A^T column-major (K x k, leading dimension K).
struct Dims {
  int k = 0, K = 0;
  bool tall = false;
  size_t size() const { return sz(k, K); }
};


// g = X X^T (k x k, full symmetric) by SYRK.
template <typename T>
void gram(const Dims& d, const T* x, T* g) {
  const T one = T(1), zero = T(0);
  if (d.tall) {
    Lapack<T>::syrk("U", "N", &d.k, &d.K, &one, x, &d.k, &zero, g, &d.k);
  } else {
    Lapack<T>::syrk("U", "T", &d.k, &d.K, &one, x, &d.K, &zero, g, &d.k);
  }
  mirror_upper(d.k, g);
}

// out = G G^T = G^2 for symmetric G (k x k), by SYRK.
template <typename T>
void square(int k, const T* g, T* out) {
  const T one = T(1), zero = T(0);
  Lapack<T>::syrk("U", "N", &k, &k, &one, g, &k, &zero, out, &k);
  mirror_upper(k, out);
}

// out = alpha B X + beta X for symmetric B (k x k), by one GEMM (in the wide layout the buffer
// holds X^T, and (B X)^T = X^T B).
template <typename T>
void apply(const Dims& d, T alpha, const T* b, const T* x, T beta, T* out) {
  std::memcpy(out, x, d.size() * sizeof(T));  // GEMM's beta term scales its output operand
  if (d.tall) {
    Lapack<T>::gemm("N", "N", &d.k, &d.K, &d.k, &alpha, b, &d.k, x, &d.k, &beta, out, &d.k);
  } else {
    Lapack<T>::gemm("N", "N", &d.K, &d.k, &d.k, &alpha, x, &d.K, b, &d.k, &beta, out, &d.K);
  }
}

// The squarings j with k^(2^-(j+1)) <= 1.1: ||E^(2^j)||_F^(2^-j) then overestimates ||E||_2 by
// at most 10% (||M||_F <= sqrt(k) ||M||_2 applied to M = E^(2^j)).
int squarings_for(int k) {
  int j = 0;
  while (std::log(static_cast<double>(k)) / std::ldexp(1.0, j + 1) > std::log(1.1)) ++j;
  return j;
}

template <typename T>
struct Scratch {
  std::vector<T> x, y, g, g2, b, q, r, sq, sv, u, vt, work;
  std::vector<int> iwork;
  int lwork = -1;
};

// An upper bound on ||E||_2 for symmetric E (k x k; overwritten). ||E||_F alone when it
// already decides the comparison with `threshold` (||E||_2 in [||E||_F / sqrt(k), ||E||_F]);
// otherwise the smaller of ||E||_F and ||E^(2^j)||_F^(2^-j) by normalised repeated squaring
// (each normalised square has Frobenius norm in [1/sqrt(k), 1]: no underflow).
template <typename T>
double spectral_bound(int k, T* e, double threshold, Scratch<T>& w) {
  const size_t kk = sz(k, k);
  const double f = frobenius(e, kk);
  if (!(f > 0) || !std::isfinite(f) || k == 1) return f;
  if (threshold >= 0 && (f <= threshold || f / std::sqrt(static_cast<double>(k)) > threshold)) return f;
  const int j = squarings_for(k);
  w.sq.resize(kk);
  for (size_t i = 0; i < kk; ++i) e[i] = static_cast<T>(e[i] / f);
  double log_bound = std::log(f);
  T* cur = e;
  T* next = w.sq.data();
  for (int i = 1; i <= j; ++i) {
    square(k, cur, next);
    const double fi = frobenius(next, kk);
    if (!(fi > 0) || !std::isfinite(fi)) break;
    for (size_t t = 0; t < kk; ++t) next[t] = static_cast<T>(next[t] / fi);
    log_bound += std::ldexp(std::log(fi), -i);
    std::swap(cur, next);
  }
  return std::min(f, std::exp(log_bound));
}

// True when s I - g (sign < 0) or g - s I (sign > 0) is positive definite: Cholesky succeeds.
template <typename T>
bool definite(int k, const T* g, double s, double sign, T* chol) {
  for (size_t i = 0; i < sz(k, k); ++i) chol[i] = static_cast<T>(sign * g[i]);
  for (int i = 0; i < k; ++i) chol[sz(i, k) + i] = static_cast<T>(chol[sz(i, k) + i] - sign * s);
  int info = 0;
  Lapack<T>::potrf("U", &k, chol, &k, &info);
  return info == 0;
}

// The polar factor of the buffer x (layout of Dims) by the thin SVD: the buffer is the
// column-major n x m matrix C = A^T, C = U S V^T, polar(C) = U V^T = polar(A)^T, which written
// column-major is the row-major polar(A). x is destroyed; sv[0] = ||A||_2 on success.
template <typename T>
bool svd_polar(int64_t m, int64_t n, const Dims& d, T* x, T* q, Scratch<T>& w) {
  const int r = static_cast<int>(n), c = static_cast<int>(m), k = d.k;
  w.sv.resize(k);
  w.u.resize(sz(r, k));
  w.vt.resize(sz(k, c));
  w.iwork.resize(sz(8, k));
  int info = 0;
  if (w.lwork < 0) {
    T query = T(0);
    int lw = -1;
    Lapack<T>::gesdd("S", &r, &c, x, &r, w.sv.data(), w.u.data(), &r, w.vt.data(), &k, &query, &lw,
                     w.iwork.data(), &info);
    if (info != 0) return false;
    w.lwork = std::max(1, static_cast<int>(query) + 1);
    w.work.resize(w.lwork);
  }
  Lapack<T>::gesdd("S", &r, &c, x, &r, w.sv.data(), w.u.data(), &r, w.vt.data(), &k, w.work.data(),
                   &w.lwork, w.iwork.data(), &info);
  if (info != 0) return false;
  const T one = T(1), zero = T(0);
  Lapack<T>::gemm("N", "N", &r, &c, &k, &one, w.u.data(), &r, w.vt.data(), &k, &zero, q, &r);
  return all_finite(q, d.size());
}

// Certified bounds on the singular values of an iterate from r >= ||X X^T - I||_2.
struct Bounds {
  double lower = 0.0, upper = 0.0;
  double residual() const { return std::max(1.0 - lower, upper - 1.0); }
};

Bounds from_gram_bound(double r) { return {std::sqrt(std::max(1.0 - r, 0.0)), std::sqrt(1.0 + r)}; }

template <typename T>
class Solver {
 public:
  Solver(const Shape& s, const Options& o, const Args<T>& a) : s_(s), o_(o), a_(a) {
    d_.k = static_cast<int>(std::min(s.m, s.n));
    d_.K = static_cast<int>(std::max(s.m, s.n));
    d_.tall = s.m > s.n;
    eps_ = std::numeric_limits<T>::epsilon();
    // The rounding of forming G = X X^T in T for ||X||_2 ~ 1, in the standard probabilistic model
    // (errors of an inner product of length K grow like sqrt(K) eps, Higham and Mary 2019): the
    // diagonal's sqrt(K) eps plus the spectral norm 2 sqrt(k) eps of a k x k matrix of
    // independent eps-sized errors, times 2 for margin.
    delta_ = 4.0 * (std::sqrt(static_cast<double>(d_.K)) + std::sqrt(static_cast<double>(d_.k))) * eps_;
    // residual <= tol  <=>  1 - sqrt(1 - r) <= tol  <=>  r <= 1 - (1 - tol)^2.
    r_tol_ = 1.0 - (1.0 - o.tol) * (1.0 - o.tol);
  }

  void run(int64_t b, Scratch<T>& w) {
    const size_t size = d_.size();
    const T* a = a_.a + b * size;
    T* q = a_.q + b * size;
    Result res;
    res.method = o_.svd ? Method::svd : Method::newton_schulz;
    res.status = solve(a, q, w, res);
    if (res.status == Status::non_finite_input || res.status == Status::zero_input ||
        res.status == Status::failed) {
      std::fill(q, q + size, T(0));
      res.bounds = {0.0, 0.0};
    }
    const double big = std::numeric_limits<T>::max();
    a_.residual[b] = static_cast<T>(res.bounds.residual());
    a_.sigma_lower[b] = static_cast<T>(res.bounds.lower);
    a_.sigma_upper[b] = static_cast<T>(std::min(res.bounds.upper, big));
    a_.norm_bound[b] = static_cast<T>(std::min(res.norm_bound, big));
    a_.iterations[b] = res.iterations;
    a_.method[b] = static_cast<int32_t>(res.method);
    a_.status[b] = static_cast<int32_t>(res.status);
  }

 private:
  struct Result {
    Status status = Status::ok;
    Method method = Method::newton_schulz;
    Bounds bounds;
    double norm_bound = 0.0;
    int32_t iterations = 0;
  };

  // The iteration and its checks on one problem; q receives the answer (the caller zeroes it for
  // the statuses whose contract is q = 0).
  Status solve(const T* a, T* q, Scratch<T>& w, Result& res) {
    const size_t size = d_.size();
    const int k = d_.k;
    if (!all_finite(a, size)) return Status::non_finite_input;
    const T amax = max_abs(a, size);
    if (amax == T(0)) return Status::zero_input;
    // a 2^-e has its largest entry in [1/2, 1): exact, and every product below stays in range.
    int e = 0;
    std::frexp(amax, &e);
    w.x.resize(size);
    w.y.resize(size);
    w.g.resize(sz(k, k));
    w.g2.resize(sz(k, k));
    w.b.resize(sz(k, k));
    T* scaled = q;  // q holds the prescaled input until the answer replaces it
    for (size_t i = 0; i < size; ++i) scaled[i] = std::ldexp(a[i], -e);
    if (o_.svd) return exact(scaled, q, e, w, res, Status::ok);

    // Start scaling by bound >= ||A||_2 (module comment), from the first step's G0 and G0^2.
    const double cheap = one_inf_bound(scaled) * (1.0 + 4.0 * d_.K * eps_);
    gram(d_, scaled, w.g.data());
    square(k, w.g.data(), w.g2.data());
    const double root4 = std::sqrt(std::sqrt(frobenius(w.g2.data(), sz(k, k))));
    const double bound = std::min(cheap, root4 * (1.0 + 4.0 * std::sqrt(static_cast<double>(k)) * (k + d_.K) * eps_));
    res.norm_bound = std::ldexp(bound, e);
    const double inv = 1.0 / bound;
    for (size_t i = 0; i < size; ++i) w.x[i] = static_cast<T>(scaled[i] * inv);
    for (size_t i = 0; i < sz(k, k); ++i) {
      w.g[i] = static_cast<T>(w.g[i] * inv * inv);
      w.g2[i] = static_cast<T>(w.g2[i] * (inv * inv) * (inv * inv));
    }
    if (gram_side()) {
      schedule_on_gram(w);
    } else {
      schedule_on_iterate(w);
    }
    res.iterations = static_cast<int32_t>(a_.steps);
    bool passed = all_finite(w.x.data(), size);
    if (passed) passed = o_.converge ? converge(w, res) : band(w, res);
    if (passed) {
      std::memcpy(q, w.x.data(), size * sizeof(T));
      return Status::ok;
    }
    if (o_.fallback) return exact(scaled, q, e, w, res, Status::fell_back);
    if (!all_finite(w.x.data(), size)) return Status::failed;
    std::memcpy(q, w.x.data(), size * sizeof(T));
    return Status::not_converged;
  }

  // The schedule on the Gram side pays once the iterate is wide enough: per step it costs
  // about 7 k^3 flops against 3 k^2 K + k^3 on the iterate, plus 2 k^2 K once (K >= 2 k).
  bool gram_side() const { return a_.steps >= 2 && d_.K >= 2 * static_cast<int64_t>(d_.k); }

  // The schedule applied to the iterate: X <- a X + (b G + c G^2) X, G = X X^T each step (G and
  // G^2 of the scaled input are in w.g, w.g2 on entry).
  void schedule_on_iterate(Scratch<T>& w) {
    const int k = d_.k;
    for (int64_t t = 0; t < a_.steps; ++t) {
      const double* c = a_.schedule + 3 * t;
      if (t > 0) {
        gram(d_, w.x.data(), w.g.data());
        square(k, w.g.data(), w.g2.data());
      }
      for (size_t i = 0; i < sz(k, k); ++i) w.b[i] = static_cast<T>(c[1] * w.g[i] + c[2] * w.g2[i]);
      apply(d_, T(1), w.b.data(), w.x.data(), static_cast<T>(c[0]), w.y.data());
      std::swap(w.x, w.y);
    }
  }

  // The same schedule on k x k matrices only: with P_t = a I + b G_t + c G_t^2 (a polynomial in
  // G_t, so symmetric and commuting with it), X_(t+1) = P_t X_t gives G_(t+1) = P_t G_t P_t and
  // X_T = Q X_0 with Q = P_(T-1) ... P_0: one GEMM with the k x K iterate at the end. The
  // a-posteriori check runs on the X_T so formed, never on the recurrence's G_T.
  void schedule_on_gram(Scratch<T>& w) {
    const int k = d_.k;
    const size_t kk = sz(k, k);
    w.q.resize(kk);
    w.r.resize(kk);
    const T one = T(1), zero = T(0);
    for (int64_t t = 0; t < a_.steps; ++t) {
      const double* c = a_.schedule + 3 * t;
      if (t > 0) square(k, w.g.data(), w.g2.data());
      for (size_t i = 0; i < kk; ++i) w.b[i] = static_cast<T>(c[1] * w.g[i] + c[2] * w.g2[i]);
      for (int i = 0; i < k; ++i) w.b[sz(i, k) + i] += static_cast<T>(c[0]);
      if (t == 0) {
        std::copy(w.b.begin(), w.b.end(), w.q.begin());
      } else {
        Lapack<T>::gemm("N", "N", &k, &k, &k, &one, w.b.data(), &k, w.q.data(), &k, &zero, w.r.data(), &k);
        symmetrize(k, w.r.data(), w.q.data());
      }
      if (t + 1 < a_.steps) {
        Lapack<T>::gemm("N", "N", &k, &k, &k, &one, w.b.data(), &k, w.g.data(), &k, &zero, w.r.data(), &k);
        Lapack<T>::gemm("N", "N", &k, &k, &k, &one, w.r.data(), &k, w.b.data(), &k, &zero, w.g2.data(), &k);
        symmetrize(k, w.g2.data(), w.g.data());
      }
    }
    apply(d_, T(1), w.q.data(), w.x.data(), T(0), w.y.data());
    std::swap(w.x, w.y);
  }

  // out = (x + x^T) / 2: products of commuting symmetric matrices are symmetric up to rounding.
  static void symmetrize(int k, const T* x, T* out) {
    for (int j = 0; j < k; ++j) {
      for (int i = 0; i < k; ++i) out[sz(j, k) + i] = static_cast<T>(0.5) * (x[sz(j, k) + i] + x[sz(i, k) + j]);
    }
  }

  // sqrt(||A||_1 ||A||_inf) >= ||A||_2 for the row-major m x n buffer.
  double one_inf_bound(const T* x) const {
    const int64_t m = s_.m, n = s_.n;
    std::vector<double> col(n, 0.0);
    double row_max = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      double row = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const double v = std::abs(static_cast<double>(x[sz(i, n) + j]));
        row += v;
        col[j] += v;
      }
      row_max = std::max(row_max, row);
    }
    return std::sqrt(row_max * *std::max_element(col.begin(), col.end()));
  }

  // E = G - I in w.b from G in w.g.
  void gram_minus_identity(Scratch<T>& w) const {
    const int k = d_.k;
    std::copy(w.g.begin(), w.g.end(), w.b.begin());
    for (int i = 0; i < k; ++i) w.b[sz(i, k) + i] -= T(1);
  }

  // The residual check of the iterate whose Gram matrix is in w.g: r >= ||G - I||_2 (rounding
  // allowance included).
  double residual_bound(Scratch<T>& w) const {
    gram_minus_identity(w);
    return spectral_bound(d_.k, w.b.data(), std::max(r_tol_ - delta_, 0.0), w) + delta_;
  }

  // Cubic Newton-Schulz steps until residual <= tol; false when max_iters ran out or the
  // iterate left the region (0, sqrt(3)) where the step converges.
  bool converge(Scratch<T>& w, Result& res) {
    double previous = 0.0;
    for (int32_t it = 0;; ++it) {
      gram(d_, w.x.data(), w.g.data());
      const double r = residual_bound(w);
      res.bounds = from_gram_bound(r);
      if (r <= r_tol_) return true;
      if (it >= o_.max_iters) return false;
      // Near 1 the step squares the error (s -> 1 - 1.5 e^2 for s = 1 + e): a bound that stops
      // halving there has reached the rounding floor, above tol.
      if (it > 0 && r < 0.1 && r > 0.5 * previous) return false;
      previous = r;
      // r < 2 certifies s_i^2 < 3; otherwise (a Frobenius-sized r) Cholesky of 2.9 I - G does.
      if (!(r < 2.0) && !definite(d_.k, w.g.data(), 2.9, -1.0, w.g2.data())) return false;
      apply(d_, T(-0.5), w.g.data(), w.x.data(), T(1.5), w.y.data());
      std::swap(w.x, w.y);
      ++res.iterations;
    }
  }

  // The fixed-schedule check: every s_i in [band_lower, band_upper], certified by two Cholesky
  // factorisations; the residual from ||G - I||_F and the band.
  bool band(Scratch<T>& w, Result& res) {
    const int k = d_.k;
    gram(d_, w.x.data(), w.g.data());
    w.g2.resize(sz(k, k));
    const bool inside = definite(k, w.g.data(), o_.band_lower * o_.band_lower, 1.0, w.g2.data()) &&
                        definite(k, w.g.data(), o_.band_upper * o_.band_upper, -1.0, w.g2.data());
    gram_minus_identity(w);
    Bounds bounds = from_gram_bound(frobenius(w.b.data(), sz(k, k)) + delta_);
    if (inside) bounds = {std::max(bounds.lower, o_.band_lower), std::min(bounds.upper, o_.band_upper)};
    res.bounds = bounds;
    return inside;
  }

  // The SVD polar factor of the prescaled input into q, its residual checked like an iterate's.
  Status exact(T* scaled, T* q, int e, Scratch<T>& w, Result& res, Status success) {
    res.method = Method::svd;
    std::copy(scaled, scaled + d_.size(), w.y.begin());
    if (!svd_polar(s_.m, s_.n, d_, w.y.data(), q, w)) return Status::failed;
    res.norm_bound = std::ldexp(static_cast<double>(w.sv[0]), e);
    gram(d_, q, w.g.data());
    const double r = residual_bound(w);
    res.bounds = from_gram_bound(r);
    if (success == Status::ok && !(r <= r_tol_)) return Status::not_converged;
    return success;
  }

  const Shape& s_;
  const Options& o_;
  const Args<T>& a_;
  Dims d_;
  double eps_ = 0.0, delta_ = 0.0, r_tol_ = 0.0;
};

}  // namespace

template <typename T>
bool polar(const Shape& s, const Args<T>& a, const Options& o) {
  if (s.m < 1 || s.n < 1 || s.batch < 0 || a.steps < 0) return false;
  if (s.m > std::numeric_limits<int>::max() || s.n > std::numeric_limits<int>::max() ||
      sz(s.m, s.n) > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return false;
  }
  if (!(o.tol > 0 && o.tol < 1) || o.max_iters < 0) return false;
  if (!o.svd && !o.converge && !(o.band_lower >= 0 && o.band_upper > o.band_lower)) return false;
  if (a.steps > 0 && a.schedule == nullptr) return false;
  for (int64_t i = 0; i < 3 * a.steps; ++i) {
    if (!std::isfinite(a.schedule[i])) return false;
  }
  Solver<T> solver(s, o, a);
  const int workers = batch_workers(s.batch, std::min(s.m, s.n));
  // One problem at a time: the project's small-problem policy (blas_threads.h) on k.
  SmallProblemBlasThreads small(workers == 1 ? static_cast<int>(std::min(s.m, s.n)) : 1 << 30);
  std::vector<Scratch<T>> scratch(std::max(workers, 1));
  parallel_for(s.batch, workers, [&](int worker, int64_t b) { solver.run(b, scratch[worker]); });
  return true;
}

template bool polar<float>(const Shape&, const Args<float>&, const Options&);
template bool polar<double>(const Shape&, const Args<double>&, const Options&);

}  // namespace linalg_core::polar
