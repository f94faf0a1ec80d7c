// LOBPCG for the largest k eigenpairs of a symmetric matrix (Knyazev 2001), warm-startable.
//
// Each iteration: residuals R = A X - X diag(theta); the unconverged columns W (soft locking: a
// leading run of converged pairs is kept but no longer searched) are projected off X and
// orthonormalised; one product A W (the only matvecs: <= k columns per iteration); Rayleigh-Ritz
// on S = [X, W, P] made orthonormal by SVQB (eigendecomposition of S^T S, columns with
// eigenvalues below eps_drop dropped), with A S updated implicitly through the same rotation;
// X, A X and P = X_new - X X^T X_new (with A P) come out of the Ritz vectors. A X is recomputed
// explicitly before convergence is declared, so drift in the implicit updates cannot fake
// convergence, and every 10 iterations once the residuals approach sqrt(eps) (every 100 anyway).
// Convergence of pair j: ||A x_j - theta_j x_j|| <= tol * ||A||_est, ||A||_est the largest |Ritz
// value| seen (independent of n; absolute for zero eigenvalues, so rank-deficient A with k >
// rank converges). Never declared at iteration 0 unless the explicit residual proves it.
// For 5 k >= n the dense eigensolver (syevd) answers directly.
// The operator is a callback: apply(X, n, cols, AX) computes A X for column-major n x cols blocks.
#pragma once

#include <cstdint>
#include <functional>

namespace linalg_core::lobpcg {

template <typename T>
using Apply = std::function<void(const T* x, int n, int cols, T* ax)>;

struct Options {
  int k = 1;
  // Extra block columns iterated but not required to converge: the convergence rate then
  // depends on lambda_{k+guard+1} / lambda_k instead of lambda_{k+1} / lambda_k.
  int guard = 0;
  int max_iters = 500;
  double tol = 0;  // 0: the default n-independent tolerance, 10 * sqrt(eps(T))
};

enum class Status : int32_t { kConverged = 0, kMaxIters = 1, kBreakdown = 2, kNonFinite = 3 };

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
// `dense_matrix`: the explicit matrix (row-major n x n) when available, for the dense path;
// null for a callback-only operator (then the dense path builds A from n products of unit
// vectors).
template <typename T>
bool largest(int n, const Apply<T>& apply, const T* dense_matrix, const T* x0, int m,
             const Options& options, const Result<T>& out);

}  // namespace linalg_core::lobpcg
