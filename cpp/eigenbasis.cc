#include "eigenbasis.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "blas_threads.h"
#include "eigh_workspace.h"
#include "finite.h"
#include "lapack.h"
#include "parallel.h"
#include "scaling.h"

namespace linalg_core::eigenbasis {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

// One batch element's outputs.
template <typename T>
struct Element {
  T* basis_out;
  T* eigvals;
  int32_t* perm;
  T* off_diagonal;
  T* residual;
  T* orthogonality;
  int32_t* iterations;
  int32_t* method;
};

// Per-worker scratch, column-major n x n unless noted. `c` holds A Q, `b` holds Q^T A Q.
template <typename T>
struct Workspace {
  std::vector<T> a, q, c, b, tau, work, eig_work;
  std::vector<T> probes, probe_image, probe_back;  // n x kProbes each
  std::vector<double> d;
  std::vector<double> wide, wide_gram;  // float32 input: C and its Gram matrix in double
  std::vector<int> iwork;
  std::vector<int32_t> order;
  std::vector<T> sign;
  int lwork = 0;
};

template <typename T>
void gemm_cm(const char* ta, const char* tb, int n, const T* a, const T* b, T* c) {
  const T one = T(1), zero = T(0);
  Lapack<T>::gemm(ta, tb, &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
}

// Tiles of the blocked transposes below: a 64 x 64 tile of either layout stays in cache.
constexpr int kTile = 64;

// The incoming basis (row-major) as the column-major q; the identity when there is none.
template <typename T>
void load_basis(int n, const T* basis, T* q) {
  if (basis == nullptr) {
    for (int c = 0; c < n; ++c) {
      for (int r = 0; r < n; ++r) q[r + sz(c, n)] = T(r == c);
    }
    return;
  }
  for (int r0 = 0; r0 < n; r0 += kTile) {
    for (int c0 = 0; c0 < n; c0 += kTile) {
      for (int r = r0; r < std::min(n, r0 + kTile); ++r) {
        for (int c = c0; c < std::min(n, c0 + kTile); ++c) q[r + sz(c, n)] = basis[sz(r, n) + c];
      }
    }
  }
}

// max|A - A^T| (tile by tile: the strided reads of A^T stay in cache).
template <typename T>
double asymmetry(int n, const T* A) {
  double asym = 0.0;
  for (int r0 = 0; r0 < n; r0 += kTile) {
    for (int c0 = 0; c0 <= r0; c0 += kTile) {
      for (int r = r0; r < std::min(n, r0 + kTile); ++r) {
        for (int c = c0; c < std::min(r, c0 + kTile); ++c) {
          asym = std::max<double>(asym, std::abs(A[sz(r, n) + c] - A[sz(c, n) + r]));
        }
      }
    }
  }
  return asym;
}

// out = (A + A^T) 2^-e / 2 (each term scaled first: A + A^T can overflow where A does not).
// Each term is scaled by a multiplication in double, which rounds to T exactly as ldexp in T
// does (the product is exact in double's range) at a fraction of a libm call per entry.
template <typename T>
void scaled_symmetric(int n, const T* A, int e, T* out) {
  const double scale = std::ldexp(1.0, -e);
  for (int r0 = 0; r0 < n; r0 += kTile) {
    for (int c0 = 0; c0 < n; c0 += kTile) {
      for (int r = r0; r < std::min(n, r0 + kTile); ++r) {
        for (int c = c0; c < std::min(n, c0 + kTile); ++c) {
          const T lower = static_cast<T>(A[sz(r, n) + c] * scale);
          const T upper = static_cast<T>(A[sz(c, n) + r] * scale);
          out[sz(r, n) + c] = (lower + upper) * T(0.5);
        }
      }
    }
  }
}

// out (row-major) column i = q (column-major) column order[i].
template <typename T>
void store_sorted(int n, const T* q, const int32_t* order, T* out) {
  for (int i0 = 0; i0 < n; i0 += kTile) {
    for (int r0 = 0; r0 < n; r0 += kTile) {
      for (int i = i0; i < std::min(n, i0 + kTile); ++i) {
        const T* col = q + sz(order[i], n);
        for (int r = r0; r < std::min(n, r0 + kTile); ++r) out[sz(r, n) + i] = col[r];
      }
    }
  }
}

// Failure: the incoming basis if present and finite, else the identity; zero eigenvalues, the
// identity permutation, residuals -1.
template <typename T>
void write_fallback_outputs(int n, const T* basis, bool basis_finite, const Element<T>& out) {
  const bool keep = basis != nullptr && basis_finite;
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) out.basis_out[sz(r, n) + c] = keep ? basis[sz(r, n) + c] : T(r == c);
  }
  for (int i = 0; i < n; ++i) {
    out.eigvals[i] = T(0);
    out.perm[i] = i;
  }
  *out.off_diagonal = T(-1);
  *out.residual = T(-1);
  *out.orthogonality = T(-1);
  *out.iterations = 0;
  *out.method = static_cast<int32_t>(Method::kInput);
}

struct Orthogonality {
  double max = 0.0;        // ||(Q^T Q - I) X||_max over the probes X
  double frobenius = 0.0;  // the probes' estimate of ||Q^T Q - I||_F (exact in expectation)
};

// Q^T Q - I measured on the fixed sign probes (eigenbasis.h): two n x kProbes products.
template <typename T>
Orthogonality orthogonality(int n, const T* q, Workspace<T>& w) {
  const T one = T(1), zero = T(0);
  int p = kProbes;
  Lapack<T>::gemm("N", "N", &n, &p, &n, &one, q, &n, w.probes.data(), &n, &zero, w.probe_image.data(), &n);
  Lapack<T>::gemm("T", "N", &n, &p, &n, &one, q, &n, w.probe_image.data(), &n, &zero, w.probe_back.data(), &n);
  Orthogonality o;
  double f = 0.0;
  for (size_t i = 0; i < w.probes.size(); ++i) {
    const double e = static_cast<double>(w.probe_back[i]) - w.probes[i];
    if (!std::isfinite(e)) return Orthogonality{INFINITY, INFINITY};
    o.max = std::max(o.max, std::abs(e));
    f += e * e;
  }
  o.frobenius = std::sqrt(f / kProbes);
  return o;
}

struct Congruence {
  double off = 0.0;        // relative off-diagonal mass of Q^T A Q (0 for A = 0)
  double frobenius = 0.0;  // ||Q^T A Q||_F (exact) or ||A Q||_F (cheap): equal for orthonormal Q
};

// c = A q and d = diag(q^T A q), the eigenvalue estimates of q, with its off-diagonal mass:
// exact from b = q^T c, or (one product fewer) from ||A Q||_F^2 - sum d_i^2, which equals the
// squared mass for orthonormal Q (eigenbasis.h gives its resolution).
template <typename T>
Congruence congruence(int n, Workspace<T>& w, bool exact) {
  gemm_cm<T>("N", "N", n, w.a.data(), w.q.data(), w.c.data());
  double off = 0.0, diag = 0.0;
  if (exact) {
    gemm_cm<T>("T", "N", n, w.q.data(), w.c.data(), w.b.data());
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < n; ++i) {
        const double v = w.b[i + sz(j, n)];
        if (i == j) {
          w.d[j] = v;
          diag += v * v;
        } else {
          off += v * v;
        }
      }
    }
  } else {
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      const T* qj = w.q.data() + sz(j, n);
      const T* cj = w.c.data() + sz(j, n);
      double dj = 0.0;
      for (int i = 0; i < n; ++i) {
        dj += static_cast<double>(qj[i]) * cj[i];
        total += static_cast<double>(cj[i]) * cj[i];
      }
      w.d[j] = dj;
      diag += dj * dj;
    }
    off = std::max(total - diag, 0.0);
  }
  Congruence r;
  r.frobenius = std::sqrt(off + diag);
  r.off = r.frobenius > 0 ? std::sqrt(off) / r.frobenius : 0.0;
  return r;
}

// x <- x R^-1 with R^T R = x^T x (one Cholesky QR pass); false where the Gram matrix is not
// numerically positive definite. For float32 the first pass forms the Gram matrix in double:
// its rounding error relative to sigma_min(x)^2 is then eps64 kappa(x)^2, so the Cholesky factor
// exists up to kappa ~ 1e7 instead of eps32^(-1/2) ~ 3e3; the triangular solve stays in float32
// (it loses about eps32 kappa(x) of orthogonality, which the second pass removes).
template <typename T>
bool cholesky_qr_pass(int n, T* x, Workspace<T>& w, bool wide_gram) {
  const char* upper = "U";
  int info = 0;
  if (wide_gram) {
    const double one = 1.0, zero = 0.0;
    std::copy(x, x + sz(n, n), w.wide.begin());
    Lapack<double>::syrk(upper, "T", &n, &n, &one, w.wide.data(), &n, &zero, w.wide_gram.data(), &n);
    Lapack<double>::potrf(upper, &n, w.wide_gram.data(), &n, &info);
    if (info != 0) return false;
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i <= j; ++i) w.b[i + sz(j, n)] = static_cast<T>(w.wide_gram[i + sz(j, n)]);
    }
  } else {
    const T one = T(1), zero = T(0);
    Lapack<T>::syrk(upper, "T", &n, &n, &one, x, &n, &zero, w.b.data(), &n);
    Lapack<T>::potrf(upper, &n, w.b.data(), &n, &info);
    if (info != 0) return false;
  }
  const T one = T(1);
  Lapack<T>::trsm("R", upper, "N", "N", &n, &n, &one, w.b.data(), &n, x, &n);
  return true;
}

// q <- the Q factor of c with diag(R) > 0 (eigenbasis.h says why), by Cholesky QR twice
// (Yamamoto et al. 2015): about half the flops of Householder QR and all of them in level-3
// BLAS. It is accepted when the probes find q orthonormal to the tolerance; otherwise (c too
// ill-conditioned for the Gram matrix) Householder QR (geqrf + orgqr) of c, which keeps c
// intact until then.
template <typename T>
bool qr_into_q(int n, Workspace<T>& w) {
  std::copy(w.c.begin(), w.c.end(), w.q.begin());
  constexpr bool narrow = std::is_same_v<T, float>;
  if (cholesky_qr_pass(n, w.q.data(), w, narrow) && cholesky_qr_pass(n, w.q.data(), w, false) &&
      all_finite(w.q.data(), sz(n, n)) && orthogonality(n, w.q.data(), w).max <= orthonormality_tol<T>(n)) {
    return true;
  }
  int info = 0;
  Lapack<T>::geqrf(&n, &n, w.c.data(), &n, w.tau.data(), w.work.data(), &w.lwork, &info);
  if (info != 0) return false;
  for (int i = 0; i < n; ++i) w.sign[i] = w.c[i + sz(i, n)] < T(0) ? T(-1) : T(1);
  Lapack<T>::orgqr(&n, &n, &n, w.c.data(), &n, w.tau.data(), w.work.data(), &w.lwork, &info);
  if (info != 0) return false;
  for (int j = 0; j < n; ++j) {
    if (w.sign[j] < T(0)) {
      for (int i = 0; i < n; ++i) w.c[i + sz(j, n)] = -w.c[i + sz(j, n)];
    }
  }
  std::swap(w.q, w.c);
  return true;
}

// q <- the eigenvectors of a, each column's entry of largest magnitude made positive (the first
// such entry on ties), so that the C++ and portable kernels agree on signs.
template <typename T>
bool eigh_into_q(int n, Workspace<T>& w) {
  std::copy(w.a.begin(), w.a.end(), w.q.begin());
  if (!eigh_inplace(n, w.q.data(), w.tau.data(), w.eig_work, w.iwork)) return false;
  for (int j = 0; j < n; ++j) {
    T* col = w.q.data() + sz(j, n);
    int at = 0;
    for (int i = 1; i < n; ++i) {
      if (std::abs(col[i]) > std::abs(col[at])) at = i;
    }
    if (col[at] < T(0)) {
      for (int i = 0; i < n; ++i) col[i] = -col[i];
    }
  }
  return true;
}

template <typename T>
Status refresh_one(int n, const T* A, const T* basis, const Options& o, Workspace<T>& w,
                   const Element<T>& out) {
  const size_t nn = sz(n, n);
  const double eps = std::numeric_limits<T>::epsilon();
  const bool basis_finite = basis == nullptr || all_finite(basis, nn);
  auto fail = [&](Status s) {
    write_fallback_outputs(n, basis, basis_finite, out);
    return s;
  };
  if (!all_finite(A, nn) || !basis_finite) return fail(Status::kNonFiniteInput);
  const T amax = max_abs(A, nn);
  if (asymmetry(n, A) > 8.0 * n * eps * amax) return fail(Status::kNotSymmetric);

  // The scaled, symmetrised A (its column- and row-major layouts coincide).
  int e = 0;
  if (amax > T(0)) std::frexp(amax, &e);
  scaled_symmetric(n, A, e, w.a.data());
  const bool has_basis = o.has_basis != 0;
  load_basis(n, has_basis ? basis : nullptr, w.q.data());
  Orthogonality orth;
  if (has_basis) {
    orth = orthogonality(n, w.q.data(), w);
    if (!(orth.max <= orthonormality_tol<T>(n))) return fail(Status::kInvalidBasis);
  }
  *out.off_diagonal = T(-1);
  *out.iterations = 0;
  Method method = has_basis ? Method::kPower : Method::kEigh;
  Congruence cong;
  bool evaluated = false;   // w.d and cong describe w.q
  bool product_ready = false;  // w.c holds A q
  if (amax == T(0)) {
    // Every basis is an eigenbasis of A = 0: the incoming one (or the identity) is returned.
    method = has_basis ? Method::kSkipped : Method::kEigh;
    cong = congruence(n, w, false);
    evaluated = true;
  } else if (has_basis) {
    if (o.skip_tol > 0 || o.steps == 0) {
      // The skip decision compares with a user tolerance: the exact mass.
      cong = congruence(n, w, o.skip_tol > 0);
      evaluated = product_ready = true;
      if (o.skip_tol > 0) *out.off_diagonal = static_cast<T>(cong.off);
      if (o.skip_tol > 0 && cong.off <= o.skip_tol) method = Method::kSkipped;
    }
    if (method == Method::kPower) {
      for (int64_t step = 0; step < o.steps; ++step) {
        if (!product_ready) gemm_cm<T>("N", "N", n, w.a.data(), w.q.data(), w.c.data());
        product_ready = false;
        if (!qr_into_q(n, w)) return fail(Status::kFailed);
        ++*out.iterations;
        evaluated = false;
      }
      if (!evaluated) {
        cong = congruence(n, w, false);
        evaluated = true;
      }
      if (o.fallback_tol > 0 && !(cong.off <= o.fallback_tol)) method = Method::kEigh;
    }
  }
  if (method == Method::kEigh && amax > T(0)) {
    if (!eigh_into_q(n, w)) return fail(Status::kFailed);
    cong = congruence(n, w, false);
  }
  if (method != Method::kSkipped) orth = orthogonality(n, w.q.data(), w);

  // A-posteriori check (eigenbasis.h): orthonormal, finite, and the congruence invariants.
  double trace_a = 0.0, norm_a = 0.0, trace_d = 0.0;
  for (int i = 0; i < n; ++i) {
    trace_a += w.a[sz(i, n) + i];
    trace_d += w.d[i];
  }
  for (size_t i = 0; i < nn; ++i) norm_a += static_cast<double>(w.a[i]) * w.a[i];
  norm_a = std::sqrt(norm_a);
  const double allowance = (orth.frobenius + 16.0 * n * eps) * norm_a;
  const bool checked = orth.max <= orthonormality_tol<T>(n) && std::isfinite(cong.off) &&
                       std::abs(trace_d - trace_a) <= allowance &&
                       std::abs(cong.frobenius - norm_a) <= allowance && all_finite(w.q.data(), nn);
  if (!checked) return fail(Status::kFailed);

  // Sort descending (stable: ties keep their order), permute the columns with the estimates.
  std::iota(w.order.begin(), w.order.end(), 0);
  std::stable_sort(w.order.begin(), w.order.end(), [&](int32_t x, int32_t y) { return w.d[x] > w.d[y]; });
  for (int i = 0; i < n; ++i) {
    const int32_t src = w.order[i];
    out.perm[i] = src;
    const double lambda = std::ldexp(w.d[src], e);
    if (!(std::abs(lambda) <= std::numeric_limits<T>::max())) return fail(Status::kFailed);
    out.eigvals[i] = static_cast<T>(lambda);
  }
  store_sorted(n, w.q.data(), w.order.data(), out.basis_out);
  *out.residual = static_cast<T>(cong.off);
  *out.orthogonality = static_cast<T>(orth.max);
  *out.method = static_cast<int32_t>(method);
  return Status::kOk;
}

}  // namespace

template <typename T>
double orthonormality_tol(int64_t n) {
  return 16.0 * static_cast<double>(std::max<int64_t>(n, 1)) * std::numeric_limits<T>::epsilon();
}

template <typename T>
bool refresh(const Shape& s, const Args<T>& a, const Options& o) {
  // LAPACK takes 32-bit sizes: n and the workspace lengths must fit an int.
  if (s.batch < 0 || s.n < 1 || s.n > 46340 || o.steps < 0 || o.steps > INT_MAX) return false;
  if (o.has_basis != 0 && a.basis == nullptr) return false;
  if (!(o.skip_tol >= 0) || !(o.fallback_tol >= 0)) return false;
  const int n = static_cast<int>(s.n);
  const size_t nn = sz(n, n);
  const int workers = batch_workers(s.batch, n);
  std::vector<Workspace<T>> spaces(std::max(1, workers));
  // Workspace sizes for geqrf and orgqr, queried once (n is fixed for the batch).
  int lwork = 1;
  {
    int info = 0, lw = -1;
    T q = T(0);
    std::vector<T> dummy(1);
    Lapack<T>::geqrf(&n, &n, dummy.data(), &n, dummy.data(), &q, &lw, &info);
    lwork = std::max(lwork, static_cast<int>(q));
    Lapack<T>::orgqr(&n, &n, &n, dummy.data(), &n, dummy.data(), &q, &lw, &info);
    lwork = std::max(lwork, static_cast<int>(q));
  }
  for (Workspace<T>& w : spaces) {
    w.a.resize(nn);
    w.q.resize(nn);
    w.c.resize(nn);
    w.b.resize(nn);
    w.probes.resize(sz(n, kProbes));
    for (int k = 0; k < kProbes; ++k) {
      for (int i = 0; i < n; ++i) w.probes[i + sz(k, n)] = static_cast<T>(probe_sign(i, k));
    }
    w.probe_image.resize(sz(n, kProbes));
    w.probe_back.resize(sz(n, kProbes));
    w.tau.resize(n);
    w.sign.resize(n);
    w.d.resize(n);
    if (std::is_same_v<T, float>) {
      w.wide.resize(nn);
      w.wide_gram.resize(nn);
    }
    w.order.resize(n);
    w.work.resize(lwork);
    w.lwork = lwork;
  }
  auto body = [&](int worker, int64_t b) {
    Element<T> out{a.basis_out + b * nn, a.eigvals + b * n,      a.perm + b * n,
                   a.off_diagonal + b,   a.residual + b,         a.orthogonality + b,
                   a.iterations + b,     a.method + b};
    a.status[b] = static_cast<int32_t>(refresh_one<T>(
        n, a.a + b * nn, o.has_basis != 0 ? a.basis + b * nn : nullptr, o, spaces[worker], out));
  };
  if (workers <= 1) {
    // GEMM and QR at a few hundred rows still gain from BLAS threads (unlike syevd there, which
    // SmallProblemBlasThreads serves): one thread only below 128 rows.
    ScopedBlasThreads guard(n < 128 ? 1 : 0);
    parallel_for(s.batch, 1, body);
  } else {
    parallel_for(s.batch, workers, body);
  }
  return true;
}

template double orthonormality_tol<float>(int64_t);
template double orthonormality_tol<double>(int64_t);
template bool refresh<float>(const Shape&, const Args<float>&, const Options&);
template bool refresh<double>(const Shape&, const Args<double>&, const Options&);

}  // namespace linalg_core::eigenbasis
