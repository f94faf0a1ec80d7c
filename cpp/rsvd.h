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
// Arrays are row-major and batch-major; no Python, no XLA types.
#pragma once

#include <cstdint>

#include "codes.h"

namespace linalg_core::rsvd {

struct Shape {
  int64_t batch = 1;
  int64_t m = 0, n = 0;    // A is m x n (m = n for eigh)
  int64_t k = 0;           // kept singular/eigen pairs
  int64_t l = 0;           // subspace dimension, k <= l <= min(m, n)
  int64_t probes = 0;      // columns of the error-estimate probe matrix (0: no estimate)
  int power_iters = 0;
  bool nystrom = false;    // eigh: the stabilised Nystrom approximation (PSD A) instead of
                           // Rayleigh-Ritz (which remains the fallback)
};

// Status codes, exported as `rsvd_status` (RSVD_STATUS in linalg_core/rsvd.py). non_symmetric is
// set by randomized_eigh's input check (linalg_core/rsvd.py), before the kernel runs.
#define LC_RSVD_STATUS(X)                   \
  X(kOk, ok, 0)                             \
  X(kNonFiniteInput, non_finite_input, 1)   \
  X(kLapackFailure, lapack_failure, 2)      \
  X(kNonSymmetric, non_symmetric, 3)

enum class Status : int32_t { LC_RSVD_STATUS(LC_ENUMERATOR) };

template <typename T>
struct SvdArgs {
  const T* a;       // batch x m x n
  const T* omega;   // batch x n x l
  const T* probes;  // batch x n x probes (may be null when probes = 0)
  T* u;             // batch x m x k
  T* s;             // batch x k, descending
  T* vt;            // batch x k x n
  T* error;         // batch: the a-posteriori bound on ||A - Q Q^T A||_2 (0 without probes)
  int32_t* status;  // batch
};

template <typename T>
struct EighArgs {
  const T* a;       // batch x n x n, symmetric
  const T* omega;   // batch x n x l
  const T* probes;  // batch x n x probes
  T* eigvals;       // batch x k, descending
  T* eigvecs;       // batch x n x k
  T* error;         // batch
  int32_t* status;  // batch
  int32_t* method;  // batch: 1 Rayleigh-Ritz, 2 Nystrom (the Python layer's RSVD_METHODS codes)
};

template <typename T>
bool svd(const Shape& shape, const SvdArgs<T>& args);

template <typename T>
bool eigh(const Shape& shape, const EighArgs<T>& args);

}  // namespace linalg_core::rsvd
