#include "roots.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "blas_threads.h"
#include "finite.h"
#include "lapack.h"
#include "lcg.h"
#include "parallel.h"
#include "small_eigh.h"
#include "symmetry.h"
#include "tridiagonal_eigh.h"

namespace linalg_core::roots {
namespace {

template <typename T>
size_t sq(int n) {
  return static_cast<size_t>(n) * static_cast<size_t>(n);
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

struct Distance {
  double inf = 0.0;        // max_j sum_i |M_ij - delta_ij| (columns = rows for symmetric M)
  double frobenius = 0.0;  // ||M - I||_F
};

template <typename T>
Distance distance_to_identity(int n, const T* m) {
  Distance d;
  double squares = 0.0;
  for (int j = 0; j < n; ++j) {
    double sum = 0.0;
    const T* col = m + static_cast<size_t>(j) * n;
    for (int i = 0; i < n; ++i) {
      const double e = static_cast<double>(col[i]) - (i == j ? 1.0 : 0.0);
      sum += std::abs(e);
      squares += e * e;
    }
    d.inf = std::max(d.inf, sum);
  }
  d.frobenius = std::sqrt(squares);
  return d;
}

// Pairs the upper triangle of an n x n column-major matrix with the lower one, tile by tile:
// f(upper, lower) is called for every (i, j), i < j, with references to s[i + j n] and
// s[j + i n]. Each 32 x 32 lower tile is staged transposed in a local buffer, so both tiles are
// read and written along contiguous columns; a direct transposed walk strides by n elements and,
// at power-of-two n such as 1024, maps every access of a tile column to the same cache set.
template <typename T, typename F>
void pair_triangles(int n, T* s, F&& f) {
  constexpr int B = 32;
  T lower[B * B];
  for (int jb = 0; jb < n; jb += B) {
    const int jw = std::min(B, n - jb);
    for (int ib = 0; ib < jb; ib += B) {
      const int iw = std::min(B, n - ib);
      // lower[a * B + c] = s[(jb + a) + (ib + c) n], the lower tile, transposed.
      for (int c = 0; c < iw; ++c) {
        const T* col = s + jb + static_cast<size_t>(ib + c) * n;
        for (int a = 0; a < jw; ++a) lower[a * B + c] = col[a];
      }
      // Upper tile: s[(ib + c) + (jb + a) n] pairs with lower[a * B + c].
      for (int a = 0; a < jw; ++a) {
        T* col = s + ib + static_cast<size_t>(jb + a) * n;
        for (int c = 0; c < iw; ++c) f(col[c], lower[a * B + c]);
      }
      for (int c = 0; c < iw; ++c) {
        T* col = s + jb + static_cast<size_t>(ib + c) * n;
        for (int a = 0; a < jw; ++a) col[a] = lower[a * B + c];
      }
    }
    // Diagonal tile: small, direct.
    for (int j = jb; j < jb + jw; ++j) {
      for (int i = jb; i < j; ++i) f(s[i + static_cast<size_t>(j) * n], s[j + static_cast<size_t>(i) * n]);
    }
  }
}

// S <- (S + S^T) / 2.
template <typename T>
void symmetrise(int n, T* s) {
  pair_triangles(n, s, [](T& upper, T& lower) { upper = lower = T(0.5) * (upper + lower); });
}

// Copies the lower triangle into the upper one.
template <typename T>
void mirror_lower(int n, T* s) {
  pair_triangles(n, s, [](T& upper, T& lower) { upper = lower; });
}

// Lower triangle of rows/columns [r0, r1) of C = A B (n x n, column-major), by recursive halving:
// the off-diagonal block below the split is one GEMM, the two diagonal blocks recurse; blocks of
// at most 128 rows are computed whole. At n = 1024 that is 1.2 Gflop instead of GEMM's 2.1
// (OpenBLAS's own ?gemmt is slower than a full GEMM, so it is not used).
template <typename T>
void lower_product(int n, const T* a, const T* b, T* c, int r0, int r1) {
  const T one = T(1), zero = T(0);
  const int size = r1 - r0;
  if (size <= 128) {
    Lapack<T>::gemm("N", "N", &size, &size, &n, &one, a + r0, &n, b + static_cast<size_t>(r0) * n, &n,
                    &zero, c + r0 + static_cast<size_t>(r0) * n, &n);
    return;
  }
  const int mid = r0 + ((size / 2 + 31) / 32) * 32;
  const int rows = r1 - mid, cols = mid - r0;
  Lapack<T>::gemm("N", "N", &rows, &cols, &n, &one, a + mid, &n, b + static_cast<size_t>(r0) * n, &n, &zero,
                  c + mid + static_cast<size_t>(r0) * n, &n);
  lower_product(n, a, b, c, r0, mid);
  lower_product(n, a, b, c, mid, r1);
}

// C = A B for symmetric A and B that commute (polynomials in the same matrix: the iterates below),
// whose product is therefore symmetric: its lower triangle, mirrored. Exactly symmetric output
// at ~0.56x a GEMM's flops for n >= 512.
template <typename T>
void symmetric_product(int n, const T* a, const T* b, T* c) {
  lower_product(n, a, b, c, 0, n);
  mirror_lower(n, c);
}

// out = S^2 for a symmetric S (up to rounding) by SYRK: S S^T, half the flops of a GEMM, and the
// result is exactly symmetric.
template <typename T>
void symmetric_square(int n, const T* s, T* out) {
  const T one = T(1), zero = T(0);
  Lapack<T>::syrk("L", "N", &n, &n, &one, s, &n, &zero, out, &n);
  mirror_lower(n, out);
}

// out = S^p (p >= 1 integer) for a symmetric S by binary powering, squarings by SYRK; `square`
// and `tmp` are scratch.
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
        symmetric_product(n, out, square, tmp);
        std::memcpy(out, tmp, sq<T>(n) * sizeof(T));
      }
    }
    p >>= 1;
    if (p > 0) {
      symmetric_square(n, square, tmp);
      std::swap_ranges(square, square + sq<T>(n), tmp);
    }
  }
}

// S^p for a symmetric S: repeated SYRK squarings in ping-pong buffers when p is a power of two,
// binary powering otherwise. Returns the buffer (among b0, b1, b2) that holds the result.
template <typename T>
const T* power(int n, const T* s, int p, T* b0, T* b1, T* b2) {
  if ((p & (p - 1)) != 0) {
    matrix_power(n, s, p, b0, b1, b2);
    return b0;
  }
  if (p == 1) return s;
  symmetric_square(n, s, b0);
  T *cur = b0, *other = b1;
  for (int q = 2; q < p; q *= 2) {
    symmetric_square(n, cur, other);
    std::swap(cur, other);
  }
  return cur;
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

// An upper bound on lambda_min of a symmetric A: the smallest Ritz value of `steps` Lanczos steps
// (full reorthogonalisation, deterministic pseudo-random start). By Cauchy interlacing it is never
// below lambda_min; for the bottom of a geometric spectrum with kappa = 1e4 and 20 steps it is
// within ~10x of it. O(steps n^2), 20 matrix-vector products.
template <typename T>
double lanczos_lambda_min(int n, const T* a, int steps) {
  steps = std::max(1, std::min(steps, n));
  std::vector<T> basis(static_cast<size_t>(n) * (steps + 1)), w(n);
  std::vector<double> alpha, beta;
  Lcg random(0x2545F4914F6CDD1Dull);
  double norm = 0.0;
  for (int i = 0; i < n; ++i) {
    const double r = random.next();
    basis[i] = static_cast<T>(r);
    norm += r * r;
  }
  for (int i = 0; i < n; ++i) basis[i] = static_cast<T>(basis[i] / std::sqrt(norm));
  const T one = T(1), zero = T(0);
  const int cols = 1;
  for (int j = 0; j < steps; ++j) {
    const T* v = basis.data() + static_cast<size_t>(j) * n;
    Lapack<T>::gemm("N", "N", &n, &cols, &n, &one, a, &n, v, &n, &zero, w.data(), &n);
    double al = 0.0;
    for (int i = 0; i < n; ++i) al += static_cast<double>(v[i]) * w[i];
    alpha.push_back(al);
    // w -= V (V^T w), twice: full reorthogonalisation against every basis vector so far.
    for (int pass = 0; pass < 2; ++pass) {
      for (int q = 0; q <= j; ++q) {
        const T* u = basis.data() + static_cast<size_t>(q) * n;
        double d = 0.0;
        for (int i = 0; i < n; ++i) d += static_cast<double>(u[i]) * w[i];
        for (int i = 0; i < n; ++i) w[i] = static_cast<T>(w[i] - d * u[i]);
      }
    }
    double b2 = 0.0;
    for (int i = 0; i < n; ++i) b2 += static_cast<double>(w[i]) * w[i];
    const double b = std::sqrt(b2);
    if (j + 1 == steps || !(b > 1e-7 * std::max(std::abs(al), 1e-300))) break;  // invariant subspace
    beta.push_back(b);
    T* next = basis.data() + static_cast<size_t>(j + 1) * n;
    for (int i = 0; i < n; ++i) next[i] = static_cast<T>(w[i] / b);
  }
  const int m = static_cast<int>(alpha.size());
  std::vector<double> tri(static_cast<size_t>(m) * m, 0.0), theta(m), scratch;
  for (int i = 0; i < m; ++i) {
    tri[i + static_cast<size_t>(i) * m] = alpha[i];
    if (i + 1 < m) tri[i + 1 + static_cast<size_t>(i) * m] = tri[i + static_cast<size_t>(i + 1) * m] = beta[i];
  }
  if (!small_eigh(m, tri.data(), theta.data(), scratch)) return 0.0;  // no information: no scaling
  return theta[0];
}

// Per-worker buffers, allocated on first use by the methods that need them (the eigh root needs
// two n x n matrices and the decomposition's workspace, the iterations seven n x n matrices):
// every fresh page is faulted in on first touch, so buffers a method never uses would cost each
// call that time for nothing.
template <typename T>
struct Scratch {
  int n = 0;
  std::vector<T> x, m, t, tp, sqr, tmp, best, v, av, w;
  std::vector<T> scaled;  // c A, the prescaled input (when c != 1)
  std::optional<TridiagonalEigh<T>> eig;
  std::vector<double> a64, z64, x64, w64;  // the float64 eigh (fallback, or accumulate_float64)
  std::optional<TridiagonalEigh<double>> eig64;

  void for_eigh() {
    for (auto* buf : {&m, &tmp}) buf->resize(sq<T>(n));
    w.resize(n);
    if (!eig) eig.emplace(n);
  }
  void for_eigh_double() {
    for (auto* buf : {&a64, &z64, &x64}) buf->resize(sq<double>(n));
    w64.resize(n);
    if (!eig64) eig64.emplace(n);
  }
  void for_iterations() {
    for (auto* buf : {&x, &m, &t, &tp, &sqr, &tmp, &best}) buf->resize(sq<T>(n));
    v.resize(n);
    av.resize(n);
  }
};

template <typename T>
class Solver {
 public:
  Solver(const Shape& s, const Options& o)
      : n_(static_cast<int>(s.n)), o_(o), method_(static_cast<Method>(o.method)),
        relative_ridge_(static_cast<Ridge>(o.ridge) == Ridge::kRelative) {
    eps_ = std::numeric_limits<T>::epsilon();
    // ||M - I||_inf sums n entries: its rounding floor is ~ n eps.
    tol_ = o.tol > 0 ? o.tol : n_ * eps_;
    // An n x n matrix stored in T and decomposed in T is known to ~ n eps ||A||: eigenvalues
    // below that (relative to lambda_max) are not resolved (kIllConditioned), and negative ones
    // down to twice the sum of the input's rounding and the eigensolver's backward error (8 n eps
    // each) are rounding, clipped to 0; below that, A is indefinite.
    resolved_ = n_ * eps_;
    indefinite_ = 16.0 * n_ * eps_;
    scale_step_ = (o.p == std::floor(o.p) && o.p >= 1 && o.p <= 64) ? static_cast<int>(o.p) : 1;
  }

  Scratch<T> make_scratch() const {
    Scratch<T> sc;
    sc.n = n_;
    return sc;
  }

  void run(const Args<T>& a, int64_t b, Scratch<T>& sc) const {
    const int n = n_;
    const size_t nn = sq<T>(n);
    const T* input = a.a + b * nn;
    const T* prev = a.previous ? a.previous + b * nn : nullptr;
    T* X = a.root + b * nn;
    a.iterations[b] = 0;
    a.residual[b] = T(-1);
    a.lambda_max[b] = T(0);
    a.ridge[b] = T(0);
    const bool prev_finite = prev == nullptr || all_finite(prev, nn);
    if (!prev_finite) prev = nullptr;  // never returned: the output stays finite
    const SymmetryScan scan = scan_symmetry(n, input);
    if (!scan.finite || !prev_finite) {
      give_up(a, b, prev, X, Status::kNonFiniteInput);
      return;
    }
    if (!is_symmetric<T>(scan, n)) {
      give_up(a, b, prev, X, Status::kNotSymmetric);
      return;
    }
    // Power-of-two prescaling: A <- c A with c = 2^k bringing max(max|A|, absolute ridge) to
    // [2^(-q/2), 2^(q/2)], k a multiple of q = p (integer p), so X(A) = c^(1/p) X(c A) exactly.
    double top = scan.max_abs;
    if (!relative_ridge_ && o_.pinv_threshold <= 0) top = std::max(top, o_.eps);
    int k = 0;
    if (top > 0) {
      const double q = scale_step_;
      k = static_cast<int>(q * std::nearbyint(-std::log2(top) / q));
    }
    const double c = std::ldexp(1.0, k);
    const T* A = input;
    if (k != 0) {
      sc.scaled.resize(nn);
      for (size_t i = 0; i < nn; ++i) sc.scaled[i] = static_cast<T>(c * static_cast<double>(input[i]));
      A = sc.scaled.data();
    }
    Method requested = method_ == Method::kAuto ? Method::kEigh : method_;
    if (requested == Method::kEigh && o_.accumulate_float64 && sizeof(T) < sizeof(double)) {
      requested = Method::kEighDouble;
    }
    // The chain: from the requested method down newton -> newton3 -> eigh -> eigh in double
    // (float input only), then the previous root.
    std::vector<Method> chain;
    const Method order[4] = {Method::kNewton, Method::kNewton3, Method::kEigh, Method::kEighDouble};
    for (Method m : order) {
      if (!chain.empty() || m == requested) {
        if (m == Method::kEighDouble && sizeof(T) == sizeof(double)) continue;
        chain.push_back(m);
      }
    }
    // lambda_max: from a few power steps for the iterations (their scaling needs it before any
    // factorisation); the eigh methods read it off their eigenvalues instead (exact, free).
    double lmax = -1.0;
    for (size_t i = 0; i < chain.size(); ++i) {
      const Method m = chain[i];
      double residual = -1.0;
      int iterations = 0;
      double ridge = 0.0;
      Outcome outcome;
      if (m == Method::kNewton || m == Method::kNewton3) {
        sc.for_iterations();
        if (lmax < 0) lmax = power_lambda_max(n, A, sc.v, sc.av);
        ridge = ridge_for(lmax, c);
        outcome = iterate(A, lmax, ridge, m == Method::kNewton3, X, &residual, &iterations, sc);
      } else if (m == Method::kEigh) {
        outcome = eigh(A, c, &lmax, &ridge, X, sc);
      } else {
        outcome = eigh_double(A, c, &lmax, &ridge, X, sc);
      }
      a.iterations[b] += iterations;
      a.lambda_max[b] = static_cast<T>(std::max(lmax, 0.0) / c);
      a.ridge[b] = static_cast<T>(ridge / c);
      if (outcome == Outcome::kIndefinite) {
        give_up(a, b, prev, X, Status::kIndefinite);
        return;
      }
      if (outcome == Outcome::kFail) continue;
      if (o_.true_residual && residual < 0) residual = certify(A, ridge, X, sc).residual;
      if (k != 0) {
        // 2^(k/p): exact for integer p (k is a multiple of p), one rounding otherwise.
        const T up = static_cast<T>(scale_step_ == o_.p ? std::ldexp(1.0, k / scale_step_)
                                                        : std::exp2(static_cast<double>(k) / o_.p));
        for (size_t j = 0; j < nn; ++j) X[j] *= up;
        if (!all_finite(X, nn)) break;  // the root itself overflows the dtype
      }
      a.residual[b] = static_cast<T>(residual);
      a.method[b] = static_cast<int32_t>(m);
      a.status[b] = static_cast<int32_t>(outcome == Outcome::kIllConditioned ? Status::kIllConditioned
                                         : i == 0                            ? Status::kOk
                                                                             : Status::kFellBack);
      return;
    }
    give_up(a, b, prev, X, Status::kFailed);
  }

 private:
  enum class Outcome { kOk, kFail, kIllConditioned, kIndefinite };

  void give_up(const Args<T>& a, int64_t b, const T* prev, T* X, Status status) const {
    if (prev != nullptr) {
      std::memcpy(X, prev, sq<T>(n_) * sizeof(T));
      a.method[b] = static_cast<int32_t>(Method::kPrevious);
    } else {
      std::fill(X, X + sq<T>(n_), T(0));
      a.method[b] = static_cast<int32_t>(method_ == Method::kAuto ? Method::kEigh : method_);
    }
    a.residual[b] = T(-1);
    a.status[b] = static_cast<int32_t>(status);
  }

  // The ridge added to every eigenvalue of the prescaled c A (none in pseudo-inverse mode).
  double ridge_for(double lmax, double c) const {
    return o_.pinv_threshold > 0 ? 0.0 : (relative_ridge_ ? o_.eps * lmax : o_.eps * c);
  }

  // The true residual an iterate may have: X^p S - I evaluated in T carries ~ n eps ||X^p|| ||S||
  // = n eps kappa of rounding (the float32 roots measured 0.1-1.1 n eps kappa), so the default
  // allows 4 n eps kappa, at least the iteration's own floor, and at most 0.5 (beyond that the
  // residual no longer bounds the error usefully; eigh takes over).
  double accept_for(double kappa) const {
    if (o_.accept > 0) return o_.accept;
    return std::min(0.5, std::max({std::sqrt(eps_), 64.0 * n_ * eps_, 4.0 * n_ * eps_ * kappa}));
  }

  // Eigendecomposition root in precision U (T, or double for the last fallback). a_work, z: n x n
  // scratch; the eigendecomposition of A (read as its lower triangle) by
  // sytrd + stedc + a blocked back-transformation (tridiagonal_eigh.h: syevd's algorithm, its
  // back-transformation in blocks of 128 reflectors instead of ormtr's 32, which starve the GEMM).
  template <typename U, typename Src>
  Outcome eigh_in(const Src* A, double c, double* lmax_out, double* ridge_out, U* X, U* a_work, U* z,
                  U* w, TridiagonalEigh<U>& eig) const {
    const int n = n_;
    for (size_t i = 0; i < sq<U>(n); ++i) a_work[i] = static_cast<U>(A[i]);
    SmallProblemBlasThreads threads(n);
    if (!eig(a_work, w, z)) return Outcome::kFail;
    const double lmax = std::max(static_cast<double>(w[n - 1]), 0.0);
    const double ridge = ridge_for(lmax, c);
    *lmax_out = lmax;
    *ridge_out = ridge;
    if (static_cast<double>(w[0]) < -indefinite_ * lmax) return Outcome::kIndefinite;
    const double exponent = -0.5 / o_.p;  // X = (Z f^(1/2)) (Z f^(1/2))^T
    const double cut = o_.pinv_threshold * lmax;
    double lowest = std::numeric_limits<double>::infinity();  // smallest eigenvalue inverted
    for (int j = 0; j < n; ++j) {
      const double lam = std::max(static_cast<double>(w[j]), 0.0);
      double f;
      if (o_.pinv_threshold > 0) {
        const bool keep = lam > cut && lam > 0;
        f = keep ? std::pow(lam, exponent) : 0.0;
        if (keep) lowest = std::min(lowest, lam);
      } else {
        f = lam + ridge > 0 ? std::pow(lam + ridge, exponent) : 0.0;
        lowest = std::min(lowest, lam + ridge);
      }
      if (!std::isfinite(f)) return Outcome::kFail;
      U* col = z + static_cast<size_t>(j) * n;
      for (int i = 0; i < n; ++i) col[i] = static_cast<U>(col[i] * f);
    }
    const U one = U(1), zero = U(0);
    Lapack<U>::syrk("L", "N", &n, &n, &one, z, &n, &zero, X, &n);
    mirror_lower(n, X);
    if (!all_finite(X, sq<U>(n))) return Outcome::kFail;
    const double top = o_.pinv_threshold > 0 ? lmax : lmax + ridge;
    const bool resolved = std::isinf(lowest) ? o_.pinv_threshold > 0 : lowest > resolved_ * top;
    return resolved ? Outcome::kOk : Outcome::kIllConditioned;
  }

  Outcome eigh(const T* A, double c, double* lmax, double* ridge, T* X, Scratch<T>& sc) const {
    sc.for_eigh();
    return eigh_in<T, T>(A, c, lmax, ridge, X, sc.tmp.data(), sc.m.data(), sc.w.data(), *sc.eig);
  }

  Outcome eigh_double(const T* A, double c, double* lmax, double* ridge, T* X, Scratch<T>& sc) const {
    const int n = n_;
    sc.for_eigh_double();
    double* xd = sc.x64.data();
    const Outcome outcome = eigh_in<double, T>(A, c, lmax, ridge, xd, sc.a64.data(), sc.z64.data(),
                                               sc.w64.data(), *sc.eig64);
    if (outcome == Outcome::kFail || outcome == Outcome::kIndefinite) return outcome;
    for (size_t i = 0; i < sq<double>(n); ++i) X[i] = static_cast<T>(xd[i]);
    return all_finite(X, sq<T>(n)) ? outcome : Outcome::kFail;
  }

  // Coupled iteration; returns the best iterate in X and whether it passed certify().
  // Buffers rotate by pointer (no copies of n x n matrices inside the loop).
  Outcome iterate(const T* A, double lmax, double ridge, bool third_order, T* X,
                  double* residual, int* iterations, Scratch<T>& sc) const {
    const int n = n_;
    const int p = static_cast<int>(o_.p);
    const size_t nn = sq<T>(n);
    T *x = sc.x.data(), *xn = sc.best.data(), *m = sc.m.data(), *mn = sc.tmp.data();
    T *t = sc.t.data(), *b0 = sc.tp.data(), *b1 = sc.sqr.data();
    // Scaled start: the eigenvalues of M_0 = z (A + ridge I) lie in (0, (1 + p) / 2], inside
    // the region (0, p + 1) where the coupled iteration converges (Guo and Higham 2006).
    const double z = (1.0 + o_.p) / (2.0 * (lmax + ridge));
    if (!(z > 0) || !std::isfinite(z)) return Outcome::kFail;
    set_identity(n, static_cast<T>(std::pow(z, 1.0 / o_.p)), x);
    for (size_t i = 0; i < nn; ++i) m[i] = static_cast<T>(z * A[i]);
    for (int i = 0; i < n; ++i) m[i + static_cast<size_t>(i) * n] += static_cast<T>(z * ridge);
    Distance dist = distance_to_identity(n, m);
    const double c2 = (o_.p + 1.0) / (2.0 * o_.p * o_.p);
    const T inv_p = static_cast<T>(1.0 / o_.p);
    // Scaled steps (second-order iteration). One step maps each eigenvalue mu of M to
    // f(mu) = mu ((p + 1 - mu) / p)^p <= 1, so after the first step every eigenvalue lies in
    // [mu_min, 1]. Scaling M by c (and X by c^(1/p), keeping M = X^p (A + ridge I)) with
    // f(c lo) = f(c), i.e. c = (p + 1)(r - 1) / (r - lo) for r = lo^(-1/p), is the minimax choice
    // for the interval [lo, 1]: it lifts the smallest eigenvalues by ~c ((p+1)/p)^p per step
    // instead of ((p+1)/p)^p. Safety needs only the top: c < p + 1 keeps every eigenvalue inside
    // the convergence region (0, p + 1) whatever lo is. lo starts from a Lanczos upper bound on
    // lambda_min(A) and is carried through the same maps, so it stays an over-estimate of
    // mu_min: c errs small, towards the unscaled iteration, never spoiling eigenvalues near 1 (an
    // under-estimate would: c too large maps them towards 0). Measured iterations at kappa 1e4:
    // 13 -> 10; never more than unscaled. Eigenvalues near 1 may move away from 1 for a step, so
    // the monotone stop below applies to unscaled steps only.
    const double pp = o_.p;
    auto f = [pp](double mu) { return mu * std::pow((pp + 1.0 - mu) / pp, pp); };
    double lo = third_order ? 0.0 : z * (std::max(lanczos_lambda_min(n, A, 20), 0.0) + ridge);
    double hi = z * (lmax + ridge);
    const bool scaling = lo > 0 && std::isfinite(lo);
    int k = 0;
    while (k < o_.max_iters && dist.inf > tol_) {
      double c = 1.0;
      if (scaling && k > 0 && lo < 0.5) {
        const double r = std::pow(lo, -1.0 / pp);
        c = std::min((pp + 1.0) * (r - 1.0) / (r - lo), 0.9 * (pp + 1.0));
      }
      const bool scaled = c > 1.0;
      // T_k from E = I - M_k: (p+1)/p I - c M/p, or I + E/p + (p+1)/(2p^2) E^2.
      if (third_order) {
        for (size_t i = 0; i < nn; ++i) t[i] = -m[i];
        for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += T(1);
        symmetric_square(n, t, b0);
        for (size_t i = 0; i < nn; ++i) t[i] = t[i] * inv_p + static_cast<T>(c2) * b0[i];
      } else {
        const T cp = static_cast<T>(c / pp);
        for (size_t i = 0; i < nn; ++i) t[i] = -m[i] * cp;
      }
      for (int i = 0; i < n; ++i) t[i + static_cast<size_t>(i) * n] += T(1) + (third_order ? T(0) : inv_p);
      // X, M and T are polynomials in A: symmetric and commuting in exact arithmetic. X T is
      // formed as its lower triangle, mirrored (symmetric_product, ~0.56 of a GEMM); T^p M by a
      // full GEMM, symmetrised: averaging its two roundings halves the error that accumulates in
      // M (lower-only there measured ~1.8x the root's error at d = 1024, kappa = 1e4), and an
      // exactly symmetric M keeps T symmetric so its powers can be taken by SYRK consistently.
      symmetric_product(n, x, t, xn);
      const T* tp = power(n, t, p, b0, b1, mn);
      matmul(n, tp, m, mn);
      symmetrise(n, mn);
      if (scaled) {
        const T cx = static_cast<T>(std::pow(c, 1.0 / pp)), cm = static_cast<T>(c);
        for (size_t i = 0; i < nn; ++i) xn[i] *= cx;
        for (size_t i = 0; i < nn; ++i) mn[i] *= cm;
      }
      // The eigenvalues' new lower bound (f increases on (0, 1], and f(c lo) = f(c hi) when
      // balanced; the first step's top is the estimate (p + 1) / 2).
      lo = std::min(f(c * lo), f(std::min(c * hi, pp + 1.0)));
      hi = 1.0;
      const Distance next = distance_to_identity(n, mn);
      ++k;
      // Unscaled, each eigenvalue of M moves monotonically towards 1 in exact arithmetic, so
      // ||M - I||_F does too: when it stops decreasing, rounding has taken over; keep X_k.
      // Scaled, the eigenvalues stay in [0, 1]: ||M - I||_F <= sqrt(n) up to rounding.
      if (!std::isfinite(next.frobenius)) break;
      if (scaled ? next.frobenius > 1.01 * std::sqrt(static_cast<double>(n)) + 1e-3
                 : next.frobenius >= dist.frobenius) {
        break;
      }
      std::swap(x, xn);
      std::swap(m, mn);
      dist = next;
    }
    *iterations = k;
    std::memcpy(X, x, nn * sizeof(T));
    if (!all_finite(X, nn)) return Outcome::kFail;
    const Certificate cert = certify(A, ridge, X, sc);
    *residual = cert.residual;
    // lambda_max(P) ~ 1 / lambda_min(A + ridge I), so lambda_min(A) ~ 1 / mu - ridge: an
    // estimate (a Rayleigh quotient of P, at most its lambda_max), flagging only a clearly
    // negative eigenvalue that the ridge would hide from the iteration.
    const double kappa = (lmax + ridge) * cert.mu;
    if (!(cert.residual <= accept_for(kappa))) return Outcome::kFail;
    if (cert.mu > 0 && 1.0 / cert.mu - ridge < -indefinite_ * lmax) return Outcome::kIndefinite;
    // A condition beyond what T resolves is the matrix's property, not the method's: every
    // method of the chain would report it, and the iterate that passed the residual test is
    // kept (it is at least as accurate as an eigh root in T there, whose eigenvalues below
    // n eps lambda_max are rounding).
    return resolved_ * kappa < 1.0 ? Outcome::kOk : Outcome::kIllConditioned;
  }

  struct Certificate {
    double residual = -1.0;  // ||X^p (A + ridge I) - I||_inf, evaluated in T
    double mu = 0.0;         // power-step estimate of lambda_max(X^p), <= the true one
  };

  // The a-posteriori test of a root: P = X^p (SYRK squarings), R = (A + ridge I) P, whose column
  // sums are the row sums of P (A + ridge I) - I (both factors symmetric): log2 p + 2 GEMMs,
  // plus O(n^2) power steps on P for the condition estimate. Non-integer p: not computed.
  Certificate certify(const T* A, double ridge, const T* X, Scratch<T>& sc) const {
    Certificate cert;
    if (o_.p != std::floor(o_.p)) return cert;
    const int n = n_;
    const size_t nn = sq<T>(n);
    sc.for_iterations();
    T* s = sc.t.data();
    std::memcpy(s, A, nn * sizeof(T));
    for (int i = 0; i < n; ++i) s[i + static_cast<size_t>(i) * n] += static_cast<T>(ridge);
    const T* pw = power(n, X, static_cast<int>(o_.p), sc.tp.data(), sc.sqr.data(), sc.tmp.data());
    T* r = sc.m.data();
    matmul(n, s, pw, r);
    cert.residual = distance_to_identity(n, r).inf;
    cert.mu = power_lambda_max(n, pw, sc.v, sc.av);
    return cert;
  }

  int n_;
  Options o_;
  Method method_;
  bool relative_ridge_;
  double eps_ = 0, tol_ = 0, resolved_ = 0, indefinite_ = 0;
  int scale_step_ = 1;
};

}  // namespace

template <typename T>
bool inverse_root(const Shape& shape, const Args<T>& args, const Options& options) {
  // n is a LAPACK int inside the solver.
  if (shape.n < 1 || shape.n > std::numeric_limits<int>::max() || shape.batch < 0 || !(options.p > 0)) {
    return false;
  }
  const auto method = static_cast<Method>(options.method);
  if (method != Method::kAuto && method != Method::kEigh && method != Method::kNewton &&
      method != Method::kNewton3) {
    return false;
  }
  const auto ridge = static_cast<Ridge>(options.ridge);
  if (ridge != Ridge::kRelative && ridge != Ridge::kAbsolute) return false;
  if ((method == Method::kNewton || method == Method::kNewton3) &&
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
