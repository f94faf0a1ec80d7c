// Polar factor (Muon's orthogonalisation): the orthogonal factor Q = U V^T of A = U S V^T
// (m x n), by an odd-polynomial Newton-Schulz iteration with a coefficient schedule, an optional
// converging phase, and the exact SVD as oracle and fallback.
//
// Iteration. With k = min(m, n) the iteration runs on the wide orientation X (k x K, K = max(m,
// n); X = A or A^T), so that the Gram matrix is the small k x k one:
//   G = X X^T (SYRK),  G2 = G G^T = G^2 (SYRK, G symmetric),  B = b G + c G2,
//   X <- a X + B X  (one GEMM),
// i.e. each singular value s goes to p(s) = a s + b s^3 + c s^5 (odd polynomials commute with the
// SVD). One table row (a, b, c) per step comes from the caller (the classic quintic, the minimax
// Polar Express schedule and user tables are built in linalg_core/polar.py).
// Start scaling: A is scaled by a power of two to a largest entry in [1/2, 1) (exact), then by
// 1 / bound with bound >= ||A||_2 the smaller of ||G0^2||_F^(1/4) = (sum s_i^8)^(1/8) (G0 and
// G0^2 are the first step's products, reused) and sqrt(||A||_1 ||A||_inf), each widened by its
// rounding allowance: the scaled singular values lie in (0, 1] up to rounding, where every
// schedule is designed to stay convergent.
// Converging phase (tol > 0): cubic Newton-Schulz steps X <- 1.5 X - 0.5 G X, which take every
// singular value in (0, sqrt(3)) to 1 (quadratically near 1), until the certified residual is at
// most tol, max_iters steps have run, or the bound stops halving below 0.1 (the rounding floor);
// each step's Gram matrix serves the residual check too.
// Wide iterates (K >= 2k, at least two steps) run the schedule on the Gram side instead:
// G <- P G P with P = a I + b G + c G^2, Q <- P Q on k x k matrices, X = Q X_0 once at the end.
// Checks (the status is earned by them, never assumed): G = Q Q^T of the result, E = G - I,
//   residual: max|s_i(Q)^2 - 1| = ||E||_2 <= r := min(||E||_F, ||E^(2^j)||_F^(2^-j)) + delta
//     (normalised repeated squaring by SYRK, overestimating ||E||_2 by at most k^(2^-(j+1)),
//     j chosen for a factor <= 1.1; delta = 4 (sqrt(K) + sqrt(k)) eps is the rounding allowance
//     of forming G in T, in the probabilistic rounding model), so s_i(Q) lies in
//     [sqrt(1 - r), sqrt(1 + r)] and the reported residual max(1 - sqrt(1 - r), sqrt(1 + r) - 1)
//     bounds max|s_i(Q) - 1|;
//   band (fixed schedules): Cholesky of G - lower^2 I and of upper^2 I - G both succeed, which
//     certifies every s_i(Q) in [lower, upper] (up to O(k eps) rounding).
// Arrays are row-major and batch-major; no Python, no XLA types.
#pragma once

#include <cstdint>

namespace linalg_core::polar {

// Status codes, exported by the binding as `polar_status` (read by linalg_core/polar.py).
#define LC_POLAR_STATUS(X)                                                                      \
  X(ok, 0)               /* the check for the request passed (band, tol, or the SVD's tol) */  \
  X(non_finite_input, 1) /* a held NaN/Inf: q = 0 */                                           \
  X(zero_input, 2)       /* a = 0: q = 0 (every singular value of q is 0; residual 1) */       \
  X(not_converged, 3)    /* the check failed and no fallback was asked for: q is the finite   \
                            last iterate, its certified bounds reported */                     \
  X(fell_back, 4)        /* the check failed: q is the SVD polar factor */                     \
  X(failed, 5)           /* the SVD failed or the iterate left the convergence region: q = 0 */

enum class Status : int32_t {
#define LC_POLAR_ENUM(name, value) name = value,
  LC_POLAR_STATUS(LC_POLAR_ENUM)
#undef LC_POLAR_ENUM
};

// Method codes (which computation produced q), exported as `polar_methods`.
#define LC_POLAR_METHODS(X) \
  X(newton_schulz, 0)       \
  X(svd, 1)

enum class Method : int32_t {
#define LC_POLAR_ENUM(name, value) name = value,
  LC_POLAR_METHODS(LC_POLAR_ENUM)
#undef LC_POLAR_ENUM
};

// The scalar options, one list for the FFI adapter and the binding (each decodes it by name).
#define LC_POLAR_OPTIONS(X)                                                                       \
  X(int32_t, svd)        /* 1: the exact SVD polar factor, no iteration */                        \
  X(int32_t, converge)   /* 1: the converging phase after the schedule */                         \
  X(double, tol)         /* residual target: ok / converged when residual <= tol */               \
  X(int32_t, max_iters)  /* converging steps at most */                                           \
  X(int32_t, fallback)   /* 1: the SVD polar factor when the check fails */                       \
  X(double, band_lower)  /* fixed schedule: ok needs every s_i(q) >= band_lower (certified) */    \
  X(double, band_upper)  /* ... and <= band_upper */

struct Options {
#define LC_POLAR_FIELD(type, name) type name{};
  LC_POLAR_OPTIONS(LC_POLAR_FIELD)
#undef LC_POLAR_FIELD
};

struct Shape {
  int64_t batch = 1;
  int64_t m = 0, n = 0;
};

template <typename T>
struct Args {
  const T* a;              // batch x m x n
  const double* schedule;  // steps x 3: (a, b, c) per step
  int64_t steps;
  T* q;                    // batch x m x n
  T* residual;             // batch: certified bound on max_i |s_i(q) - 1|
  T* sigma_lower;          // batch: certified lower bound on the s_i(q)
  T* sigma_upper;          // batch: certified upper bound on the s_i(q)
  T* norm_bound;           // batch: the upper bound on ||a||_2 used for the start scaling
  int32_t* iterations;     // batch: Newton-Schulz steps run
  int32_t* method;         // batch: Method
  int32_t* status;         // batch: Status
};

// False for an invalid shape or options (values are reported in args.status).
template <typename T>
bool polar(const Shape& shape, const Args<T>& args, const Options& options);

}  // namespace linalg_core::polar
