// Kronecker power iteration (Van Loan and Pitsianis 1993; Shampoo's preconditioner as one step,
// "A new perspective on Shampoo's preconditioner", Sec. 3): the best Frobenius-norm Kronecker
// approximation of H = E[vec(G) vec(G)^T] from samples G_1..G_N (m x n) without forming the
// mn x mn matrix H:
//   L <- (1/N) sum_i G_i R G_i^T,  R <- (1/N) sum_i G_i^T L G_i,  each normalised to unit
//   Frobenius norm; the first step takes both from the identities (E[G G^T], E[G^T G]:
//   Shampoo's statistics), later steps alternate (R from the new L);
// power iteration on the rearranged matrix of H: the factors tend to its top singular vectors,
// sigma to sigma_1, H ~ sigma_1 R (x) L (column-major vec, (A (x) B) vec(G) = vec(B G A^T)),
// and the cosine similarity to H does not decrease after the first step.
// Each half-step sums per-sample products with the other factor's PSD square root:
//   L = (1/N) sum_i (G_i R^(1/2)) (G_i R^(1/2))^T,  R = (1/N) sum_i (L^(1/2) G_i)^T (L^(1/2) G_i),
// one GEMM and one accumulating SYRK per sample (N m n (2 n + m) and N m n (2 m + n) flops), the
// samples split across the cores on one BLAS thread each; the first step's sums need no GEMM.
// Scale safety: each batch element's samples are scaled by a power of two (exact) to a largest
// entry in [1/2, 1) when it lies outside [2^-e, 2^e], e = max_exponent / 4 of T (there every sum
// of products stays inside T's range with full precision), and the results scaled back in double.
// Before the status is kOk the answer is checked: finite factors, and sigma inside the bounds every
// step of the iteration obeys, tr(H) / sqrt(m n) <= sigma <= tr(H) (sigma_1 >= <R(H), vec(I) vec(I)^T>
// / sqrt(m n), the estimates never decrease, and sigma_1 <= ||H||_F <= tr(H) for PSD H).
// Arrays are row-major and batch-major; no Python, no XLA types.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codes.h"

namespace linalg_core::kron {

// Status codes, exported as `kron_status` (KRON_STATUS in linalg_core/kron.py).
#define LC_KRON_STATUS(X)                                                                        \
  X(kOk, ok, 0)                                                                                  \
  /* the samples held NaN/Inf: zero factors, sigma and change 0 */                               \
  X(kNonFiniteInput, non_finite_input, 1)                                                        \
  /* sigma (quadratic in the samples) lies outside T's normal range: it is clamped to it; the    \
     factors (linear in the samples) are accurate, or zero where they overflow T themselves */   \
  X(kOutOfRange, out_of_range, 2)                                                                \
  /* an eigensolver failed or the a-posteriori check did not hold: zero outputs */               \
  X(kFailed, failed, 3)

enum class Status : int32_t { LC_KRON_STATUS(LC_ENUMERATOR) };

struct Shape {
  int64_t batch = 1;
  int64_t samples = 0;  // N
  int64_t m = 0, n = 0;
};

// The scalar options of approx(), one list of (type, name, default) that the FFI adapter and the
// binding decode by name (decode_options, from LC_DEFINE_OPTIONS in cpp/codes.h) and the binding
// exports as `kron_options`: the keys of the attribute dict linalg_core/kron.py builds. Names are
// kron_approx's keywords.
#define LC_KRON_OPTIONS(X)                                                        \
  /* power-iteration steps, >= 1 (the first step gives Shampoo's factors) */     \
  X(int64_t, steps, 1)

LC_DEFINE_OPTIONS(LC_KRON_OPTIONS)

template <typename T>
struct Args {
  const T* samples;  // batch x N x m x n
  T* left;           // batch x m x m: sqrt(sigma) L
  T* right;          // batch x n x n: sqrt(sigma) R
  T* sigma;          // batch: the top-singular-value estimate after the last step
  T* change;         // batch: ||R_k - R_{k-1}||_F of the unit-norm iterates (last step)
  int32_t* status;   // batch: Status
};

// False only for an invalid shape or options (N, m, n or steps beyond a LAPACK int, steps < 1);
// value-dependent problems are reported in args.status.
template <typename T>
bool approx(const Shape& shape, const Args<T>& args, const Options& options);

// tr(H (R (x) L)) / (||H||_F ||L||_F ||R||_F) for H = E[vec(G) vec(G)^T], from the samples:
// tr(H (R (x) L)) = (1/N) sum_i <G_i, L G_i R>_F and ||H||_F^2 = ||Gram||_F^2 / N^2 with
// Gram_ij = <G_i, G_j>_F. Writes batch values into `cosine`. Invariant under scaling of each
// argument (each is scaled by a power of two to a largest entry of order one first); NaN where an
// argument holds NaN/Inf, 0 where one is zero.
template <typename T>
bool cosine(const Shape& shape, const T* samples, const T* left, const T* right, T* cosine);

}  // namespace linalg_core::kron
