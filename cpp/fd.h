// Frequent Directions (FD) sketch kernels: update, and the escaped-mass compensated inverse root.
//
// State of one sketch: orthonormal basis U (d x l), eigenvalues lambda (l, descending, >= 0),
// cumulative escaped mass rho. One update with decay beta in (0, 1] and a PSD term
// (a factor G, d x r, term = G G^T, or a dense symmetric d x d matrix) computes the top l+1
// eigenpairs (mu_i, v_i) of C = beta U diag(lambda) U^T + term and sets
//   rho_t = mu_{l+1},  U <- [v_1..v_l],  lambda_i <- mu_i - rho_t,  rho <- beta rho + rho_t,
// which keeps 0 <= sum_t beta^(T-t) term_t - U diag(lambda) U^T <= rho I (Liberty 2016;
// Feinberg et al. 2023, Alg. 1 and Observation 6).
//
// Layout: every array is row-major and batch-major contiguous, as NumPy and XLA hand it over.
// No Python, no XLA types here.
#pragma once

#include <cstdint>

#include "codes.h"

namespace linalg_core::fd {

// Method codes, exported as `fd_methods` (FD_METHODS in linalg_core/fd.py).
// Thin stack: Z = [sqrt(beta) U diag(lambda)^(1/2), G] (d x n, n = l + r <= d). U is already
// orthonormal, so Z = [U, Q2] F with G's part orthogonal to U (two Gram-Schmidt passes, GEMMs)
// factored as Q2 R2 (LQ of an r x d block) and a small n x n core F; the eigenvectors of
// C = Z Z^T are [U, Q2] times those of F F^T. The new basis is re-orthonormalised by one
// Cholesky-QR step each update (no drift), and a Householder update replaces this one when that
// check finds [U, Q2] far from orthonormal (a term inside span(U) with l + r close to d).
// Dense eigh: C formed densely (SYRK); tridiagonal reduction (sytrd), divide and conquer on the
// tridiagonal matrix (stedc), back-transformation of the top l+1 vectors only (blocked:
// tridiagonal_eigh.h); syevr as the fallback.
// Thin stack, Householder: Householder QR of the whole stack Z, eigendecomposition of R R^T, the
// basis applied through the reflectors: slower, needs no structure; used for n > d and as the
// thin stack's fallback.
#define LC_FD_METHODS(X)       \
  X(kAuto, auto, -1)           \
  X(kThinStack, thin_stack, 0) \
  X(kDenseEigh, dense_eigh, 1) \
  X(kThinStackHouseholder, thin_stack_householder, 2)

enum class Method : int32_t { LC_FD_METHODS(LC_ENUMERATOR) };

// Status codes, exported as `fd_status` (FD_STATUS in linalg_core/fd.py).
#define LC_FD_STATUS(X)                                                                           \
  X(kOk, ok, 0)                                                                                   \
  /* the term or the state held NaN/Inf: the state is passed through unchanged */                 \
  X(kNonFiniteInput, non_finite_input, 1)                                                         \
  X(kBadBeta, bad_beta, 2) /* beta outside (0, 1]: the state is passed through unchanged */       \
  /* an eigensolver reported failure, or its answer failed the a-posteriori check (finite, lambda  \
     descending >= 0, rho >= 0): state unchanged */                                                \
  X(kLapackFailure, eigensolver_failure, 3)                                                       \
  /* finite state out of contract (lambda negative or not descending, rho < 0) */                 \
  X(kInvalidState, invalid_state, 4)                                                              \
  X(kNonSymmetricTerm, non_symmetric_term, 5) /* matrix term with max|M - M^T| > 8 d eps max|M| */ \
  /* matrix term with a diagonal entry below -tau max|M|, or (dense method) C with an eigenvalue   \
     below -tau ||C||, tau = sqrt(eps) + 16 d eps: flagged, never clipped */                      \
  X(kIndefiniteTerm, indefinite_term, 6)                                                          \
  /* the new eigenvalues or escaped mass overflow the dtype, or the largest eigenvalue of C is     \
     positive but below min / eps (the rest would be subnormal, flushed to zero under XLA: more    \
     than eps relative error) */                                                                  \
  X(kNotRepresentable, not_representable, 7)

enum class Status : int32_t { LC_FD_STATUS(LC_ENUMERATOR) };

struct UpdateShape {
  int64_t batch = 1;
  int64_t dim = 0;      // d
  int64_t rank = 0;     // l, 1 <= l <= d
  int64_t columns = 0;  // r for a factor term, d for a matrix term
  bool term_is_matrix = false;
};

template <typename T>
struct UpdateArgs {
  const T* basis;         // batch x d x l
  const T* eigvals;       // batch x l
  const T* escaped_mass;  // batch
  const T* term;          // batch x d x r (factor) or batch x d x d (symmetric matrix)
  const T* beta;          // batch
  T* basis_out;           // batch x d x l (may not alias the inputs)
  T* eigvals_out;         // batch x l
  T* escaped_mass_out;    // batch
  T* step_mass;           // batch: rho_t
  T* residual;            // batch: rho_t / mu_1 = ||C - new sketch||_2 / ||C||_2 (0 when C = 0)
  int32_t* method;        // batch: Method used
  int32_t* status;        // batch: Status
};

// The method `kAuto` resolves to for this shape.
Method choose_method(const UpdateShape& shape);

// One FD update per batch element. `requested` = kAuto picks by regime (choose_method).
// Scale safety: lambda and a matrix term are multiplied by 2^-E, a factor by 2^-(E/2) (E even,
// from the largest magnitudes, so no square of an input is ever formed unscaled), the update runs
// on O(1) numbers and its eigenvalues are multiplied back by 2^E; the answer is the same up to
// the scale for any representable input, and kNotRepresentable when it is not.
// Returns false only for an invalid shape or a method that cannot serve it; per-element failures
// are reported in args.status.
template <typename T>
bool update(const UpdateShape& shape, const UpdateArgs<T>& args, Method requested);

struct ApplyShape {
  int64_t batch = 1;
  int64_t dim = 0;      // d
  int64_t rank = 0;     // l
  int64_t columns = 0;  // n, columns of x
};

// y = (U diag(lambda) U^T + f I)^(-1/p) x, f = rho + eps, in factored form, never forming d x d:
//   y = c0 x + U (delta .* (U^T x)),  c0 = f^(-1/p),  delta_j = c0 expm1(-log1p(lambda_j / f) / p)
// (delta_j = (lambda_j + f)^(-1/p) - c0 without cancellation). When lambda >> f and x lies mostly
// in span(U) the sum cancels: c0 x ~ -U delta U^T x, both ~c0 |x| while y ~ c_1 |x|. float32
// therefore accumulates in double (two DGEMMs, float32 operands widened exactly) whenever that
// amplification c0 / c_1 = (1 + lambda_1 / f)^(1/p) exceeds 2: the error is then one rounding
// of y to T plus (d + l) eps64 c0 |x|, below one float32 ulp of y for amplifications up to
// ~1e7 / (d + l). Up to 2, float32 GEMMs lose at most one bit more than any float32 product.
// x and y are batch x d x n; requires rho + eps > 0 (checked by the caller). y_finite (batch,
// optional): whether each y is finite (NaN/Inf in x, or an overflow, make it not).
template <typename T>
void apply_inverse_root(const ApplyShape& shape, const T* basis, const T* eigvals,
                        const T* escaped_mass, const T* x, double p, double eps, T* y,
                        uint8_t* y_finite = nullptr);

}  // namespace linalg_core::fd
