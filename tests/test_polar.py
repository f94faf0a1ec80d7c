"""Polar factor: scipy.linalg.polar (float64) as the oracle, the schedules' derivation
(equioscillation) and bands, the residual's honesty against a float64 SVD of the returned q,
scale invariance, batching, portable/C++ parity and adversarial input.

Tolerances. In exact arithmetic q = U f(S) V^T for the iteration's composite polynomial f, so
||q - U V^T||_2 = max|f(s_i) - 1| <= residual; rounding adds the polar factor's sensitivity,
at most ~ kappa eps per unit backward error of the O(sqrt(k)) GEMM/SYRK products: the bound used
is residual + 10 kappa sqrt(k) eps. Certified quantities (residual, sigma bounds) are compared
with the float64 SVD of the stored q up to 4 sqrt(k) eps (the rounding of storing q in its dtype).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core import _jax
from linalg_core._native import cpu

EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def matrix(rng, m, n, kappa, dtype=np.float64, batch=()):
    """U diag(s) V^T with Haar U, V and s log-spaced from 1 down to 1/kappa."""
    k = min(m, n)
    out = np.empty(batch + (m, n))
    for idx in np.ndindex(*batch):
        u, _ = np.linalg.qr(rng.standard_normal((m, k)))
        v, _ = np.linalg.qr(rng.standard_normal((n, k)))
        out[idx] = (u * np.logspace(0, -np.log10(kappa), k)) @ v.T
    return out.astype(dtype)


def oracle(a):
    """scipy.linalg.polar in float64 (its 'right' factor for m >= n; transposed for wide)."""
    a = np.asarray(a, np.float64)
    if a.shape[0] >= a.shape[1]:
        return scipy.linalg.polar(a)[0]
    return scipy.linalg.polar(a.T)[0].T


def singular_values(q):
    return np.linalg.svd(np.asarray(q, np.float64), compute_uv=False)


def test_codes_come_from_the_compiled_module():
    assert lc.POLAR_STATUS == dict(cpu.polar_status)
    assert lc.POLAR_METHODS == dict(cpu.polar_methods)
    assert set(lc.POLAR_STATUS) >= {"ok", "non_finite_input", "zero_input", "not_converged", "fell_back", "failed"}
    assert list(cpu.polar_options) == ["svd", "converge", "tol", "max_iters", "fallback", "band_lower", "band_upper"]


# ---------------------------------------------------------------------------------------------
# Schedules


@given(st.floats(1e-6, 0.98), st.floats(1.0, 1.5))
def test_minimax_quintic_equioscillates(lower, upper):
    """Chebyshev alternation: 1 - p = +E, -E, +E, -E at the reference and |1 - p| <= E on the
    whole interval (which, {x, x^3, x^5} being a Haar system on (0, inf), makes p the minimax)."""
    lower = lower * upper
    coef, err, ref = lc.minimax_odd_quintic(lower, upper)
    p = lambda x: coef[0] * x + coef[1] * x ** 3 + coef[2] * x ** 5  # noqa: E731
    assert ref[0] == lower and ref[-1] == upper and np.all(np.diff(ref) > 0)
    np.testing.assert_allclose(1 - p(ref), err * np.array([1, -1, 1, -1]), rtol=1e-7, atol=1e-13)
    grid = np.linspace(lower, upper, 20001)
    # The dense grid's error may exceed E only by rounding of the float64 evaluation.
    assert np.max(np.abs(1 - p(grid))) <= err * (1 + 1e-7) + 1e-13


def composite_image(table, lower, points=200001):
    x = np.concatenate([np.geomspace(lower, 1.0, points), np.linspace(lower, 1.0, points)])
    for a, b, c in table:
        x = a * x + b * x ** 3 + c * x ** 5
    return x.min(), x.max()


@pytest.mark.parametrize("method", ["quintic", "polar_express"])
@pytest.mark.parametrize("steps", [1, 3, 5, 7])
def test_schedule_band_is_the_exact_image(method, steps):
    sched = lc.polar_schedule(method, steps)
    lo, hi = composite_image(sched.coefficients, sched.lower_bound)
    # The band is the exact image: a dense grid reaches it up to the grid spacing's effect.
    assert sched.band[0] <= lo + 1e-12 and sched.band[1] >= hi - 1e-12
    assert lo - sched.band[0] <= 1e-4 and sched.band[1] - hi <= 1e-4


def test_schedule_facts():
    classic = lc.polar_schedule("quintic", 5)
    np.testing.assert_array_equal(classic.coefficients, np.tile(lc.CLASSIC_QUINTIC, (5, 1)))
    # The classic quintic does not drive sigma to 1 (band about [0.47, 1.20] after 5 steps)...
    assert 0.4 < classic.band[0] < 0.5 and 1.19 < classic.band[1] < 1.21
    # ...the minimax schedule does better at equal steps, and converges as steps grow.
    widths = [np.subtract(*lc.polar_schedule("polar_express", s).band[::-1]) for s in (3, 5, 7, 9)]
    assert widths[1] < classic.band[1] - classic.band[0]
    assert all(w1 < w0 for w0, w1 in zip(widths, widths[1:])) and widths[-1] < 1e-2
    table = lc.polar_schedule("table", coefficients=[(1.5, -0.5, 0.0)] * 4, lower_bound=0.5)
    lo, hi = composite_image(table.coefficients, 0.5)
    assert table.band[0] <= lo + 1e-12 and hi <= table.band[1] + 1e-12


# ---------------------------------------------------------------------------------------------
# Accuracy against scipy.linalg.polar


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(24, 10), (10, 24), (16, 16)])
@pytest.mark.parametrize("kappa", [1.0, 1e3, 1e6])
@pytest.mark.parametrize("method", ["converge", "svd"])
def test_matches_scipy(rng, dtype, shape, kappa, method):
    a = matrix(rng, *shape, kappa, dtype)
    kw = dict(method="svd") if method == "svd" else dict(tol=1e-4 if dtype == np.float32 else 1e-10)
    q, info = lc.polar(a, **kw)
    assert q.dtype == dtype and info.status == lc.POLAR_STATUS["ok"] and bool(info.converged)
    k = min(shape)
    bound = float(info.residual) + 10 * kappa * np.sqrt(k) * EPS[dtype]  # module docstring
    assert np.linalg.norm(q.astype(np.float64) - oracle(a), 2) <= bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_converging_mode_reaches_tol_on_ill_conditioned_input(rng, dtype):
    a = matrix(rng, 30, 18, 1e6, dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    q, info = lc.polar(a, method="quintic", tol=tol)
    sv = singular_values(q)
    assert info.method == lc.POLAR_METHODS["newton_schulz"] and info.iterations > 5
    assert info.residual <= tol and np.max(np.abs(sv - 1)) <= tol


# ---------------------------------------------------------------------------------------------
# Honesty of the certified quantities


@given(st.data())
def test_residual_and_bounds_are_honest(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), "dtype")
    m, n = data.draw(st.integers(1, 24), "m"), data.draw(st.integers(1, 24), "n")
    kappa = data.draw(st.sampled_from([1.0, 10.0, 1e3, 1e6]), "kappa")
    kw = data.draw(st.sampled_from([dict(method="quintic"), dict(method="polar_express"),
                                    dict(method="polar_express", steps=8), dict(tol=1e-3), dict(method="svd")]), "kw")
    fallback = data.draw(st.booleans(), "fallback")
    if kw.get("method") == "svd":
        fallback = True
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    a = matrix(rng, m, n, kappa, dtype)
    q, info = lc.polar(a, fallback=fallback, **kw)
    assert np.all(np.isfinite(q))
    sv = singular_values(q)
    slack = 4 * np.sqrt(min(m, n)) * EPS[dtype]  # storing q in its dtype
    assert float(info.residual) >= np.max(np.abs(sv - 1)) - slack
    assert float(info.sigma_lower) <= sv.min() + slack and float(info.sigma_upper) >= sv.max() - slack
    if info.status == lc.POLAR_STATUS["ok"] and "tol" in kw:
        assert np.max(np.abs(sv - 1)) <= kw["tol"] + slack
    if info.status == lc.POLAR_STATUS["ok"] and kw.get("method") in ("quintic", "polar_express"):
        band = lc.polar_schedule(kw["method"], kw.get("steps")).band
        assert band[0] * 0.99 - slack <= sv.min() and sv.max() <= band[1] * 1.01 + slack


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method,steps", [("quintic", 5), ("quintic", 7), ("polar_express", 5), ("polar_express", 3)])
@pytest.mark.parametrize("shape", [(40, 16), (16, 40), (24, 24), (12, 60)])
def test_schedule_meets_its_band(rng, dtype, method, steps, shape):
    """Inputs whose scaled singular values lie in [lower_bound, 1]: the start scaling divides by
    at most k^(1/8) ||a||_2 (||G0^2||_F^(1/4) = (sum s^8)^(1/8)), so cond(a) <= 1 / (l k^(1/8))
    with 2% to spare suffices; then every singular value of q lies in the band, certified."""
    sched = lc.polar_schedule(method, steps)
    k = min(shape)
    kappa = 1 / (sched.lower_bound * k ** 0.125 * 1.02)
    a = matrix(rng, *shape, kappa, dtype)
    q, info = lc.polar(a, method=method, steps=steps, fallback=False)
    sv = singular_values(q)
    assert info.status == lc.POLAR_STATUS["ok"] and info.iterations == steps
    # The iteration's rounding (steps x sqrt(K) eps) is what separates q from the exact image.
    slack = 20 * steps * np.sqrt(max(shape)) * EPS[dtype]
    assert sched.band[0] - slack <= sv.min() and sv.max() <= sched.band[1] + slack


def test_out_of_band_reports_and_falls_back(rng):
    a = matrix(rng, 30, 20, 1e7)  # scaled sigma_min ~ 1e-7 < lower_bound: the band cannot be met
    q, info = lc.polar(a, method="quintic", fallback=False)
    assert info.status == lc.POLAR_STATUS["not_converged"] and np.all(np.isfinite(q))
    assert info.method == lc.POLAR_METHODS["newton_schulz"] and not info.converged
    assert float(info.sigma_lower) <= singular_values(q).min()
    q, info = lc.polar(a, method="quintic")
    assert info.status == lc.POLAR_STATUS["fell_back"] and info.method == lc.POLAR_METHODS["svd"]
    assert np.linalg.norm(q - oracle(a), 2) <= 10 * 1e7 * np.sqrt(20) * EPS[np.float64]


def test_rank_deficient_input_falls_back_to_an_orthogonal_factor(rng):
    a = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 8))  # rank 3 of 8
    q, info = lc.polar(a, tol=1e-8)
    assert info.status == lc.POLAR_STATUS["fell_back"]
    np.testing.assert_allclose(q.T @ q, np.eye(8), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Scale, zero input, batching, dtypes


@pytest.mark.parametrize("dtype,scales", [(np.float32, [1e30, 1e-30]), (np.float64, [1e200, 1e-200])])
@pytest.mark.parametrize("kw", [dict(method="quintic"), dict(tol=1e-3), dict(method="svd")])
def test_scale_invariance(rng, dtype, scales, kw):
    a = matrix(rng, 14, 9, 100.0, dtype)
    q0, info0 = lc.polar(a, **kw)
    for s in scales:
        b = (a.astype(np.float64) * s).astype(dtype)
        q, info = lc.polar(b, **kw)
        assert info.status == info0.status and info.iterations == info0.iterations
        # b differs from s a by one rounding per entry: a relative perturbation of eps.
        np.testing.assert_allclose(q, q0, atol=100 * 100.0 * EPS[dtype])
        np.testing.assert_allclose(info.norm_bound / s, info0.norm_bound, rtol=1e-5)
        assert info.norm_bound >= np.linalg.norm(b.astype(np.float64), 2) * (1 - 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_and_tiny_input(dtype):
    q, info = lc.polar(np.zeros((2, 5, 3), dtype))
    assert np.all(q == 0) and np.all(info.status == lc.POLAR_STATUS["zero_input"])
    assert np.all(info.residual == 1) and not np.any(info.converged) and np.all(info.norm_bound == 0)
    a = np.diag(np.array([1.0, 0.5, 0.25])).astype(dtype) * np.finfo(dtype).tiny * 4
    q, info = lc.polar(a, tol=1e-3)
    assert info.status == lc.POLAR_STATUS["ok"]
    np.testing.assert_allclose(q, np.eye(3), atol=2e-3)


def test_batched_equals_one_by_one(rng):
    a = matrix(rng, 9, 6, 50.0, batch=(2, 3))
    for kw in (dict(method="quintic"), dict(tol=1e-9), dict(method="svd")):
        q, info = lc.polar(a, **kw)
        assert q.shape == a.shape and info.status.shape == (2, 3)
        for idx in np.ndindex(2, 3):
            q1, info1 = lc.polar(a[idx], **kw)
            np.testing.assert_allclose(q[idx], q1, atol=1e-13)
            assert info.iterations[idx] == info1.iterations and info.status[idx] == info1.status


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_half_precision_inputs_computed_in_float32(rng, dtype):
    a = matrix(rng, 12, 8, 10.0).astype(dtype)
    q, info = lc.polar(a, tol=1e-4)
    assert q.dtype == np.dtype(dtype) and info.residual.dtype == np.float32
    assert info.status == lc.POLAR_STATUS["ok"]
    q32, _ = lc.polar(a.astype(np.float32), tol=1e-4)
    np.testing.assert_array_equal(q, q32.astype(dtype))


# ---------------------------------------------------------------------------------------------
# JAX: FFI, portable kernel, parity


CASES = [dict(method="quintic"), dict(method="quintic", fallback=False), dict(method="polar_express", steps=7),
         dict(tol=1e-9), dict(tol=1e-9, steps=0), dict(method="svd"),
         dict(method="table", coefficients=[(2.0, -1.5, 0.5)] * 6, lower_bound=0.1)]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items() if k != "coefficients"))
@pytest.mark.parametrize("shape", [(2, 11, 7), (2, 7, 11), (2, 30, 9)])
@pytest.mark.ffi_path
def test_portable_and_cpp_parity(rng, kw, shape):
    """Same status, method and iterations; answers equal up to the rounding of different
    summation orders propagated through the iteration (steps x sqrt(K) eps, amplified by kappa)."""
    a = matrix(rng, *shape[1:], 1e4, batch=shape[:1])  # (30, 9): the schedule on the Gram side
    a[1] *= 1e-120
    q_np, info_np = lc.polar(a, **kw)
    q_ffi, info_ffi = jax.jit(lambda x: lc.polar(x, **kw))(jnp.asarray(a))
    with _jax.portable_path():
        q_pt, info_pt = jax.jit(lambda x: lc.polar(x, **kw))(jnp.asarray(a))
    for info in (info_ffi, info_pt):
        np.testing.assert_array_equal(info.status, info_np.status)
        np.testing.assert_array_equal(info.method, info_np.method)
        np.testing.assert_array_equal(info.iterations, info_np.iterations)
        np.testing.assert_allclose(info.residual, info_np.residual, rtol=1e-3, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(q_ffi), q_np)
    steps = 30 + 10  # at most max_iters cubic steps after a schedule of up to 10
    np.testing.assert_allclose(np.asarray(q_pt), q_np, atol=1e4 * steps * np.sqrt(shape[1]) * EPS[np.float64])


def test_portable_float32_parity(rng):
    a = matrix(rng, 20, 12, 100.0, np.float32, batch=(3,))
    for kw in (dict(method="quintic"), dict(tol=1e-4)):
        q_np, info_np = lc.polar(a, **kw)
        with _jax.portable_path():
            q_pt, info_pt = lc.polar(jnp.asarray(a), **kw)
        np.testing.assert_array_equal(info_pt.status, info_np.status)
        # Iteration counts may differ by one step where a float32 residual lands at the tolerance.
        assert np.all(np.abs(np.asarray(info_pt.iterations) - info_np.iterations) <= 1)
        np.testing.assert_allclose(np.asarray(q_pt), q_np, atol=1e-3)


@pytest.mark.parametrize("portable", [False, True])
def test_jax_non_finite_and_zero_are_statuses(portable):
    a = np.ones((3, 4, 4))
    a[0, 1, 2] = np.nan
    a[1, 0, 0] = np.inf
    a[2] = 0
    with _jax.portable_path(portable):
        q, info = lc.polar(jnp.asarray(a))
    assert np.all(np.asarray(q) == 0)
    np.testing.assert_array_equal(info.status, [lc.POLAR_STATUS["non_finite_input"]] * 2 + [lc.POLAR_STATUS["zero_input"]])
    assert np.all(np.isfinite(np.asarray(info.residual)))


def test_vmap_matches_batch(rng):
    a = matrix(rng, 8, 5, 10.0, batch=(4,))
    q_b, _ = lc.polar(jnp.asarray(a), tol=1e-9)
    q_v, _ = jax.vmap(lambda x: lc.polar(x, tol=1e-9))(jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(q_v), np.asarray(q_b), atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Adversarial input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_numpy_non_finite_raises_naming_a(bad):
    a = np.eye(4)
    a[2, 1] = bad
    with pytest.raises(ValueError, match=r"\ba\b.*NaN or Inf"):
        lc.polar(a)


@pytest.mark.parametrize("a,match", [
    (np.ones(4), r"a must have shape \(\.\.\., m, n\)"),
    (np.ones((3, 0)), "non-empty"),
    (np.ones((3, 3), np.int64), "a must be a floating-point array"),
    (np.ones((3, 3), np.complex128), "a must be a floating-point array"),
])
def test_bad_arrays(a, match):
    with pytest.raises(ValueError, match=match):
        lc.polar(a)


@pytest.mark.parametrize("kw,match", [
    (dict(method="newton"), "'method' must be one of"),
    (dict(steps=-1), "'steps' must be >= 0"),
    (dict(steps=2.5), "'steps' must be an integer"),
    (dict(steps=True), "'steps' must be an integer"),
    (dict(steps=0), "'steps' must be >= 1 without 'tol'"),
    (dict(method="svd", steps=3), "method='svd' takes no"),
    (dict(method="table"), "needs 'coefficients'"),
    (dict(method="table", coefficients=np.ones((3, 2))), r"shape \(steps, 3\)"),
    (dict(method="table", coefficients=[(1.0, np.nan, 0.0)]), "finite array"),
    (dict(method="table", coefficients=np.ones((3, 3)), steps=2), "does not match"),
    (dict(method="quintic", coefficients=np.ones((3, 3))), "only for method='table'"),
    (dict(tol=0.0), "tol must be a positive"),
    (dict(tol=1.5), "'tol' must lie in"),
    (dict(lower_bound=0.0), "'lower_bound' must lie in"),
    (dict(lower_bound=1.0), "'lower_bound' must lie in"),
    (dict(max_iters=-2), "'max_iters' must be >= 0"),
])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        lc.polar(np.eye(3), **kw)


def test_tol_below_the_rounding_floor_stops_early(rng):
    """float32 cannot certify 1e-7 (floor ~ 2 (sqrt(m) + sqrt(n)) eps ~ 3e-6 here): the cubic
    phase stops once its bound stops halving instead of running max_iters steps."""
    a = matrix(rng, 64, 32, 10.0, np.float32)
    q, info = lc.polar(a, tol=1e-7, max_iters=50, fallback=False)
    assert info.status == lc.POLAR_STATUS["not_converged"] and not info.converged
    assert info.iterations < 5 + 12 and np.all(np.isfinite(q))
    assert np.max(np.abs(singular_values(q) - 1)) <= info.residual
