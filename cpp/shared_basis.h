// Shared-basis block low-rank update (Yen, Yen, Chen, Sun, Hsieh, "Block low-rank preconditioner
// with shared basis for stochastic optimization", NeurIPS 2023, Algorithm 1).
//
// State: one orthonormal basis B (b x k) for m blocks, symmetric coefficients R_i (k x k),
// escaped masses rho_i. With gradients g_i (rows of G, m x b), the blocks to approximate are
// M_i = B R_i B^T + g_i g_i^T (never formed). One update:
//   1. basis: Y <- orth(A Y) `power_iters` times from Y0 (the previous B plus oversampling
//      columns), A = sum_i M_i M_i^T applied through the paper's expansion
//        A Y = B (S t + Q (G Y)) + G^T (Q^T t + diag(|g_i|^2) (G Y)),  t = B^T Y,
//      S = sum_i R_i R_i^T, q_i = R_i B^T g_i (columns of Q: B q_i = B R_i B^T g_i), two
//      b x m x s products per application, O(m k^3 + m b s + b k s); Rayleigh-Ritz keeps the top k;
//   2. coefficients: R~_i = B_new^T M_i B_new = E R_i E^T + h_i h_i^T (E = B_new^T B_old,
//      h_i = B_new^T g_i), R_i = R~_i - lambda_min(R~_i) I (one k x k eigh per block, by the
//      LAPACK-free small_eigh.h);
//   3. escaped mass: rho_i += ||M_i - B_new R_i B_new^T||_2 by power iteration on the factored
//      operator (O(b k) per product);
//   4. direction: u_i = P_i g_i, P_i = (B R_i B^T + c I)^(-1/2), c = rho_i + eps (the
//      preconditioner applied, not the descent step -P_i g_i), in factored form
//        u_i = B [(R_i + c I)^(-1/2) - c^(-1/2) I] B^T g_i + c^(-1/2) g_i
//      from the eigendecomposition of step 2.
// Scale safety: the update is homogeneous (g -> s g, R_i, rho_i, eps -> s^2 (.) leaves B and u_i
// unchanged and scales R_i, rho_i by s^2), so gradients and state are scaled by a power of two
// (exact) to max(|g|, |R|^(1/2), rho^(1/2)) in [1/2, 1) when that lies outside [2^-e, 2^e],
// e = max_exponent / 8 of T, and the new state scaled back.
// Status ok is checked, not assumed: every output finite, B^T B = I to 32 (b + s) eps, rho_i not
// decreasing, and the new state's largest entry a normal number of T (a state below T's normal
// range has lost its precision). On any other status the input state is copied to the outputs,
// the direction and the increments are zero.
// Arrays are row-major; no Python, no XLA types.
#pragma once

#include <cstdint>

#include "codes.h"

namespace linalg_core::shared_basis {

// Status codes, exported as `shared_basis_status` (SHARED_BASIS_STATUS in
// linalg_core/shared_basis.py).
#define LC_SHARED_BASIS_STATUS(X)                                                                \
  X(kOk, ok, 0)                                                                                  \
  /* invalid shape, a QR/eigensolver failure or a failed a-posteriori check */                   \
  X(kFailed, failed, 1)                                                                          \
  X(kNonFiniteInput, non_finite_input, 2) /* NaN/Inf in the gradients, the state or Y0 */         \
  /* a negative escaped mass, or coefficients R_i not symmetric (cpp/symmetry.h) */              \
  X(kInvalidState, invalid_state, 3)                                                             \
  X(kOutOfRange, out_of_range, 4) /* the new state (scaling as |g|^2) leaves T's normal range */

enum class Status : int32_t { LC_SHARED_BASIS_STATUS(LC_ENUMERATOR) };

struct Shape {
  int64_t blocks = 0;  // m
  int64_t dim = 0;     // b
  int64_t rank = 0;    // k
  int64_t sketch = 0;  // k + oversampling: columns of Y0
  int power_iters = 1;
  int mass_iters = 30;  // power iterations for ||M_i - B R_i B^T||_2
};

template <typename T>
struct Args {
  const T* basis;      // b x k
  const T* coeffs;     // m x k x k
  const T* escaped;    // m
  const T* grads;      // m x b
  const T* y0;         // b x sketch
  double eps;
  T* basis_out;        // b x k
  T* coeffs_out;       // m x k x k
  T* escaped_out;      // m
  T* direction;        // m x b
  T* step_mass;        // m: the increments ||M_i - B R_i B^T||_2
};

template <typename T>
Status update(const Shape& shape, const Args<T>& args);

}  // namespace linalg_core::shared_basis
