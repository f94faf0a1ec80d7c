// LOBPCG for the largest k eigenpairs of a symmetric matrix (Knyazev 2001), warm-startable.
//
// Each iteration: residuals R = A X - X diag(theta); the unconverged columns W (soft locking: a
// converged wanted pair is kept in X but no longer searched) are normalised column by column,
// projected off X and orthonormalised; one product A W (the only matvecs: <= k columns per
// iteration); Rayleigh-Ritz on S = [X, W, P] made orthonormal by SVQB (eigendecomposition of the
// Gram matrix of unit columns, directions with squared length below kSvqbDrop * eps dropped),
// with A S updated implicitly through the same rotation; X, A X and P = X_new - X X^T X_new
// (with A P) come out of the Ritz vectors. P is normalised column by column before it is
// orthogonalised, so a short step late in the iteration is not mistaken for a dependent
// direction and dropped (which would leave steepest descent, and its slow tail).
//
// Scale: the operator is multiplied by a power of two (exact) chosen from the first product, so
// every intermediate quantity is O(1) for any finite A; the eigenvalues are scaled back.
//
// Convergence of pair j: ||A x_j - theta_j x_j|| <= tol * ||A||_est with ||A||_est the largest
// ||A s|| / ||s|| over the columns s of every explicit product: a lower bound of ||A||_2 that a
// diverged Ritz value (a basis that lost orthonormality) cannot inflate. tol is clamped to the
// attainable floor kTolFloor * n * eps (a computed product A x carries an error up to ~n eps
// ||A||), so the iteration stops there instead of iterating in rounding noise. Declared only
// after an explicit product A X whose residuals meet tol, with X orthonormal to tol and the
// Ritz values equal to the Rayleigh quotients x_j^T A x_j to tol ||A||_est; a Ritz vector that
// lost its unit length (a basis that lost orthonormality) restarts the iteration from X.
// For 5 k >= n the dense eigensolver answers, checked by its explicit residuals.
// The operator is a callback: apply(X, n, cols, AX) computes A X for column-major n x cols blocks.
#pragma once

#include <cstdint>

#include "codes.h"
#include <functional>

namespace linalg_core::lobpcg {

template <typename T>
using Apply = std::function<void(const T* x, int n, int cols, T* ax)>;

// SVQB drops directions whose squared length, relative to the block's unit columns, is below
// kSvqbDrop * eps: the Gram matrix's eigenvalues carry absolute errors ~ eps, so those are lost to
// rounding. Anything above is kept: the first pass leaves an orthogonality error
// ~ eps / kSvqbDrop and the second removes it. (A cut at eps^(2/3) drops real directions: a
// residual block holding an eigenvector of A at 1e-6 relative next to a dominant one loses it.)
// The portable JAX kernel reads this constant from the module (lobpcg_svqb_drop).
inline constexpr double kSvqbDrop = 100.0;
// tol is clamped to kTolFloor * n * eps (exported as lobpcg_tol_floor).
inline constexpr double kTolFloor = 8.0;

struct Options {
  int k = 1;
  // Extra block columns iterated but not required to converge: the convergence rate then
  // depends on lambda_{k+guard+1} / lambda_k instead of lambda_{k+1} / lambda_k.
  int guard = 0;
  int max_iters = 500;
  double tol = 0;  // 0: the default n-independent tolerance, 10 * sqrt(eps(T))
};

// Status codes, exported as `lobpcg_status` (LOBPCG_STATUS in linalg_core/lobpcg.py).
#define LC_LOBPCG_STATUS(X)                                                                      \
  X(kConverged, converged, 0)                                                                    \
  X(kMaxIters, max_iters, 1)                                                                     \
  X(kBreakdown, breakdown, 2)                                                                    \
  X(kNonFinite, non_finite, 3) /* A, x0 or a product A X not finite: every output zero */         \
  /* explicit A (or the dense path's assembled A) not symmetric: outputs zero */                 \
  X(kNonSymmetric, non_symmetric, 4)

enum class Status : int32_t { LC_LOBPCG_STATUS(LC_ENUMERATOR) };

template <typename T>
struct Result {
  T* eigvals;       // k, descending
  T* eigvecs;       // n x k, row-major
  T* residuals;     // k: ||A x_j - theta_j x_j|| / ||A||_est of the returned pairs (explicit)
  int32_t* iterations;
  int32_t* status;
  int32_t* dense;   // 1 when the dense eigensolver answered (5 k >= n)
};

// x0: n x m row-major starting block, m >= k columns (warm start; m may exceed k).
// `dense_matrix`: the explicit matrix (row-major n x n) when available (checked for finiteness
// and symmetry, used by the dense path); null for a callback-only operator (then the dense path
// builds A from n products of unit vectors).
template <typename T>
bool largest(int n, const Apply<T>& apply, const T* dense_matrix, const T* x0, int m,
             const Options& options, const Result<T>& out);

}  // namespace linalg_core::lobpcg
