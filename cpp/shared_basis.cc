#include "shared_basis.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "blas_threads.h"
#include "eigh_workspace.h"
#include "finite.h"
#include "lapack.h"
#include "parallel.h"
#include "scaling.h"
#include "symmetry.h"
#include "small_eigh.h"

namespace linalg_core::shared_basis {
namespace {

size_t sz(int64_t a, int64_t b = 1) { return static_cast<size_t>(a) * static_cast<size_t>(b); }

// Column-major C (rows x cols) = alpha op(A) op(B) + beta C. Large products are split by
// columns of C over the cores, each part on a single-threaded BLAS: update() keeps OpenBLAS's own
// thread pool idle, because its server threads spin for a while after every threaded call and
// then take the cores from the per-block loop (measured: the 1024 per-block eigensolves ran
// slower on two workers than on one right after threaded GEMMs).
template <typename T>
void gemm(const char* ta, const char* tb, int rows, int cols, int inner, T alpha, const T* a,
          int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  const double flops = 2.0 * rows * cols * inner;
  const int cores = hardware_threads();
  const int workers = (flops >= 4e6 && cols >= 2 * cores && blas_threads_local_available()) ? cores : 1;
  if (workers == 1) {
    Lapack<T>::gemm(ta, tb, &rows, &cols, &inner, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
    return;
  }
  const int chunk = (cols + workers - 1) / workers;
  const bool b_plain = *tb == 'N' || *tb == 'n';
  parallel_for(workers, workers, [&](int, int64_t w) {
    const int c0 = static_cast<int>(w) * chunk;
    int nc = std::min(cols, c0 + chunk) - c0;
    if (nc <= 0) return;
    const T* bw = b_plain ? b + sz(c0, ldb) : b + c0;
    Lapack<T>::gemm(ta, tb, &rows, &nc, &inner, &alpha, a, &lda, bw, &ldb, &beta, c + sz(c0, ldc), &ldc);
  });
}

template <typename T>
bool orthonormalise(T* y, int rows, int cols, std::vector<T>& tau, std::vector<T>& work) {
  int info = 0, lw = -1;
  T q = T(0);
  Lapack<T>::geqrf(&rows, &cols, y, &rows, tau.data(), &q, &lw, &info);
  Lapack<T>::orgqr(&rows, &cols, &cols, y, &rows, tau.data(), &q, &lw, &info);
  if (work.size() < static_cast<size_t>(q) + 1) work.resize(static_cast<size_t>(q) + 1);
  lw = static_cast<int>(work.size());
  Lapack<T>::geqrf(&rows, &cols, y, &rows, tau.data(), work.data(), &lw, &info);
  if (info != 0) return false;
  T q2 = T(0);
  int lq = -1;
  Lapack<T>::orgqr(&rows, &cols, &cols, y, &rows, tau.data(), &q2, &lq, &info);
  if (work.size() < static_cast<size_t>(q2) + 1) work.resize(static_cast<size_t>(q2) + 1);
  lw = static_cast<int>(work.size());
  Lapack<T>::orgqr(&rows, &cols, &cols, y, &rows, tau.data(), work.data(), &lw, &info);
  return info == 0;
}

// out_i = op(M_i) in_i for m column-major k x k matrices M_i and k-vectors (columns of k x m
// blocks): plain loops, since one BLAS call per 32 x 32 matrix-vector product costs more in call
// and thread overhead than its 2 k^2 flops.
template <typename T>
void small_matvecs(int k, int m, const T* mats, const T* in, T* out, bool transpose) {
  for (int i = 0; i < m; ++i) {
    const T* a = mats + sz(i, sz(k, k));
    const T* x = in + sz(i, k);
    T* y = out + sz(i, k);
    if (transpose) {
      for (int c = 0; c < k; ++c) {
        T acc = T(0);
        for (int r = 0; r < k; ++r) acc += a[r + sz(c, k)] * x[r];
        y[c] = acc;
      }
    } else {
      std::fill(y, y + k, T(0));
      for (int c = 0; c < k; ++c) {
        const T xc = x[c];
        for (int r = 0; r < k; ++r) y[r] += a[r + sz(c, k)] * xc;
      }
    }
  }
}

// out = V diag(f) V^T (k x k, column-major) for one block: the lower triangle by column axpys,
// then mirrored (no BLAS call: a 32 x 32 GEMM costs more in call overhead than in flops).
template <typename T>
void scaled_gram(int k, const T* v, const T* f, T* out) {
  std::fill(out, out + sz(k, k), T(0));
  for (int j = 0; j < k; ++j) {
    const T* vj = v + sz(j, k);
    for (int c = 0; c < k; ++c) {
      const T coef = f[j] * vj[c];
      T* oc = out + sz(c, k);
      for (int r = c; r < k; ++r) oc[r] += coef * vj[r];
    }
  }
  for (int c = 0; c < k; ++c) {
    for (int r = c + 1; r < k; ++r) out[c + sz(r, k)] = out[r + sz(c, k)];
  }
}

template <typename T>
void transpose_inplace(int k, T* a) {
  for (int c = 0; c < k; ++c) {
    for (int r = c + 1; r < k; ++r) std::swap(a[r + sz(c, k)], a[c + sz(r, k)]);
  }
}

template <typename T>
struct BlockScratch {
  std::vector<T> t, w, work;
  std::vector<int> iwork;
};

// Algorithm 1 on finite inputs of moderate scale (update() owns the checks, the scaling and the
// single BLAS thread: all threading is ours, see gemm above).
template <typename T>
bool update_core(const Shape& sh, const Args<T>& a) {
  const int m = static_cast<int>(sh.blocks), b = static_cast<int>(sh.dim), k = static_cast<int>(sh.rank),
            s = static_cast<int>(sh.sketch);
  const T one = T(1), zero = T(0);
  const int workers = batch_workers(m, k);  // per-block problems are k x k
  // Column-major views: G (b x m, column i is g_i) is the row-major m x b input itself.
  const T* G = a.grads;
  std::vector<T> B_old(sz(b, k));
  for (int i = 0; i < b; ++i) {
    for (int j = 0; j < k; ++j) B_old[i + sz(j, b)] = a.basis[sz(i, k) + j];
  }
  const T* R = a.coeffs;  // m blocks of k x k (symmetric): the column-major k x (k m) [R_1 ...]
  // C = B^T G (k x m), Q = [R_i c_i] (k x m), |g_i|^2, S = sum_i R_i R_i^T.
  std::vector<T> C(sz(k, m)), Q(sz(k, m)), S(sz(k, k)), gsq(m);
  gemm<T>("T", "N", k, m, b, one, B_old.data(), b, G, b, zero, C.data(), k);
  parallel_for(m, workers, [&](int, int64_t blk) {
    const int i = static_cast<int>(blk);
    small_matvecs(k, 1, R + sz(i, sz(k, k)), C.data() + sz(i, k), Q.data() + sz(i, k), false);
    const T* gi = G + sz(i, b);
    double n2 = 0.0;
#pragma omp simd reduction(+ : n2)
    for (int e = 0; e < b; ++e) n2 += static_cast<double>(gi[e]) * gi[e];
    gsq[i] = static_cast<T>(n2);
  });
  const int km = k * m;
  gemm<T>("N", "T", k, k, km, one, R, k, R, k, zero, S.data(), k);

  // A Y for Y (b x s) through the expansion: with t = B^T Y (k x s) and gy = G^T Y (m x s),
  //   A Y = B (S t + Q gy) + G (Q^T t + diag(|g_i|^2) gy),
  // since sum_i p_i g_i^T Y = B Q gy and sum_i g_i p_i^T Y = G Q^T t for p_i = B R_i B^T g_i
  // = B q_i: two b x m x s products per application; P is never formed.
  std::vector<T> t1(sz(k, s)), t2(sz(k, s)), gy(sz(m, s)), zy(sz(m, s));
  auto apply_a = [&](const T* Y, T* AY) {
    gemm<T>("T", "N", k, s, b, one, B_old.data(), b, Y, b, zero, t1.data(), k);
    gemm<T>("T", "N", m, s, b, one, G, b, Y, b, zero, gy.data(), m);
    gemm<T>("T", "N", m, s, k, one, Q.data(), k, t1.data(), k, zero, zy.data(), m);
    for (int j = 0; j < s; ++j) {
      for (int i = 0; i < m; ++i) zy[i + sz(j, m)] += gsq[i] * gy[i + sz(j, m)];
    }
    gemm<T>("N", "N", k, s, k, one, S.data(), k, t1.data(), k, zero, t2.data(), k);
    gemm<T>("N", "N", k, s, m, one, Q.data(), k, gy.data(), m, one, t2.data(), k);
    gemm<T>("N", "N", b, s, k, one, B_old.data(), b, t2.data(), k, zero, AY, b);
    gemm<T>("N", "N", b, s, m, one, G, b, zy.data(), m, one, AY, b);
  };

  // Y0 (row-major b x s) -> column-major, orthonormalised; power iterations; Rayleigh-Ritz.
  std::vector<T> Y(sz(b, s)), AY(sz(b, s)), tau(s), work, ts(sz(s, s)), ws(s);
  std::vector<int> iwork;
  for (int i = 0; i < b; ++i) {
    for (int j = 0; j < s; ++j) Y[i + sz(j, b)] = a.y0[sz(i, s) + j];
  }
  if (!orthonormalise(Y.data(), b, s, tau, work)) return false;
  for (int it = 0; it < sh.power_iters; ++it) {
    apply_a(Y.data(), AY.data());
    std::swap(Y, AY);
    if (!orthonormalise(Y.data(), b, s, tau, work)) return false;
  }
  apply_a(Y.data(), AY.data());  // leaves gy = G^T Y for H below
  gemm<T>("T", "N", s, s, b, one, Y.data(), b, AY.data(), b, zero, ts.data(), s);
  for (int j = 0; j < s; ++j) {
    for (int i = 0; i < j; ++i) ts[i + sz(j, s)] = ts[j + sz(i, s)] = T(0.5) * (ts[i + sz(j, s)] + ts[j + sz(i, s)]);
  }
  if (!eigh_inplace(s, ts.data(), ws.data(), work, iwork)) return false;
  std::vector<T> W(sz(s, k)), B(sz(b, k));
  for (int j = 0; j < k; ++j) std::memcpy(W.data() + sz(j, s), ts.data() + sz(s - 1 - j, s), sz(s) * sizeof(T));
  gemm<T>("N", "N", b, k, s, one, Y.data(), b, W.data(), s, zero, B.data(), b);
  for (int i = 0; i < b; ++i) {
    for (int j = 0; j < k; ++j) a.basis_out[sz(i, k) + j] = B[i + sz(j, b)];
  }

  // E = B_new^T B_old (k x k); H = B_new^T G = W^T (G^T Y)^T (k x m), from gy.
  std::vector<T> E(sz(k, k)), H(sz(k, m));
  gemm<T>("T", "N", k, k, b, one, B.data(), b, B_old.data(), b, zero, E.data(), k);
  gemm<T>("T", "T", k, m, s, one, W.data(), s, gy.data(), m, zero, H.data(), k);

  // E R_i E^T for all blocks in two GEMMs: U = E [R_1 ... R_m] holds E R_i; its blocks
  // transposed are R_i E^T, and E [R_1 E^T ... R_m E^T] = [E R_1 E^T ...] (into vecs).
  std::vector<T> vecs(sz(m, sz(k, k))), shifted(sz(m, k));
  {
    std::vector<T> U(sz(m, sz(k, k)));
    gemm<T>("N", "N", k, km, k, one, E.data(), k, R, k, zero, U.data(), k);
    parallel_for(m, workers, [&](int, int64_t blk) { transpose_inplace(k, U.data() + sz(blk, sz(k, k))); });
    gemm<T>("N", "N", k, km, k, one, E.data(), k, U.data(), k, zero, vecs.data(), k);
  }
  std::vector<BlockScratch<T>> scratch(std::max(1, std::min(workers, m)));
  for (auto& sc : scratch) {
    sc.t.resize(sz(k, k));
    sc.w.resize(k);
  }
  std::vector<char> ok(m, 1);
  const int small_eigh_max = sizeof(T) == sizeof(float) ? 64 : 48;
  parallel_for(m, workers, [&](int worker, int64_t blk) {
    BlockScratch<T>& sc = scratch[worker];
    const int i = static_cast<int>(blk);
    const T* hi = H.data() + sz(i, k);
    T* rt = vecs.data() + sz(i, sz(k, k));  // R~ = E R_i E^T + h h^T, then its eigenvectors
    for (int c = 0; c < k; ++c) {
      for (int r = 0; r < k; ++r) rt[r + sz(c, k)] += hi[r] * hi[c];
    }
    for (int c = 0; c < k; ++c) {
      for (int r = 0; r < c; ++r) rt[r + sz(c, k)] = rt[c + sz(r, k)] = T(0.5) * (rt[r + sz(c, k)] + rt[c + sz(r, k)]);
    }
    // small_eigh beats syevd below a crossover (measured, one thread, SkylakeX kernels: 1.55x at
    // k = 32 float32, 1.35x at 64, even at 96, 0.78x at 128; float64 1.47x at 32, even at 64): no
    // per-call LAPACK overhead but unblocked loops. It declines (non-convergence) rather than
    // return garbage, and syevd then decides.
    bool done = false;
    if (k <= small_eigh_max) {
      std::memcpy(sc.t.data(), rt, sz(k, k) * sizeof(T));  // kept for the fallback
      done = small_eigh(k, rt, sc.w.data(), sc.work);
      if (!done) std::memcpy(rt, sc.t.data(), sz(k, k) * sizeof(T));
    }
    if (!done) {
      if (!eigh_inplace(k, rt, sc.w.data(), sc.work, sc.iwork)) {
        ok[i] = 0;
        return;
      }
    }
    // R_i = V diag(w - lmin) V^T; the eigendecomposition stays in vecs / shifted for the direction.
    const T lmin = sc.w[0];
    T* f = shifted.data() + sz(i, k);
    for (int j = 0; j < k; ++j) f[j] = std::max(sc.w[j] - lmin, T(0));
    scaled_gram(k, rt, f, a.coeffs_out + sz(i, sz(k, k)));
  });
  if (!std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; })) return false;

  // ||D_i||_2, D_i = B_old R_i B_old^T + g_i g_i^T - B R_i' B^T, by power iteration from
  // x_i = g_i + v, v_e = 1/(e+2), stopping when every estimate moved by less than 1e-3 relative
  // (at most mass_iters steps). D_i is symmetric with its range in span(W, r_i), W an orthonormal
  // basis of span(B_old, B) (kw <= 2k columns) and r_i = g_i - W W^T g_i, so D_i = P D_i P for
  // the projector P onto that (kw + 1)-dimensional space: the iteration runs on coordinates
  // there, with the same iterates and estimates as in R^b from the projected start, at
  // O(k^2) per block and step instead of O(b k). Coordinates of the start: W^T x_i = c_i + W^T v
  // and r_i^T x_i / |r_i| = (|r_i|^2 + g_i^T v - c_i^T W^T v) / |r_i|, with c_i = W^T g_i and
  // |r_i|^2 = |g_i|^2 - |c_i|^2 (r_i formed explicitly only where that subtraction cancels).
  const int kw = std::min(2 * k, b);
  std::vector<T> Wsp(sz(b, kw), T(0));
  if (2 * k < b) {
    std::memcpy(Wsp.data(), B_old.data(), sz(b, k) * sizeof(T));
    std::memcpy(Wsp.data() + sz(b, k), B.data(), sz(b, k) * sizeof(T));
    std::vector<T> tau_w(kw);
    if (!orthonormalise(Wsp.data(), b, kw, tau_w, work)) return false;
  } else {
    for (int i = 0; i < b; ++i) Wsp[i + sz(i, b)] = T(1);  // the whole space
  }
  std::vector<T> Cw(sz(kw, m)), Eo(sz(kw, k)), En(sz(kw, k)), Xw(sz(kw, m)), Yw(sz(kw, m));
  std::vector<T> Z(sz(k, m)), Z2(sz(k, m)), v(b), wv(kw), gv(m), rn(m), xr(m), yr(m);
  gemm<T>("T", "N", kw, m, b, one, Wsp.data(), b, G, b, zero, Cw.data(), kw);  // c_i
  gemm<T>("T", "N", kw, k, b, one, Wsp.data(), b, B_old.data(), b, zero, Eo.data(), kw);
  gemm<T>("T", "N", kw, k, b, one, Wsp.data(), b, B.data(), b, zero, En.data(), kw);
  for (int e = 0; e < b; ++e) v[e] = T(1) / static_cast<T>(e + 2);
  gemm<T>("T", "N", kw, 1, b, one, Wsp.data(), b, v.data(), b, zero, wv.data(), kw);  // W^T v
  gemm<T>("T", "N", m, 1, b, one, G, b, v.data(), b, zero, gv.data(), m);            // g_i^T v
  parallel_for(m, workers, [&](int, int64_t blk) {
    const int i = static_cast<int>(blk);
    const T* ci = Cw.data() + sz(i, kw);
    T* xi = Xw.data() + sz(i, kw);
    double c2 = 0.0, cv = 0.0;
    for (int e = 0; e < kw; ++e) {
      c2 += static_cast<double>(ci[e]) * ci[e];
      cv += static_cast<double>(ci[e]) * wv[e];
      xi[e] = ci[e] + wv[e];
    }
    const double g2 = gsq[i];
    double r2 = g2 - c2;
    if (2 * k < b && r2 < 0.5 * g2) {  // cancellation: r_i = g_i - W c_i explicitly
      std::vector<T> r(G + sz(i, b), G + sz(i + 1, b));
      for (int e = 0; e < kw; ++e) {
        const T* we = Wsp.data() + sz(e, b);
        for (int q = 0; q < b; ++q) r[q] -= ci[e] * we[q];
      }
      r2 = 0.0;
      for (int q = 0; q < b; ++q) r2 += static_cast<double>(r[q]) * r[q];
    }
    // g_i inside span(W) up to rounding: no extra direction.
    const bool outside = 2 * k < b && r2 > 64.0 * b * std::numeric_limits<T>::epsilon() * g2;
    const double rnorm = outside ? std::sqrt(r2) : 0.0;
    rn[i] = static_cast<T>(rnorm);
    xr[i] = outside ? static_cast<T>((r2 + static_cast<double>(gv[i]) - cv) / rnorm) : T(0);
  });
  std::vector<double> mass(m, 0.0), prev(m, -1.0);
  const T* Rnew = a.coeffs_out;
  for (int it = 0; it < sh.mass_iters; ++it) {
    for (int i = 0; i < m; ++i) {
      double nx = static_cast<double>(xr[i]) * xr[i];
      for (int e = 0; e < kw; ++e) nx += static_cast<double>(Xw[e + sz(i, kw)]) * Xw[e + sz(i, kw)];
      nx = std::sqrt(nx);
      const T inv = nx > 0 ? static_cast<T>(1.0 / nx) : T(0);
      for (int e = 0; e < kw; ++e) Xw[e + sz(i, kw)] *= inv;
      xr[i] *= inv;
    }
    // y = E_o R_i E_o^T x - E_n R_i' E_n^T x + c~ (c~^T x), c~ = (c_i, |r_i|).
    gemm<T>("T", "N", k, m, kw, one, Eo.data(), kw, Xw.data(), kw, zero, Z.data(), k);
    small_matvecs(k, m, R, Z.data(), Z2.data(), false);
    gemm<T>("N", "N", kw, m, k, one, Eo.data(), kw, Z2.data(), k, zero, Yw.data(), kw);
    gemm<T>("T", "N", k, m, kw, one, En.data(), kw, Xw.data(), kw, zero, Z.data(), k);
    small_matvecs(k, m, Rnew, Z.data(), Z2.data(), false);
    gemm<T>("N", "N", kw, m, k, -one, En.data(), kw, Z2.data(), k, one, Yw.data(), kw);
    bool settled = true;
    for (int i = 0; i < m; ++i) {
      const T* ci = Cw.data() + sz(i, kw);
      T* xi = Xw.data() + sz(i, kw);
      T* yi = Yw.data() + sz(i, kw);
      double cx = static_cast<double>(rn[i]) * xr[i];
      for (int e = 0; e < kw; ++e) cx += static_cast<double>(ci[e]) * xi[e];
      double ny = 0.0;
      for (int e = 0; e < kw; ++e) {
        yi[e] += static_cast<T>(cx) * ci[e];
        ny += static_cast<double>(yi[e]) * yi[e];
      }
      yr[i] = static_cast<T>(cx * rn[i]);
      ny += static_cast<double>(yr[i]) * yr[i];
      mass[i] = std::sqrt(ny);
      settled = settled && std::abs(mass[i] - prev[i]) <= 1e-3 * mass[i];
      prev[i] = mass[i];
    }
    std::swap(Xw, Yw);
    std::swap(xr, yr);
    if (settled) break;
  }
  // Directions u_i = (B R_i B^T + c I)^(-1/2) g_i, c = rho_i + eps, from R_i = V diag(f) V^T.
  // Where c is small against f (the amplification A = ((f_max + c) / c)^(1/2) > 2, i.e.
  // c^(-1/2) |g| much larger than the part in span(B)) the one-GEMM form
  //   u_i = c^(-1/2) g_i + B V [(f + c)^(-1/2) - c^(-1/2)] V^T h_i
  // cancels in span(B) and loses up to eps A relative, so there the split form
  //   u_i = c^(-1/2) (g_i - B h_i) + B V (f + c)^(-1/2) V^T h_i
  // is used with g_i - B h_i and h_i = B^T g_i in double (float operands widened exactly): what
  // is left is the sensitivity of the formula to the rounding of V and R_i themselves.
  std::vector<T> Vt_h(sz(k, m)), Zd(sz(k, m));
  std::vector<double> c0s(m);
  std::vector<char> amplified(m, 0);
  parallel_for(m, workers, [&](int, int64_t blk) {
    const int i = static_cast<int>(blk);
    const double rho = static_cast<double>(a.escaped[i]) + mass[i];
    a.step_mass[i] = static_cast<T>(mass[i]);
    a.escaped_out[i] = static_cast<T>(rho);
    const double c = rho + a.eps;
    c0s[i] = 1.0 / std::sqrt(c);
    double top = 0.0;
    for (int j = 0; j < k; ++j) top = std::max(top, static_cast<double>(shifted[sz(i, k) + j]));
    amplified[i] = (top + c) / c > 4.0 ? 1 : 0;
  });
  const bool split = std::any_of(amplified.begin(), amplified.end(), [](char v) { return v != 0; });
  parallel_for(m, workers, [&](int, int64_t blk) {
    const int i = static_cast<int>(blk);
    const double c = 1.0 / (c0s[i] * c0s[i]), c0 = split ? 0.0 : c0s[i];
    const T* vi = vecs.data() + sz(i, sz(k, k));
    small_matvecs(k, 1, vi, H.data() + sz(i, k), Vt_h.data() + sz(i, k), true);
    for (int j = 0; j < k; ++j) {
      const double f = static_cast<double>(shifted[sz(i, k) + j]);
      Vt_h[sz(i, k) + j] = static_cast<T>(Vt_h[sz(i, k) + j] * (1.0 / std::sqrt(f + c) - c0));
    }
    small_matvecs(k, 1, vi, Vt_h.data() + sz(i, k), Zd.data() + sz(i, k), false);
  });
  if (!split) {
    parallel_for(m, workers, [&](int, int64_t blk) {
      const int i = static_cast<int>(blk);
      T* u = a.direction + sz(i, b);
      const T* gi = G + sz(i, b);
      for (int e = 0; e < b; ++e) u[e] = static_cast<T>(c0s[i] * gi[e]);
    });
    // u (row-major m x b = column-major b x m) += B Zd.
    gemm<T>("N", "N", b, m, k, one, B.data(), b, Zd.data(), k, one, a.direction, b);
    return true;
  }
  // The split form: r = G - B (B^T G) in double (column-major b x m), then u = c0 r + B Zd.
  std::vector<double> B64(B.begin(), B.end()), R64(G, G + sz(m, b)), H64(sz(k, m));
  gemm<double>("T", "N", k, m, b, 1.0, B64.data(), b, R64.data(), b, 0.0, H64.data(), k);
  gemm<double>("N", "N", b, m, k, -1.0, B64.data(), b, H64.data(), k, 1.0, R64.data(), b);
  gemm<T>("N", "N", b, m, k, one, B.data(), b, Zd.data(), k, zero, a.direction, b);
  parallel_for(m, workers, [&](int, int64_t blk) {
    const int i = static_cast<int>(blk);
    T* u = a.direction + sz(i, b);
    const double* ri = R64.data() + sz(i, b);
    for (int e = 0; e < b; ++e) u[e] = static_cast<T>(c0s[i] * ri[e] + static_cast<double>(u[e]));
  });
  return true;
}

// max |B^T B - I| for the row-major b x k basis (the column-major k x b B^T).
template <typename T>
double orthonormality_error(int b, int k, const T* basis) {
  std::vector<T> gram(sz(k, k));
  gemm<T>("N", "T", k, k, b, T(1), basis, k, basis, k, T(0), gram.data(), k);
  double err = 0.0;
  for (int c = 0; c < k; ++c) {
    for (int r = 0; r < k; ++r) err = std::max(err, std::abs(static_cast<double>(gram[r + sz(c, k)]) - (r == c)));
  }
  return err;
}

}  // namespace

template <typename T>
Status update(const Shape& sh, const Args<T>& a) {
  const int64_t m = sh.blocks, b = sh.dim, k = sh.rank, s = sh.sketch;
  const size_t n_basis = sz(b, k), n_coeffs = sz(m, sz(k, k));
  auto keep_state = [&](Status status) {
    std::memcpy(a.basis_out, a.basis, n_basis * sizeof(T));
    std::memcpy(a.coeffs_out, a.coeffs, n_coeffs * sizeof(T));
    std::memcpy(a.escaped_out, a.escaped, sz(m) * sizeof(T));
    std::fill(a.direction, a.direction + sz(m, b), T(0));
    std::fill(a.step_mass, a.step_mass + sz(m), T(0));
    return status;
  };
  if (m < 0 || b < 0 || k < 0) return Status::kFailed;  // no outputs to write
  if (m < 1 || b < 1 || k < 1 || k > b || s < k || s > b || sh.power_iters < 0) return keep_state(Status::kFailed);
  // One BLAS thread for the whole call, checks included: a threaded BLAS call (the
  // orthonormality check's GEMM) wakes OpenBLAS's server threads, which then spin on the cores
  // that the next call's per-block loop needs (all threading is update_core's own).
  ScopedBlasThreads single(1);
  const FiniteMax<T> g_scan = finite_max_abs(a.grads, sz(m, b)), c_scan = finite_max_abs(a.coeffs, n_coeffs);
  if (!g_scan.finite || !all_finite(a.basis, n_basis) || !c_scan.finite || !all_finite(a.escaped, sz(m)) ||
      !all_finite(a.y0, sz(b, s))) {
    return keep_state(Status::kNonFiniteInput);
  }
  if (!std::all_of(a.escaped, a.escaped + m, [](T r) { return r >= T(0); })) return keep_state(Status::kInvalidState);
  for (int64_t i = 0; i < m; ++i) {
    if (!is_symmetric<T>(scan_symmetry(static_cast<int>(k), a.coeffs + sz(i, sz(k, k))), static_cast<int>(k))) {
      return keep_state(Status::kInvalidState);
    }
  }

  // Scaled copies of the gradients and the state where their size is outside the safe range.
  const T rho_max = *std::max_element(a.escaped, a.escaped + m);
  const double size = std::max({static_cast<double>(g_scan.max_abs), std::sqrt(static_cast<double>(c_scan.max_abs)),
                                std::sqrt(static_cast<double>(rho_max))});
  const int e = safe_exponent<T>(size);
  Args<T> scaled = a;
  std::vector<T> grads, coeffs, escaped;
  if (e != 0) {
    grads.assign(a.grads, a.grads + sz(m, b));
    coeffs.assign(a.coeffs, a.coeffs + n_coeffs);
    escaped.assign(a.escaped, a.escaped + m);
    scale_by_power_of_two(grads.data(), grads.size(), -e);
    scale_by_power_of_two(coeffs.data(), coeffs.size(), -2 * e);
    scale_by_power_of_two(escaped.data(), escaped.size(), -2 * e);
    scaled.grads = grads.data();
    scaled.coeffs = coeffs.data();
    scaled.escaped = escaped.data();
    scaled.eps = std::ldexp(a.eps, -2 * e);
  }
  if (!update_core<T>(sh, scaled)) return keep_state(Status::kFailed);

  // The a-posteriori checks, on the scaled outputs, then on the state scaled back.
  const T eps = std::numeric_limits<T>::epsilon();
  const FiniteMax<T> c_out = finite_max_abs(a.coeffs_out, n_coeffs);
  if (!all_finite(a.basis_out, n_basis) || !c_out.finite || !all_finite(a.escaped_out, sz(m)) ||
      !all_finite(a.direction, sz(m, b)) || !all_finite(a.step_mass, sz(m)) ||
      !(orthonormality_error(static_cast<int>(b), static_cast<int>(k), a.basis_out) <= 32.0 * (b + s) * eps)) {
    return keep_state(Status::kFailed);
  }
  // The new state's size scaled back, in double (wide enough for float; for double ldexp gives
  // Inf or 0/subnormal exactly where T cannot hold it): it must be a normal number of T, a test
  // that also holds where subnormals are flushed to zero (XLA's CPU threads).
  const T state_size = std::max(c_out.max_abs, max_abs(a.escaped_out, sz(m)));
  const double full_size = std::ldexp(static_cast<double>(state_size), 2 * e);
  if (state_size > T(0) && !(full_size >= std::numeric_limits<T>::min() && full_size <= std::numeric_limits<T>::max())) {
    return keep_state(Status::kOutOfRange);
  }
  if (e != 0) {
    scale_by_power_of_two(a.coeffs_out, n_coeffs, 2 * e);
    scale_by_power_of_two(a.escaped_out, sz(m), 2 * e);
    scale_by_power_of_two(a.step_mass, sz(m), 2 * e);
    if (!all_finite(a.coeffs_out, n_coeffs) || !all_finite(a.escaped_out, sz(m)) || !all_finite(a.step_mass, sz(m))) {
      return keep_state(Status::kOutOfRange);
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    // rho_i + mass_i >= rho_i, up to the rounding of the sum.
    if (!(a.escaped_out[i] >= a.escaped[i] * (1 - eps))) return keep_state(Status::kFailed);
  }
  return Status::kOk;
}

template Status update<float>(const Shape&, const Args<float>&);
template Status update<double>(const Shape&, const Args<double>&);

}  // namespace linalg_core::shared_basis
