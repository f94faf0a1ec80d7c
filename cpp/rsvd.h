// Randomized range finder, SVD and symmetric eigendecomposition (Halko, Martinsson, Tropp 2011).
//
// For A (m x n) and a test matrix Omega (n x l, l = k + oversampling, l <= min(m, n)):
//   Y = A Omega, then `power_iters` times Y = A lu(A^T lu(Y)) with lu(Y) the P L factor of a
//   pivoted LU (normalisation: without it the columns collapse onto the top singular vector in
//   floating point), and Q = orth(Y) by Householder QR;
//   svd:  B = Q^T A (l x n) = U_B S V^T (gesdd), A ~ (Q U_B) S V^T, the top k kept;
//   eigh: A symmetric, Rayleigh-Ritz: T = Q^T A Q (l x l) = W diag(mu) W^T, eigenpairs (mu, Q W),
//         the k largest kept.
// Omega comes from the caller (a seeded generator or a JAX key in the Python layer; a previous
// basis in its first columns warm-starts the subspace), so the kernel is deterministic.
// A-posteriori error: with r Gaussian probes w_j, ||(I - Q Q^T) A|| <= 10 sqrt(2/pi) max_j
// ||(I - Q Q^T) A w_j|| with probability at least 1 - 10^-r (HMT Lemma 4.1).
// Tolerance mode (tol > 0, r > 0): A W is taken in the first pass; after the first product and
// after each power iteration Q = orth(Y) by Householder QR, Z = A^T Q (the next power step's
// product, and B^T / A Q when it is the last), and the iterations stop once the bound is
// <= tol ||Z||_2 (||Z||_2 = ||Q^T A||_2 <= ||A||_2: the largest singular value of B); at most
// power_iters of them, the count reported, status max_iters when the bound was not met.
// Arrays are row-major and batch-major; no Python, no XLA types.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codes.h"

namespace linalg_core::rsvd {

struct Shape {
  int64_t batch = 1;
  int64_t m = 0, n = 0;    // A is m x n (m = n for eigh)
  int64_t l = 0;           // subspace dimension, k <= l <= min(m, n)
  int64_t probes = 0;      // columns of the error-estimate probe matrix (0: no estimate)
};

// Method codes (which computation answered), exported as `rsvd_methods` (RSVD_METHODS).
#define LC_RSVD_METHODS(X)                 \
  X(kSvd, svd, 0)                          \
  X(kRayleighRitz, rayleigh_ritz, 1)       \
  X(kNystrom, nystrom, 2) /* PSD A only; Rayleigh-Ritz stays its fallback */

enum class Method : int32_t { LC_RSVD_METHODS(LC_ENUMERATOR) };

// The scalar options of both kernels, one list of (type, name, default) that the FFI adapters and
// the binding decode by name (decode_options, from LC_DEFINE_OPTIONS in cpp/codes.h) and the
// binding exports as `rsvd_options`: the keys of the attribute dict linalg_core/rsvd.py builds.
// Names are the public arguments; enum-valued options travel as their int32 codes.
#define LC_RSVD_OPTIONS(X)                                                                      \
  /* kept singular/eigen pairs, 1 <= k <= l */                                                  \
  X(int64_t, k, 1)                                                                              \
  /* normalised power iterations, >= 0 */                                                       \
  X(int64_t, power_iters, 2)                                                                    \
  /* > 0: stop the power iterations once the bound <= tol ||Q^T A||_2 (power_iters is then the  \
     maximum; needs probes > 0); 0: exactly power_iters of them */                              \
  X(double, tol, 0)                                                                             \
  /* the Method requested: svd for svd(); rayleigh_ritz or nystrom (the stabilised Nystrom      \
     approximation, PSD A, Rayleigh-Ritz its fallback) for eigh() */                            \
  X(int32_t, method, static_cast<int32_t>(Method::kSvd))

LC_DEFINE_OPTIONS(LC_RSVD_OPTIONS)

// Status codes, exported as `rsvd_status` (RSVD_STATUS in linalg_core/rsvd.py). non_symmetric is
// set by randomized_eigh's input check (linalg_core/rsvd.py), before the kernel runs.
#define LC_RSVD_STATUS(X)                                              \
  X(kOk, ok, 0)                                                        \
  X(kNonFiniteInput, non_finite_input, 1)                              \
  X(kLapackFailure, lapack_failure, 2)                                 \
  X(kNonSymmetric, non_symmetric, 3)                                   \
  /* tol > 0 not met after power_iters: the best answer is returned */ \
  X(kMaxIters, max_iters, 4)

enum class Status : int32_t { LC_RSVD_STATUS(LC_ENUMERATOR) };

template <typename T>
struct SvdArgs {
  const T* a;           // batch x m x n
  const T* omega;       // batch x n x l
  const T* probes;      // batch x n x probes (may be null when probes = 0)
  T* u;                 // batch x m x k
  T* s;                 // batch x k, descending
  T* vt;                // batch x k x n
  T* error;             // batch: the a-posteriori bound on ||A - Q Q^T A||_2 (0 without probes)
  int32_t* iterations;  // batch: power iterations run
  int32_t* status;      // batch
};

template <typename T>
struct EighArgs {
  const T* a;           // batch x n x n, symmetric
  const T* omega;       // batch x n x l
  const T* probes;      // batch x n x probes
  T* eigvals;           // batch x k, descending
  T* eigvecs;           // batch x n x k
  T* error;             // batch
  int32_t* iterations;  // batch
  int32_t* status;      // batch
  int32_t* method;      // batch: the Method that answered (rayleigh_ritz or nystrom)
};

// False for an invalid shape or options (a dimension, k or power_iters beyond a LAPACK int, k or l
// out of range, a method code the kernel does not compute, tol negative, not finite or > 0
// without probes); values go to args.status.
template <typename T>
bool svd(const Shape& shape, const SvdArgs<T>& args, const Options& options);

template <typename T>
bool eigh(const Shape& shape, const EighArgs<T>& args, const Options& options);

}  // namespace linalg_core::rsvd
