// Eigenbasis refresh (SOAP's and eigenvalue-corrected Shampoo's kernel): from an orthonormal basis
// Q of a slowly changing symmetric A (n x n), per batch element:
//   skip test   B = Q^T A Q, off(Q) = ||B - diag(B)||_F / ||B||_F; with skip_tol > 0 and
//               off(Q) <= skip_tol the power steps are skipped (method kSkipped);
//   power steps Q <- qr(A Q), `steps` times: Cholesky QR twice (the first Gram matrix in double
//               for float32), Householder (geqrf + orgqr) where that Q fails the orthonormality
//               probes below; diag(R) > 0 (Cholesky QR's own; Householder's columns sign-fixed):
//               QR fixes Q only up to column signs, and with this choice an exact eigenbasis Q of A with positive eigenvalues maps to itself
//               (A Q = Q diag(lambda) has the QR factors Q, diag(lambda)), so a refresh of an
//               unchanged basis returns it up to rounding instead of flipping columns;
//   fallback    when off(Q) after the steps exceeds fallback_tol (> 0), a full eigh (syevd) of A;
//               also the only method without an incoming basis (has_basis = 0); its eigenvector
//               signs are fixed so that each column's entry of largest magnitude is positive;
//   sorting     eigenvalue estimates d = diag(Q^T A Q) sorted descending (stable), the columns
//               of Q with them: out[:, i] = Q[:, perm[i]], eigvals[i] = d[perm[i]].
// Off-diagonal mass: the skip test forms B = Q^T (A Q) (exact to the rounding of two products);
// after the steps (and after eigh) the mass is sqrt(||A Q||_F^2 - sum_i d_i^2) / ||A Q||_F, one
// product fewer: the two agree for orthonormal Q, and the difference of their squares is at most
// ||Q Q^T - I||_2, so this mass resolves values down to about sqrt(||Q^T Q - I||) (1e-3 in
// float32, 1e-7 in float64) -- enough for a fallback threshold, not for a tight skip test.
// Orthonormality is measured in O(n^2) on kProbes fixed sign vectors X (probe_sign):
// ||(Q^T Q - I) X||_max <= orthonormality_tol (16 n eps: the bound on Householder QR's loss of
// orthogonality with a margin, which Cholesky QR twice meets within its reach), for the incoming basis and for the returned one. A random sign
// vector x gives E||(Q^T Q - I) x||^2 = ||Q^T Q - I||_F^2, so a loss of orthonormality above the
// tolerance escapes all four probes only when it is (nearly) orthogonal to each of them.
// Validation, in O(n^2): finite A and Q, A symmetric to 8 n eps max|A| (then symmetrised), the
// incoming basis orthonormal as above.
// Scale: A is multiplied by the power of two bringing max|A| into [1/2, 1) (exact) and the
// eigenvalues scaled back in double, so inputs near the dtype's overflow or underflow work.
// Status ok is earned a posteriori: finite outputs, the probes' orthonormality within the
// tolerance, and the two invariants of an orthogonal congruence, |sum_i d_i - tr A| and
// |||Q^T A Q||_F - ||A||_F| (||A Q||_F after the steps), at most (e + 16 n eps) ||A||_F with e the
// probes' estimate of ||Q^T Q - I||_F. Any other status returns the incoming basis (the identity
// without one, or where it is not finite), zero eigenvalues, the identity permutation and
// residuals -1. Arrays are row-major and batch-major; no Python, no XLA types.
#pragma once

#include <cstdint>

namespace linalg_core::eigenbasis {

// Codes read by linalg_core/eigenbasis.py from the module (`eigenbasis_status`).
#define LC_EIGENBASIS_STATUS(X)                                                               \
  X(kOk, 0, "ok")                                                                             \
  X(kNonFiniteInput, 1, "non_finite_input")   /* NaN/Inf in a or basis */                     \
  X(kNotSymmetric, 2, "not_symmetric")        /* max|A - A^T| > 8 n eps max|A| */             \
  X(kInvalidBasis, 3, "invalid_basis")        /* probes: ||(Q^T Q - I) X||_max > tol */       \
  X(kFailed, 4, "failed")                     /* LAPACK failed or the a-posteriori check */

// Codes of the method that produced the returned basis (`eigenbasis_methods`).
#define LC_EIGENBASIS_METHOD(X)                                                               \
  X(kPower, 0, "power")      /* `steps` power steps from the incoming basis */                \
  X(kSkipped, 1, "skipped")  /* the incoming basis passed the skip test: columns permuted */  \
  X(kEigh, 2, "eigh")        /* full eigh: no incoming basis, or the fallback */               \
  X(kInput, 3, "input")      /* status not ok: the incoming basis (or identity) returned */

#define LC_EIGENBASIS_ENUM_ENTRY(name, value, text) name = value,
enum class Status : int32_t { LC_EIGENBASIS_STATUS(LC_EIGENBASIS_ENUM_ENTRY) };
enum class Method : int32_t { LC_EIGENBASIS_METHOD(LC_EIGENBASIS_ENUM_ENTRY) };
#undef LC_EIGENBASIS_ENUM_ENTRY

// The options, listed once: the FFI adapter and the binding both decode them with
// decode_options (eigenbasis_options.h) from a name -> value lookup.
#define LC_EIGENBASIS_OPTIONS(X)                                                              \
  X(int64_t, steps, 1)           /* power steps, >= 0 */                                      \
  X(double, skip_tol, 0.0)       /* > 0: skip the steps when off(Q_in) <= skip_tol */         \
  X(double, fallback_tol, 0.0)   /* > 0: eigh when off(Q) after the steps > fallback_tol */   \
  X(int64_t, has_basis, 1)       /* 0: no incoming basis, a full eigh */

struct Options {
#define LC_EIGENBASIS_OPTION_FIELD(type, name, default_value) type name = default_value;
  LC_EIGENBASIS_OPTIONS(LC_EIGENBASIS_OPTION_FIELD)
#undef LC_EIGENBASIS_OPTION_FIELD
};

struct Shape {
  int64_t batch = 1;
  int64_t n = 0;
};

template <typename T>
struct Args {
  const T* a;             // batch x n x n, symmetric
  const T* basis;         // batch x n x n (columns orthonormal), or nullptr without one
  T* basis_out;           // batch x n x n
  T* eigvals;             // batch x n, descending
  int32_t* perm;          // batch x n: basis_out[:, i] = pre-sort basis[:, perm[i]]
  T* off_diagonal;        // batch: off(Q_in) when computed (skip_tol > 0), else -1
  T* residual;            // batch: off(basis_out), -1 unless status ok
  T* orthogonality;       // batch: ||(basis_out^T basis_out - I) X||_max, -1 unless status ok
  int32_t* iterations;    // batch: power steps taken
  int32_t* method;        // batch: Method
  int32_t* status;        // batch: Status
};

// The orthonormality probes: kProbes columns of signs +-1 from an integer hash of (row, column),
// the same on every platform (the portable kernel reads them from the module).
constexpr int kProbes = 4;
inline double probe_sign(int64_t row, int column) {
  uint32_t h = static_cast<uint32_t>(row) * 2654435761u + static_cast<uint32_t>(column) * 2246822519u + 374761393u;
  h ^= h >> 15;
  h *= 2246822507u;
  h ^= h >> 13;
  return (h >> 31) != 0 ? -1.0 : 1.0;
}

// 16 n eps(T): the tolerance on ||(Q^T Q - I) X||_max for an incoming and a returned basis.
template <typename T>
double orthonormality_tol(int64_t n);

// False only for an invalid shape or options; value-dependent problems go to args.status.
template <typename T>
bool refresh(const Shape& shape, const Args<T>& args, const Options& options);

}  // namespace linalg_core::eigenbasis

namespace linalg_core::eigenbasis {

// Fills `o` from `get(name, &value)` (true when `name` is present and has the field's type) for
// every field of LC_EIGENBASIS_OPTIONS; a missing field keeps its default. Returns the first
// field that failed to decode, or nullptr. Shared by cpp/eigenbasis_ffi.cc (ffi::Dictionary) and
// python/eigenbasis.cc (a Python dict), so the two decode one list.
template <typename Get>
const char* decode_options(Get&& get, Options* o) {
#define LC_EIGENBASIS_DECODE(type, name, default_value) \
  if (!get(#name, &o->name)) return #name;
  LC_EIGENBASIS_OPTIONS(LC_EIGENBASIS_DECODE)
#undef LC_EIGENBASIS_DECODE
  return nullptr;
}

}  // namespace linalg_core::eigenbasis
