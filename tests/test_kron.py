"""Kronecker power iteration: float64 oracle via the rearranged H, Shampoo's one step, exact
recovery, monotone cosine similarity, the vec convention.

Tolerances: every quantity is a few GEMMs or an SVD of data of norm ~||H||: backward error
c n eps ||H|| with n the inner dimension (N m n for the sample sums); c = 8.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc


def covariance(samples: np.ndarray) -> np.ndarray:
    """H = E[vec(G) vec(G)^T], column-major vec."""
    vecs = np.stack([g.reshape(-1, order="F") for g in samples])
    return vecs.T @ vecs / len(samples)


def rearranged_oracle(h, m, n):
    """R(H)[(j1, j2), (i1, i2)] = H[i1 + m j1, i2 + m j2], written with loops (independent)."""
    r = np.empty((n * n, m * m))
    for j1 in range(n):
        for j2 in range(n):
            for i1 in range(m):
                for i2 in range(m):
                    r[j1 * n + j2, i1 * m + i2] = h[i1 + m * j1, i2 + m * j2]
    return r


def test_vec_convention():
    """(A (x) B) vec(G) = vec(B G A^T) with column-major vec; np.kron(left, right) for row-major."""
    rng = np.random.default_rng(0)
    a, b, g = rng.standard_normal((3, 3)), rng.standard_normal((4, 4)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(np.kron(a, b) @ g.reshape(-1, order="F"), (b @ g @ a.T).reshape(-1, order="F"))
    left, right = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    left, right = left @ left.T, right @ right.T
    h_col = np.kron(right, left)  # column-major vec
    h_row = np.kron(left, right)  # row-major vec
    for _ in range(3):
        x = rng.standard_normal((4, 3))
        np.testing.assert_allclose(h_col @ x.reshape(-1, order="F"), (left @ x @ right).reshape(-1, order="F"))
        np.testing.assert_allclose(h_row @ x.reshape(-1), (left @ x @ right).reshape(-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(40, 3, 5), (60, 6, 4), (10, 2, 2)])
def test_converges_to_the_dense_optimum(rng, dtype, shape):
    n_samples, m, n = shape
    g = rng.standard_normal(shape).astype(dtype)
    h = covariance(g.astype(np.float64))
    u, s, vt = np.linalg.svd(rearranged_oracle(h, m, n))
    best = np.sqrt(max(np.linalg.norm(h) ** 2 - s[0] ** 2, 0.0))
    left, right, info = lc.kron_approx(g, steps=60)
    tol = 8 * n_samples * m * n * np.finfo(dtype).eps * np.linalg.norm(h)
    assert abs(float(info.sigma) - s[0]) <= tol + 1e-6 * s[0] * (dtype == np.float32)
    err = np.linalg.norm(h - np.kron(right.astype(np.float64), left.astype(np.float64)))
    assert err <= best + 10 * tol
    ld, rd, dinfo = lc.kron_approx_dense(h, m, n)
    np.testing.assert_allclose(np.kron(rd, ld), np.kron(right, left), atol=100 * tol)
    assert int(dinfo.method) == 1 and int(info.method) == 0
    for f in (left, right):
        assert np.linalg.eigvalsh(f.astype(np.float64)).min() >= -tol  # PSD


def test_one_step_is_shampoo(rng):
    g = rng.standard_normal((30, 5, 4))
    left, right, info = lc.kron_approx(g, steps=1)
    el = np.mean(g @ g.transpose(0, 2, 1), 0)
    er = np.mean(g.transpose(0, 2, 1) @ g, 0)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    np.testing.assert_allclose(unit(left), unit(el), atol=1e-14)
    np.testing.assert_allclose(unit(right), unit(er), atol=1e-14)
    assert int(info.iterations) == 1


def kronecker_samples(rng, l0, r0):
    """Samples with empirical covariance exactly r0 (x) l0: G_ab = sqrt(mn) l0^(1/2) e_a e_b^T r0^(1/2)."""
    m, n = len(l0), len(r0)
    wl, vl = np.linalg.eigh(l0)
    wr, vr = np.linalg.eigh(r0)
    lh, rh = (vl * np.sqrt(wl)) @ vl.T, (vr * np.sqrt(wr)) @ vr.T
    return np.stack([np.sqrt(m * n) * np.outer(lh[:, a], rh[b, :]) for a in range(m) for b in range(n)])


def test_exact_recovery_of_a_kronecker_covariance(rng):
    """Corollary 2: when H is a Kronecker product, one step has the exact factors' directions
    and two steps the exact product."""
    x, y = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    l0, r0 = x @ x.T + np.eye(4), y @ y.T + np.eye(3)
    g = kronecker_samples(rng, l0, r0)
    np.testing.assert_allclose(covariance(g), np.kron(r0, l0), atol=1e-12)
    left, right, _ = lc.kron_approx(g, steps=1)
    unit = lambda a: a / np.linalg.norm(a)  # noqa: E731
    np.testing.assert_allclose(unit(left), unit(l0), atol=1e-13)
    np.testing.assert_allclose(unit(right), unit(r0), atol=1e-13)
    left, right, info = lc.kron_approx(g, steps=2)
    np.testing.assert_allclose(np.kron(right, left), np.kron(r0, l0), atol=1e-11)
    assert float(info.residual) <= 1e-13
    cos = float(lc.kron_cosine(g, left, right))
    assert cos == pytest.approx(1.0, abs=1e-12)


def test_rank_one_rearranged_covariance(rng):
    """Binomial logistic regression: G_i = c_i x_i z^T with one z... written generally as
    H = a (x) b exactly (rank one in the rearranged sense): dense path and iteration exact."""
    b = rng.standard_normal((2, 2))
    b = b @ b.T
    a = np.diag([1.0, 2.0, 3.0])
    h = np.kron(a, b)  # right = a (n=3), left = b (m=2)
    ld, rd, _ = lc.kron_approx_dense(h, 2, 3)
    np.testing.assert_allclose(np.kron(rd, ld), h, atol=1e-13)
    g = kronecker_samples(rng, b, a)
    left, right, _ = lc.kron_approx(g, steps=2)
    np.testing.assert_allclose(np.kron(right, left), h, atol=1e-11)


@given(seed=st.integers(0, 2**31), m=st.integers(2, 6), n=st.integers(2, 6), n_samples=st.integers(1, 20))
def test_cosine_never_decreases_after_the_first_step(seed, m, n, n_samples):
    g = np.random.default_rng(seed).standard_normal((n_samples, m, n))
    cos = [float(lc.kron_cosine(g, *lc.kron_approx(g, steps=k)[:2])) for k in range(1, 7)]
    # Each alternating half-step maximises <H, R (x) L> over one unit-norm factor.
    assert all(b >= a - 1e-12 for a, b in zip(cos, cos[1:]))
    assert all(0 <= c <= 1 + 1e-12 for c in cos)


def test_cosine_matches_dense(rng):
    g = rng.standard_normal((25, 3, 4))
    left, right, _ = lc.kron_approx(g, steps=3)
    h = covariance(g)
    k = np.kron(right, left)
    ref = np.trace(h @ k) / (np.linalg.norm(h) * np.linalg.norm(k))
    assert float(lc.kron_cosine(g, left, right)) == pytest.approx(ref, rel=1e-12)


@pytest.mark.ffi_path
def test_batched_and_jax(rng):
    g = rng.standard_normal((2, 3, 20, 4, 5))
    left, right, info = lc.kron_approx(g, steps=4)
    assert left.shape == (2, 3, 4, 4) and right.shape == (2, 3, 5, 5) and info.sigma.shape == (2, 3)
    l1, r1, _ = lc.kron_approx(g[1, 2], steps=4)
    np.testing.assert_array_equal(left[1, 2], l1)
    lj, rj, ij = jax.jit(lambda x: lc.kron_approx(x, steps=4))(jnp.asarray(g))
    np.testing.assert_array_equal(np.asarray(lj), left)
    cj = jax.jit(lc.kron_cosine)(jnp.asarray(g), lj, rj)
    np.testing.assert_allclose(np.asarray(cj), lc.kron_cosine(g, left, right), rtol=1e-14)
    ld, rd, _ = lc.kron_approx_dense(jnp.asarray(covariance(g[0, 0])), 4, 5)
    assert ld.shape == (4, 4)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.kron_approx(np.ones((3, 4))), "samples"),
        (lambda: lc.kron_approx(np.ones((2, 3, 4)), steps=0), "steps"),
        (lambda: lc.kron_approx(np.ones((2, 3, 4), np.int32)), "floating"),
        (lambda: lc.kron_approx(np.full((2, 3, 4), np.nan)), "samples contains NaN"),
        (lambda: lc.kron_approx_dense(np.eye(5), 2, 3), "h must"),
        (lambda: lc.kron_approx_dense(np.eye(6), 2, 3, steps=3), "steps"),
        (lambda: lc.kron_cosine(np.ones((2, 3, 4)), np.eye(3), np.eye(3)), "right"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- Honest answers: status, scale safety, the input contract -------------------------------------

FIVE = ("status", "converged", "iterations", "residual", "method")


def _kron_backends():
    """(name, call) for the NumPy path, the JAX FFI path and the portable kernel (FORCE_PORTABLE)."""
    from linalg_core import _jax as lcjax

    def numpy_call(g, steps):
        return lc.kron_approx(g, steps=steps)

    def ffi_call(g, steps):
        return jax.tree.map(np.asarray, lc.kron_approx(jnp.asarray(g), steps=steps))

    def portable_call(g, steps):
        old = lcjax.FORCE_PORTABLE
        lcjax.FORCE_PORTABLE = True
        try:
            return jax.tree.map(np.asarray, jax.jit(lambda x: lc.kron_approx(x, steps=steps))(jnp.asarray(g)))
        finally:
            lcjax.FORCE_PORTABLE = old

    return {"numpy": numpy_call, "ffi": ffi_call, "portable": portable_call}


KRON_BACKENDS = _kron_backends()


def test_info_starts_with_the_common_fields():
    assert lc.KronInfo._fields[:5] == FIVE
    assert {"ok", "non_finite_input", "out_of_range", "failed"} <= set(lc.KRON_STATUS)
    assert lc.KRON_STATUS["ok"] == 0


@pytest.mark.parametrize("backend", sorted(KRON_BACKENDS))
@pytest.mark.parametrize("dtype,scales", [(np.float32, (1e-30, 1e-20, 1e-8, 1e8, 1e20, 1e30)),
                                          (np.float64, (1e-200, 1e-100, 1e100, 1e200))])
def test_kron_approx_is_scale_safe(rng, backend, dtype, scales):
    """Samples scaled by a power of ten give the factors scaled by it (they are linear in the
    samples), and sigma (quadratic) scaled by its square where the dtype holds it; where it does
    not, the status says out_of_range and the factors are still right. Never NaN with ok."""
    call = KRON_BACKENDS[backend]
    g = rng.standard_normal((12, 4, 3)).astype(dtype)
    ref_l, ref_r, ref = call(g, 3)
    assert int(ref.status) == lc.KRON_STATUS["ok"]
    info_max, info_tiny = float(np.finfo(dtype).max), float(np.finfo(dtype).tiny)
    for s in scales:
        x = (g.astype(np.float64) * s).astype(dtype)
        left, right, info = call(x, 3)
        assert np.isfinite(left).all() and np.isfinite(right).all() and np.isfinite(info.sigma)
        # Rounding the scaled samples to dtype (one ulp) and the iteration's own rounding on both
        # sides: 64 (N + m + n) eps relative to the factors' norms.
        tol = 64 * (12 + 4 + 3) * np.finfo(dtype).eps
        np.testing.assert_allclose(left / s, ref_l, atol=tol * np.abs(ref_l).max())
        np.testing.assert_allclose(right / s, ref_r, atol=tol * np.abs(ref_r).max())
        sigma = float(ref.sigma) * s * s
        if info_tiny <= sigma <= info_max:
            assert int(info.status) == lc.KRON_STATUS["ok"] and bool(info.converged) == bool(ref.converged)
            assert float(info.sigma) == pytest.approx(sigma, rel=float(tol))
        else:
            assert int(info.status) == lc.KRON_STATUS["out_of_range"] and not bool(info.converged)


@pytest.mark.parametrize("jax_path", [False, True])
@pytest.mark.parametrize("dtype,scales", [(np.float32, (1e-30, 1e-20, 1e20, 1e30)), (np.float64, (1e-200, 1e200))])
def test_kron_cosine_is_scale_invariant(rng, jax_path, dtype, scales):
    g = rng.standard_normal((12, 4, 3)).astype(dtype)
    left, right, _ = lc.kron_approx(g, steps=2)
    conv = (lambda x: jnp.asarray(x)) if jax_path else (lambda x: x)
    ref = float(lc.kron_cosine(conv(g), conv(left), conv(right)))
    assert 0.3 < ref <= 1
    for s in scales:
        for sg, sl, sr in ((s, 1, 1), (1, s, 1), (1, 1, s), (s, s, 1 / s)):
            args = [(a.astype(np.float64) * f).astype(dtype) for a, f in ((g, sg), (left, sl), (right, sr))]
            got = float(lc.kron_cosine(*(conv(a) for a in args)))
            # The scaled copies round once (one ulp each); the cosine is a ratio of sums of
            # N m n products: 16 N m n eps relative.
            assert got == pytest.approx(ref, rel=float(16 * 12 * 4 * 3 * np.finfo(dtype).eps)), (s, sg, sl, sr)


def test_kron_approx_dense_rejects_non_finite_h_and_never_hangs():
    h = np.eye(6)
    h[2, 3] = h[3, 2] = np.inf
    with pytest.raises(ValueError, match="h contains NaN or Inf"):
        lc.kron_approx_dense(h, 2, 3)
    left, right, info = lc.kron_approx_dense(jnp.asarray(h), 2, 3)
    assert int(info.status) == lc.KRON_STATUS["non_finite_input"] and not bool(info.converged)
    assert np.isfinite(np.asarray(left)).all() and np.isfinite(np.asarray(right)).all()
    assert np.isfinite(np.asarray(info.sigma)).all()


def test_kron_approx_dense_is_scale_safe_and_checks_symmetry(rng):
    g = rng.standard_normal((20, 2, 3))
    h = covariance(g)
    ref_l, ref_r, ref = lc.kron_approx_dense(h, 2, 3)
    for s in (1e-200, 1e200):
        left, right, info = lc.kron_approx_dense(h * s, 2, 3)
        np.testing.assert_allclose(left, ref_l * np.sqrt(s), rtol=1e-12, atol=1e-12 * np.abs(ref_l).max() * np.sqrt(s))
        np.testing.assert_allclose(right, ref_r * np.sqrt(s), rtol=1e-12, atol=1e-12 * np.abs(ref_r).max() * np.sqrt(s))
        assert float(info.sigma) == pytest.approx(float(ref.sigma) * s, rel=1e-12)
        assert int(info.status) == 0 and bool(info.converged)
    bad = h.copy()
    bad[0, 1] += 0.1
    with pytest.raises(ValueError, match="h must be symmetric"):
        lc.kron_approx_dense(bad, 2, 3)


@pytest.mark.parametrize("backend", ["ffi", "portable"])
def test_kron_approx_non_finite_samples_on_jax_give_a_status(rng, backend):
    g = rng.standard_normal((3, 10, 4, 3))
    g[1, 2, 0, 0] = np.nan
    g[2, 0, 1, 1] = np.inf
    left, right, info = KRON_BACKENDS[backend](g, 2)
    np.testing.assert_array_equal(info.status, [0, 1, 1])
    np.testing.assert_array_equal(info.converged[1:], False)
    for x in (left, right, info.sigma, info.residual):
        assert np.isfinite(x).all()
    ref_l, _, _ = lc.kron_approx(g[0], steps=2)
    np.testing.assert_allclose(left[0], ref_l, rtol=1e-12, atol=1e-12 * np.abs(ref_l).max())


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.kron_approx(np.ones((2, 3, 4)), steps=2.5), "steps"),
        (lambda: lc.kron_approx(np.ones((2, 3, 4)), steps=True), "steps"),
        (lambda: lc.kron_approx_dense(np.eye(6), 2.5, 3), "'m'"),
        (lambda: lc.kron_approx_dense(np.eye(6), 2, 3.0), "'n'"),
        (lambda: lc.kron_approx(np.full((2, 3, 4), np.inf)), "samples contains NaN or Inf"),
        (lambda: lc.kron_cosine(np.ones((2, 3, 4)), np.full((3, 3), np.nan), np.eye(4)), "left contains NaN"),
        (lambda: lc.kron_cosine(np.ones((2, 3, 4)), np.eye(3), np.full((4, 4), np.inf)), "right contains NaN"),
        (lambda: lc.kron_cosine(np.full((2, 3, 4), np.nan), np.eye(3), np.eye(4)), "samples contains NaN"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _power_iteration_oracle(g, steps):
    """The iteration of kron_approx in float64 NumPy, on samples normalised by an exact power of
    two (independent of the kernels): (left, right, sigma) of the normalised samples and the
    exponent e (factors scale by 2^e, sigma by 2^(2e))."""
    g = np.asarray(g, np.float64)
    e = int(np.frexp(np.abs(g).max())[1]) if np.abs(g).max() > 0 else 0
    g = np.ldexp(g, -e)
    count, m, n = g.shape
    left = np.einsum("imk,ilk->ml", g, g) / count
    right = np.einsum("imk,iml->kl", g, g) / count
    sigma = np.sqrt(np.linalg.norm(left) / np.sqrt(n) * np.linalg.norm(right) / np.sqrt(m))
    left, right = left / np.linalg.norm(left), right / np.linalg.norm(right)
    for _ in range(steps - 1):
        left = np.einsum("imk,kl,ijl->mj", g, right, g) / count
        left /= np.linalg.norm(left)
        right = np.einsum("imk,ml,ilj->kj", g, left, g) / count
        sigma = np.linalg.norm(right)
        right /= sigma
    return np.sqrt(sigma) * left, np.sqrt(sigma) * right, sigma, e


@given(data=st.data())
def test_honest_or_error(data):
    """Whenever status is ok the factors and sigma match a float64 oracle to a derived accuracy
    (out_of_range: the factors still do); otherwise the outputs are finite (zero for non-finite
    input). Scales 1e+-30 (float32) and 1e+-200 (float64), batches, the three backends."""
    backend = data.draw(st.sampled_from(sorted(KRON_BACKENDS)), label="backend")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    top = 30 if dtype == np.float32 else 200
    exponent = data.draw(st.integers(-top, top), label="log10 scale")
    steps = data.draw(st.sampled_from([1, 3]), label="steps")
    if backend == "numpy":
        shape = (data.draw(st.integers(1, 12)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
        batch = data.draw(st.sampled_from([(), (2,)]), label="batch")
    else:  # fixed shapes: one compilation per dtype and step count
        shape, batch = (8, 3, 4), (2,)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    spread = rng.uniform(0, 2, size=shape[-1])  # columns of different sizes: a non-trivial optimum
    x = (rng.standard_normal(batch + shape) * 10.0 ** (exponent - spread)).astype(dtype)
    poisoned = backend != "numpy" and data.draw(st.booleans(), label="poison")
    if poisoned:
        x[(0,) * (x.ndim - 3) + (0, 0, 0)] = np.inf
    left, right, info = KRON_BACKENDS[backend](x, steps)
    for out in (left, right, info.sigma, info.residual):
        assert np.isfinite(out).all()
    count, m, n = shape
    eps = np.finfo(dtype).eps
    # The kernels and the oracle differ by rounding: N-term sums of products of length m or n per
    # half-step, 2 steps - 1 half-steps, each relative to the factors' size: 64 (N + m + n) eps per
    # step (the unit-norm iterates do not amplify it for these well-separated spectra).
    tol = 64 * (count + m + n) * eps * steps
    status = np.asarray(info.status).reshape(-1)
    flat = x.reshape((-1,) + shape)
    for i, code in enumerate(status):
        li, ri = left.reshape((-1, m, m))[i], right.reshape((-1, n, n))[i]
        if poisoned and i == 0:
            assert code == lc.KRON_STATUS["non_finite_input"]
            assert not li.any() and not ri.any()
            continue
        ol, orr, osigma, e = _power_iteration_oracle(flat[i], steps)
        assert code in (lc.KRON_STATUS["ok"], lc.KRON_STATUS["out_of_range"]), code
        np.testing.assert_allclose(np.ldexp(li.astype(np.float64), -e), ol, atol=tol * np.abs(ol).max())
        np.testing.assert_allclose(np.ldexp(ri.astype(np.float64), -e), orr, atol=tol * np.abs(orr).max())
        sigma = float(np.ldexp(osigma, 2 * e))
        if code == lc.KRON_STATUS["ok"]:
            assert float(info.sigma.reshape(-1)[i]) == pytest.approx(sigma, rel=float(tol))
        else:  # honest: sigma is indeed outside the normal range
            assert not float(np.finfo(dtype).tiny) <= sigma <= float(np.finfo(dtype).max)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rank", [None, 1])
def test_steps_after_the_first_match_the_float64_iteration(rng, dtype, rank):
    """Steps >= 2 multiply each sample by a factor of the other side's PSD statistic: its
    Cholesky factor by TRMM where it is positive definite (full-rank samples), its square root
    where it is singular (rank-one samples, N = 2 < m, n: L and R have rank 2). Both against the
    float64 iteration."""
    count, m, n, steps = (24, 7, 5, 5) if rank is None else (2, 7, 5, 5)
    if rank is None:
        g = rng.standard_normal((count, m, n))
    else:
        g = np.einsum("im,in->imn", rng.standard_normal((count, m)), rng.standard_normal((count, n)))
    g = g.astype(dtype)
    left, right, info = lc.kron_approx(g, steps=steps)
    assert int(info.status) == lc.KRON_STATUS["ok"]
    ol, orr, sigma, e = _power_iteration_oracle(g, steps)
    # Each step's sums of N products of length m or n carry (N + m + n) eps relative rounding
    # (the kernel's own allowance is 32 (N + m + n) eps); over `steps` steps, with the
    # iteration's contraction keeping earlier errors from growing, 32 steps (N + m + n) eps.
    tol = 32 * steps * (count + m + n) * np.finfo(dtype).eps
    scale = 2.0 ** e
    np.testing.assert_allclose(left, ol * scale, atol=tol * np.abs(ol).max() * scale)
    np.testing.assert_allclose(right, orr * scale, atol=tol * np.abs(orr).max() * scale)
