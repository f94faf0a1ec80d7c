// Inverse p-th roots of symmetric positive (semi)definite matrices, with a fallback chain.
//
// X = (A + eps I)^(-1/p) for batches of n x n matrices (row-major; symmetric, so the layout does
// not matter), by:
//   eigh      exact: A = V diag(lambda) V^T (sytrd + stedc + blocked back-transformation,
//             tridiagonal_eigh.h), X = V diag((lambda + eps)^(-1/p)) V^T;
//   newton    the coupled Newton iteration (Iannazzo 2006; Guo and Higham 2006):
//               X_0 = z^(1/p) I, M_0 = z (A + eps I), z = (1 + p) / (2 lambda_max),
//               T_k = ((p + 1) I - M_k) / p,  X_{k+1} = X_k T_k,  M_{k+1} = T_k^p M_k,
//             M_k -> I and X_k -> (A + eps I)^(-1/p), quadratically; all GEMMs;
//   newton3   the third-order coupled variant: T_k = I + E/p + (p + 1) E^2 / (2 p^2), E = I - M_k
//             (the second-order Taylor polynomial of M^(-1/p) at I), cubically.
// The iterations stop on ||M - I||_inf <= tol or when ||M - I||_F stops decreasing (it decreases
// monotonically in exact arithmetic, so that marks the rounding floor; the better iterate is kept).
// M drifts from X^p (A + eps I) in low precision, so the returned X is then checked on its true
// residual ||X^p (A + eps I) - I||_inf (log2 p + 2 GEMMs); above `accept`, or non-finite, the
// chain falls back: newton -> newton3 -> eigh -> eigh in double -> the previous root (when given).
// The eigh methods are certified by the eigensolver's backward stability: finite output and a
// condition number the input dtype resolves.
// Input contract, checked first in O(n^2): finite A and previous, A symmetric to 8 n eps max|A|.
// Scale: A (and an absolute ridge) is multiplied by a power of two c bringing max|A| near 1
// (a multiple of p in the exponent for integer p, so c^(1/p) is exact too) and the root by
// c^(1/p): no overflow or underflow inside for any finite, normal-range A. The previous root is
// not used as a starting point: the coupled iteration's invariant M_k = X_k^p A needs X_0 to
// commute with A, which last step's root does not, and the uncoupled Newton iteration diverged
// from it in tests (||X_0^p A - I|| = 2e-3 grew to 1e21 in five steps at n = 32, p = 4).
// lambda_max (for the relative ridge and the scaled start) comes from the eigenvalues for eigh and
// from a few power steps (relative change 1e-3, at most 50) started from A 1 for the iterations.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codes.h"

namespace linalg_core::roots {

// Method codes, exported as `root_methods` (ROOT_METHODS). kAuto: eigh on the CPU (an n x n
// eigendecomposition costs a few GEMMs, the iterations 10-30 iterations of 2 GEMMs + log2(p)
// SYRKs each).
#define LC_ROOT_METHODS(X)                                                                       \
  X(kAuto, auto, -1)                                                                            \
  X(kEigh, eigh, 0)                                                                             \
  X(kNewton, newton, 1)                                                                         \
  X(kNewton3, newton3, 2)                                                                       \
  X(kEighDouble, eigh_float64, 3) /* fallback only: eigh in double precision for float input */ \
  X(kPrevious, previous, 4)       /* fallback only: the caller's previous root */

enum class Method : int32_t { LC_ROOT_METHODS(LC_ENUMERATOR) };

// Status codes, exported as `root_status` (ROOT_STATUS in linalg_core/roots.py).
#define LC_ROOT_STATUS(X)                                                                         \
  X(kOk, ok, 0)                                                                                   \
  X(kNonFiniteInput, non_finite_input, 1) /* A held NaN/Inf: the previous root (or 0) returned */ \
  X(kFellBack, fell_back, 2)  /* the requested method failed; a later one in the chain succeeded */ \
  X(kFailed, failed, 3)       /* every method failed: the previous root (or 0) is returned */     \
  /* lambda_min + ridge <= n eps(T) (lambda_max + ridge): the input dtype does not resolve the     \
     smallest eigenvalues; the (finite) root is returned uncertified */                           \
  X(kIllConditioned, ill_conditioned, 4)                                                          \
  /* max|A - A^T| > 8 n eps(T) max|A|: the previous root (or 0) is returned */                    \
  X(kNotSymmetric, not_symmetric, 5)                                                              \
  /* lambda_min < -16 n eps(T) lambda_max: the previous root (or 0) */                            \
  X(kIndefinite, indefinite, 6)

enum class Status : int32_t { LC_ROOT_STATUS(LC_ENUMERATOR) };

// How `eps` is added (the `ridge` option), exported as `root_ridges`.
#define LC_ROOT_RIDGES(X)                          \
  X(kRelative, relative, 0) /* eps * lambda_max */ \
  X(kAbsolute, absolute, 1) /* eps itself */

enum class Ridge : int32_t { LC_ROOT_RIDGES(LC_ENUMERATOR) };

// The scalar options, one list of (type, name, default) that the FFI adapter and the binding both
// decode by name (decode_options, from LC_DEFINE_OPTIONS in cpp/codes.h) and the binding exports
// as `root_options`: the keys of the one attribute dict linalg_core/roots.py builds. Names are
// inverse_root's keywords; enum-valued options travel as their int32 codes.
#define LC_ROOT_OPTIONS(X)                                                                       \
  /* root order, > 0 */                                                                          \
  X(double, p, 2)                                                                                \
  /* ridge size (see `ridge`) */                                                                 \
  X(double, eps, 1e-6)                                                                           \
  /* Ridge: eps * lambda_max estimate (relative) or eps itself (absolute) */                     \
  X(int32_t, ridge, static_cast<int32_t>(Ridge::kRelative))                                      \
  /* > 0: eigenvalues below threshold * lambda_max are dropped (pseudo-inverse root, no ridge);  \
     eigh methods only */                                                                        \
  X(double, pinv_threshold, 0)                                                                   \
  /* the Method requested: auto, eigh, newton or newton3 */                                      \
  X(int32_t, method, static_cast<int32_t>(Method::kAuto))                                        \
  /* iteration limit, >= 1 */                                                                    \
  X(int32_t, max_iters, 100)                                                                     \
  /* iteration stop; 0 = n eps(T) (the Frobenius rule stops at the floor) */                     \
  X(double, tol, 0)                                                                              \
  /* true residual above which an iteration falls back; 0 = the attainable floor                 \
     min(0.5, max(sqrt(eps), 64 n eps, 4 n eps kappa)), eps = eps(T), kappa estimated            \
     (see accept_for) */                                                                         \
  X(double, accept, 0)                                                                           \
  /* 1, float input: run eigh in double from the start */                                        \
  X(int32_t, accumulate_float64, 0)                                                              \
  /* 1: also compute ||X^p (A + eps I) - I||_inf (p integer) */                                  \
  X(int32_t, true_residual, 0)                                                                   \
  /* 1: args.previous is given (the adapters pass nullptr otherwise) */                          \
  X(int32_t, has_previous, 0)

LC_DEFINE_OPTIONS(LC_ROOT_OPTIONS)

struct Shape {
  int64_t batch = 1;
  int64_t n = 0;
};

template <typename T>
struct Args {
  const T* a;          // batch x n x n
  const T* previous;   // batch x n x n, or nullptr: the last link of the fallback chain
  T* root;             // batch x n x n
  T* residual;         // batch: ||X^p (A + eps I) - I||_inf of the returned root for the
                       // iterations (and for eigh when true_residual), else -1 (not computed: the
                       // method is exact up to its backward error)
  T* lambda_max;       // batch: the power-iteration estimate
  T* ridge;            // batch: the ridge eps actually added
  int32_t* iterations; // batch
  int32_t* method;     // batch: Method that produced root
  int32_t* status;     // batch: Status
};

// False for an invalid shape or options (n beyond a LAPACK int, p <= 0, a method or ridge code
// outside the request set, a non-integer or > 64 p for the iterations); values go to args.status.
template <typename T>
bool inverse_root(const Shape& shape, const Args<T>& args, const Options& options);

}  // namespace linalg_core::roots
