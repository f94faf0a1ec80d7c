"""Inverse p-th roots: float64 oracle over spectra and condition numbers, invariants, fallbacks.

Accuracy bound. The eigh root is exact for A + E with ||E||_2 <= c n eps ||A||_2 (backward
stability of syevd). For X = f(A), f(l) = (l + r)^(-1/p), the Daleckii-Krein formula bounds the
change by max |f'| ||E||: ||dX||_2 <= (1/p) (l_min + r)^(-1/p - 1) ||E||_2, so relative to
||X||_2 = (l_min + r)^(-1/p):  ||dX||_2 / ||X||_2 <= c n eps kappa / p, with
kappa = (l_max + r) / (l_min + r). The iterations stop at ||M - I||_inf <= tol and add their own
rounding of the same order; they are held to the same bound plus residual / p.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core import testing as lct

METHODS = ["eigh", "newton", "newton3"]


def oracle_root(a: np.ndarray, p: float, ridge: float) -> np.ndarray:
    w, v = np.linalg.eigh(np.asarray(a, np.float64))
    return (v * (np.maximum(w, 0) + ridge) ** (-1.0 / p)) @ v.T


def rel_error_bound(dtype, n: int, kappa: float, p: float, residual: float = 0.0) -> float:
    """c n eps kappa / p with c = 8 (module docstring), plus the iteration's residual / p."""
    return 8 * n * np.finfo(dtype).eps * kappa / p + max(residual, 0.0) / p


def spectral_rel_error(x, ref) -> float:
    return np.linalg.norm(np.asarray(x, np.float64) - ref, 2) / np.linalg.norm(ref, 2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2, 4, 8])
@pytest.mark.parametrize("kind", ["geometric", "clustered", "outlier", "rank_deficient"])
def test_matches_float64_oracle(rng, method, dtype, p, kind):
    n = 48
    conditions = {np.float32: [1e1, 1e3, 1e6], np.float64: [1e1, 1e6, 1e12]}[dtype]
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    for kappa in conditions:
        lam = {
            "geometric": np.geomspace(1, 1 / kappa, n),
            "clustered": np.repeat(np.geomspace(1, 1 / kappa, 4), n // 4),
            "outlier": np.concatenate([[1.0], np.geomspace(2, 1, n - 1) / kappa]),
            "rank_deficient": np.concatenate([np.geomspace(1, 1 / kappa, n // 2), np.zeros(n // 2)]),
        }[kind]
        a = ((q * lam) @ q.T).astype(dtype)
        eps = 1e-6 if dtype == np.float32 else 1e-12
        x, info = lc.inverse_root(a, p, eps=eps, method=method)
        assert bool(info.converged) and np.all(np.isfinite(x)) and x.dtype == np.dtype(dtype)
        r = float(info.ridge)
        ref = oracle_root(a, p, r)
        w = np.linalg.eigvalsh(a.astype(np.float64))
        kappa_r = (w.max() + r) / (max(w.min(), 0) + r)
        # A Rayleigh quotient: never above lambda_max (up to rounding); at least half of it is what
        # the scaled Newton start needs.
        assert 0.5 * w.max() <= float(info.lambda_max) <= w.max() * (1 + 10 * n * np.finfo(dtype).eps)
        bound = rel_error_bound(dtype, n, kappa_r, p, float(info.residual))
        if info.method == lc.ROOT_METHODS["eigh"] or method == "eigh":
            bound = rel_error_bound(dtype, n, kappa_r, p)
        assert spectral_rel_error(x, ref) <= bound, (kappa, info)


@pytest.mark.parametrize("method", METHODS)
def test_identity_and_diagonal(method):
    a = np.diag([16.0, 1.0, 1 / 16])
    x, info = lc.inverse_root(a, 4, eps=0.0, ridge="absolute", method=method)
    np.testing.assert_allclose(x, np.diag([0.5, 1.0, 2.0]), atol=1e-12)
    x, _ = lc.inverse_root(np.eye(5), 3, eps=0.0, ridge="absolute", method=method)
    np.testing.assert_allclose(x, np.eye(5), atol=1e-13)


@given(case=lct.spd_matrices_with_spectrum(st.integers(1, 24), condition=1e4), p=st.sampled_from([1, 2, 4]),
       method=st.sampled_from(METHODS))
def test_root_is_spd_and_commutes_with_a(case, p, method):
    a, lam = case
    x, info = lc.inverse_root(a, p, eps=1e-10, method=method)
    n = a.shape[0]
    # X is a polynomial in A up to rounding: symmetric, and XA = AX to O(n eps kappa) relative.
    norm_x = np.linalg.norm(x, 2)
    tol = 8 * n * np.finfo(np.float64).eps * 1e4 + float(max(info.residual, 0))
    assert np.abs(x - x.T).max() <= tol * norm_x
    assert np.linalg.eigvalsh((x + x.T) / 2).min() > 0
    assert np.abs(x @ a - a @ x).max() <= tol * norm_x * lam[0]


@given(case=lct.spd_matrices_with_spectrum(st.integers(2, 16), condition=1e3), q=st.data(),
       p=st.sampled_from([2, 4]), method=st.sampled_from(METHODS))
def test_equivariant_under_orthogonal_similarity(case, q, p, method):
    """(Q A Q^T)^(-1/p) = Q A^(-1/p) Q^T. With an absolute ridge: the relative ridge scales a
    power-iteration estimate of lambda_max started from A 1, which is not rotation-invariant."""
    a, lam = case
    n = a.shape[0]
    qm = q.draw(lct.orthogonal_matrices(n))
    b = qm @ a @ qm.T
    b = (b + b.T) / 2
    ridge = 1e-9 * lam[0]
    x, ix = lc.inverse_root(a, p, eps=ridge, ridge="absolute", method=method)
    y, iy = lc.inverse_root(b, p, eps=ridge, ridge="absolute", method=method)
    tol = rel_error_bound(np.float64, n, 1e3, p, float(ix.residual) + float(iy.residual)) * 4
    assert np.linalg.norm(qm @ x @ qm.T - y, 2) <= tol * np.linalg.norm(x, 2)


@given(case=lct.spd_matrices_with_spectrum(st.integers(1, 16), condition=1e3),
       k=st.integers(-20, 20), p=st.sampled_from([1, 2, 4, 8]), method=st.sampled_from(METHODS))
def test_scaling(case, k, p, method):
    """(c A)^(-1/p) = c^(-1/p) A^(-1/p); the relative ridge scales with A."""
    a, _ = case
    c = 2.0**k
    x, ix = lc.inverse_root(a, p, eps=1e-9, method=method)
    y, iy = lc.inverse_root(c * a, p, eps=1e-9, method=method)
    n = a.shape[0]
    tol = rel_error_bound(np.float64, n, 1e3, p, float(ix.residual) + float(iy.residual)) * 4
    assert np.linalg.norm(y - c ** (-1.0 / p) * x, 2) <= tol * np.linalg.norm(c ** (-1.0 / p) * x, 2)


@pytest.mark.parametrize("method", METHODS)
def test_p1_is_the_inverse(rng, method):
    g = rng.standard_normal((20, 20))
    a = g @ g.T + 0.1 * np.eye(20)
    x, info = lc.inverse_root(a, 1, eps=0.0, ridge="absolute", method=method)
    kappa = np.linalg.cond(a)
    assert spectral_rel_error(x, np.linalg.inv(a)) <= rel_error_bound(np.float64, 20, kappa, 1, float(info.residual))


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_looped(rng, method):
    g = rng.standard_normal((2, 3, 12, 12))
    a = g @ np.swapaxes(g, -1, -2) + 1e-2 * np.eye(12)
    x, info = lc.inverse_root(a, 4, method=method)
    assert x.shape == a.shape and info.status.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        xi, _ = lc.inverse_root(a[idx], 4, method=method)
        np.testing.assert_array_equal(x[idx], xi)


def test_fallback_when_the_iteration_cannot_converge(rng):
    g = rng.standard_normal((16, 16))
    a = g @ g.T + 1e-3 * np.eye(16)
    x, info = lc.inverse_root(a, 4, method="newton", max_iters=2)
    assert int(info.status) == lc.ROOT_STATUS["fell_back"]
    assert int(info.method) == lc.ROOT_METHODS["eigh"]
    np.testing.assert_allclose(x, oracle_root(a, 4, float(info.ridge)), rtol=1e-9, atol=1e-12)


def test_pseudo_inverse_mode(rng):
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    lam = np.array([4.0, 2.0, 1.0, 0.5] + [0.0] * 6)
    a = (q * lam) @ q.T
    x, info = lc.inverse_root(a, 2, pinv_threshold=1e-8)
    ref = (q[:, :4] * lam[:4] ** -0.5) @ q[:, :4].T
    assert float(info.ridge) == 0.0
    np.testing.assert_allclose(x, ref, atol=1e-10)


def test_float64_accumulation_improves_float32(rng):
    n = 64
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = ((q * np.geomspace(1, 1e-5, n)) @ q.T).astype(np.float32)
    x32, i32 = lc.inverse_root(a, 2, eps=1e-7)
    x64, i64 = lc.inverse_root(a, 2, eps=1e-7, accumulate_float64=True)
    ref = oracle_root(a, 2, float(i64.ridge))
    assert int(i64.method) == lc.ROOT_METHODS["eigh_float64"] and x64.dtype == np.float32
    assert spectral_rel_error(x64, ref) < spectral_rel_error(x32, ref)
    assert spectral_rel_error(x64, ref) <= 8 * np.finfo(np.float32).eps * 4  # rounding to float32


def test_true_residual(rng):
    g = rng.standard_normal((16, 16))
    a = g @ g.T + np.eye(16)
    _, info = lc.inverse_root(a, 4, true_residual=True)
    assert 0 <= float(info.residual) <= 16 * 16 * np.finfo(np.float64).eps * np.linalg.cond(a)
    _, info = lc.inverse_root(a, 4)
    assert float(info.residual) == -1.0


@pytest.mark.parametrize("method", METHODS)
def test_jax_matches_numpy_and_vmaps(rng, method):
    g = rng.standard_normal((3, 10, 10))
    a = g @ np.swapaxes(g, -1, -2) + 0.1 * np.eye(10)
    ref, rinfo = lc.inverse_root(a, 2, method=method)
    out, info = jax.jit(lambda m: lc.inverse_root(m, 2, method=method))(jnp.asarray(a))
    np.testing.assert_array_equal(np.asarray(out), ref)
    vm, _ = jax.vmap(lambda m: lc.inverse_root(m, 2, method=method))(jnp.asarray(a))
    np.testing.assert_array_equal(np.asarray(vm), ref)
    np.testing.assert_array_equal(np.asarray(info.iterations), rinfo.iterations)


def test_jax_non_finite_returns_previous(rng):
    a = jnp.eye(4).at[0, 0].set(jnp.nan)
    prev = 2 * jnp.eye(4)
    x, info = jax.jit(lambda m, q: lc.inverse_root(m, 2, prev=q))(a, prev)
    assert int(info.status) == lc.ROOT_STATUS["non_finite_input"]
    assert int(info.method) == lc.ROOT_METHODS["previous"]
    np.testing.assert_array_equal(np.asarray(x), np.asarray(prev))
    x, info = jax.jit(lambda m: lc.inverse_root(m, 2))(a)
    assert np.all(np.asarray(x) == 0) and not bool(info.converged)


def test_low_precision_input_is_computed_in_float32():
    x, _ = lc.inverse_root(np.eye(3, dtype=np.float16) * 4, 2, eps=0.0, ridge="absolute")
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, 0.5 * np.eye(3), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"a": np.ones((3, 4)), "p": 2}, "a must have shape"),
        ({"a": np.ones(3), "p": 2}, "a must have shape"),
        ({"a": np.eye(3, dtype=np.int64), "p": 2}, "floating"),
        ({"a": np.eye(3), "p": 0}, "p"),
        ({"a": np.eye(3), "p": 2.5, "method": "newton"}, "integer p"),
        ({"a": np.eye(3), "p": 2, "method": "svd"}, "method"),
        ({"a": np.eye(3), "p": 2, "ridge": "huge"}, "ridge"),
        ({"a": np.eye(3), "p": 2, "eps": -1.0}, "eps"),
        ({"a": np.eye(3), "p": 2, "prev": np.eye(4)}, "prev"),
        ({"a": np.full((3, 3), np.nan), "p": 2}, "a contains NaN"),
        ({"a": np.eye(3), "p": 2, "max_iters": 0}, "max_iters"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lc.inverse_root(**kwargs)


@pytest.mark.parametrize("n", [1, 2, 7, 200, 1024])
@pytest.mark.parametrize("method", METHODS)
def test_sizes(rng, n, method):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.geomspace(1.0, 1e-3, n)
    a = (q * lam) @ q.T
    x, info = lc.inverse_root(a, 2, eps=1e-12, method=method)
    ref = oracle_root(a, 2, float(info.ridge))
    kappa = (lam[0] + float(info.ridge)) / (lam[-1] + float(info.ridge))
    assert spectral_rel_error(x, ref) <= rel_error_bound(np.float64, n, kappa, 2, float(info.residual))


# ---------------------------------------------------------------------------------------------
# root_times


def _dense_compensated_root(state, p, eps):
    u, lam, rho = (np.asarray(x, np.float64) for x in state)
    d = u.shape[-2]
    w, v = np.linalg.eigh((u * lam) @ u.T + (rho + eps) * np.eye(d))
    return (v * w ** (-1.0 / p)) @ v.T


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_root_times_dense_sketched_and_identity(rng, backend):
    m, n = 12, 7
    g = rng.standard_normal((m, n))
    a = rng.standard_normal((m, m))
    left_root, _ = lc.inverse_root(a @ a.T, 4, eps=1e-3)
    sketch = lc.fd_init(n, 3, dtype=np.float64)
    sketch, _ = lc.fd_update(sketch, factor=rng.standard_normal((n, 5)))
    dense_right = _dense_compensated_root(sketch, 4, 1e-3)
    if backend == "jax":
        import jax.numpy as jnp

        g, left_root = jnp.asarray(g), jnp.asarray(left_root)
        sketch = lc.FDState(*(jnp.asarray(x) for x in sketch))
    want = np.asarray(left_root) @ np.asarray(g) @ dense_right
    got = lc.root_times(g, left_root, sketch, p=4, eps=1e-3)
    # Factored vs dense application of the same root: float64 rounding of a few products of
    # 12 x 12 matrices with entries O(1) (kappa of the compensated sketch <= ||S|| / eps ~ 1e4,
    # whose 4th root is 10).
    np.testing.assert_allclose(np.asarray(got), want, atol=64 * m * np.finfo(np.float64).eps * 10 * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(lc.root_times(g)), np.asarray(g))
    np.testing.assert_allclose(np.asarray(lc.root_times(g, right=sketch, p=4, eps=1e-3)),
                               np.asarray(g) @ dense_right, atol=1e-12 * np.abs(want).max() + 1e-12)


def test_root_times_batched_and_errors(rng):
    g = rng.standard_normal((3, 5, 4))
    left = np.broadcast_to(np.eye(5), (3, 5, 5)) * 2.0
    np.testing.assert_allclose(lc.root_times(g, left), 2.0 * g)
    with pytest.raises(ValueError, match="left must have shape"):
        lc.root_times(g, np.eye(4))
    with pytest.raises(ValueError, match="p= and eps="):
        lc.root_times(g, right=lc.fd_init(4, 2))
    with pytest.raises(ValueError, match="sketches d = 6"):
        lc.root_times(g, right=lc.fd_init(6, 2), p=2, eps=1e-3)
