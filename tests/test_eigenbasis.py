"""Eigenbasis refresh: float64 eigh oracles on EMA-drifted statistics, the subspace-iteration
contraction bound, the permutation convention, the skip test, the fallback, honesty properties,
adversarial input, scale safety, batching and portable vs C++ parity.

Tolerances: ``QR``, ``Q^T A Q`` and ``eigh`` are backward stable, so every computed quantity is
exact for data perturbed by ``c n eps ||A||`` (``c`` a small constant, 16 here, as in the kernel's
own check); eigenvectors move by that over the eigengap (Davis-Kahan).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core import _jax
from linalg_core import testing as lct
from linalg_core.eigenbasis import orthonormality_tol

OK = lc.EIGENBASIS_STATUS["ok"]
M = lc.EIGENBASIS_METHODS
DTYPES = [np.float32, np.float64]


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def haar(rng, n, batch=()):
    q, r = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    return q * np.where(np.diagonal(r, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[..., None, :]


def planted(rng, n, ratio=0.7):
    """A PD matrix with eigenvalues ratio^i (gaps of relative size 1 - ratio) and its eigenvectors."""
    lam = ratio ** np.arange(n)
    v = haar(rng, n)
    return (v * lam) @ v.T, lam, v


def ema_stream(rng, n, steps, beta=0.95, rank=4, ratio=0.7):
    """A_t = beta A_{t-1} + (1 - beta) G_t G_t^T with G_t = V diag(sqrt(lam)) Z_t (n x rank):
    EMA statistics of gradients whose covariance has the planted spectrum lam."""
    _, lam, v = planted(rng, n, ratio)
    a = (v * lam) @ v.T
    out = []
    for _ in range(steps):
        g = (v * np.sqrt(lam)) @ rng.standard_normal((n, rank)) / np.sqrt(rank)
        a = beta * a + (1 - beta) * g @ g.T
        out.append((a + a.T) / 2)
    return out


def top_subspace(a, k):
    w, v = np.linalg.eigh(a)
    return w[::-1], v[:, ::-1][:, :k]


def tan_angle(q, v):
    """tan of the largest principal angle between span(q) and span(v) (orthonormal columns)."""
    c = np.clip(np.linalg.svd(v.T @ q, compute_uv=False).min(), 1e-300, 1.0)
    return np.sqrt(max(1.0 - c * c, 0.0)) / c


def presort(basis, perm):
    """The columns in their order before sorting: basis[:, i] = pre[:, perm[i]]."""
    pre = np.empty_like(basis)
    pre[..., perm] = basis
    return pre


def off_mass(a, q):
    b = q.T @ a @ q
    return np.linalg.norm(b - np.diag(np.diag(b))) / np.linalg.norm(b)


# --- float64 oracles -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_ema_drift_contraction_bound(rng, dtype):
    """On drifting EMA statistics, each one-step refresh obeys the subspace-iteration bound
    tan theta(qr(A Q)_k, V_k(A)) <= (lambda_{k+1} / lambda_k) tan theta(Q_k, V_k(A)) for the
    leading k columns (Golub and Van Loan, Thm. 8.2.2), up to the rounding of one QR; and the
    tracked basis stays close to the oracle's top eigenvectors."""
    n, k = 24, 4
    stream = ema_stream(rng, n, 30)
    q, _, _, info = lc.eigenbasis_refresh(stream[0].astype(dtype), None)
    assert int(info.status) == OK and int(info.method) == M["eigh"]
    # Rounding allowance: a QR of A Q is exact for A Q + E, ||E|| <= 16 n eps ||A||, which moves
    # the k-dimensional subspace by ||E|| / (lambda_k - lambda_{k+1}).
    # Tracking bound, by the triangle inequality for angles: theta(Q_{t-1}, V_k(A_t)) <=
    # theta_{t-1} + delta_t with delta_t the angle the oracle's subspace moved, and the step
    # contracts tan by rho_t: theta_t <= atan(rho_t tan(theta_{t-1} + delta_t)).
    _, v_prev = top_subspace(stream[0], k)
    bound = np.arctan(tan_angle(q.astype(np.float64)[:, :k], v_prev))
    for a in stream[1:]:
        w, vk = top_subspace(a, k)
        before = tan_angle(q.astype(np.float64)[:, :k], vk)
        new, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q)
        assert int(info.status) == OK and int(info.method) == M["power"] and int(info.iterations) == 1
        pre = presort(new, perm).astype(np.float64)
        after = tan_angle(pre[:, :k], vk)
        rho = w[k] / w[k - 1]
        rounding = 16 * n * eps(dtype) * w[0] / (w[k - 1] - w[k])
        assert after <= rho * before * (1 + 1e-6) + rounding
        delta = np.arctan(tan_angle(vk, v_prev))
        bound = np.arctan(rho * np.tan(min(bound + delta, np.pi / 2 - 1e-9))) + rounding
        assert np.arctan(after) <= bound * (1 + 1e-6)
        v_prev, q = vk, new
    # Ky Fan: the sum of the k largest estimates is at most the sum of the k largest eigenvalues.
    assert np.sum(lam[:k]) <= np.sum(w[:k]) * (1 + 16 * n * eps(dtype))
    assert lam[0] <= w[0] * (1 + 16 * n * eps(dtype))  # Rayleigh quotients never exceed lambda_max


@pytest.mark.parametrize("dtype", DTYPES)
def test_converges_to_eigh_on_fixed_matrix(rng, dtype):
    """Orthogonal iteration from a random basis: the eigenvalue estimates converge to the oracle's
    sorted eigenvalues (ratio 0.7 per step for every pair; 120 steps reach the rounding floor)."""
    n = 12
    a, lam_true, v = planted(rng, n)
    q = haar(rng, n).astype(dtype)
    for _ in range(4):
        q, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q, steps=30)
        assert int(info.status) == OK
    np.testing.assert_allclose(lam, lam_true, atol=lct.eigen_tolerance(dtype, n, 1.0, c=16))
    # Eigenvectors: error eps ||A|| / gap, gap_min = lambda_{n-1} - lambda_n.
    gap = lam_true[-2] - lam_true[-1]
    cos = np.abs(np.sum(q.astype(np.float64) * v, axis=0))
    assert np.all(1 - cos <= 16 * n * eps(dtype) / gap)


@pytest.mark.parametrize("dtype", DTYPES)
def test_initialise_without_basis_is_eigh(rng, dtype):
    n = 20
    g = rng.standard_normal((n, 2 * n))
    a = (g @ g.T).astype(dtype)
    q, lam, perm, info = lc.eigenbasis_refresh(a, None, steps=3)
    w = np.linalg.eigvalsh(a.astype(np.float64))[::-1]
    assert int(info.method) == M["eigh"] and int(info.iterations) == 0 and int(info.status) == OK
    np.testing.assert_allclose(lam, w, atol=lct.eigen_tolerance(dtype, n, w[0], c=16))
    # Sign convention: each column's largest-magnitude entry is positive.
    lead = q[np.argmax(np.abs(q), axis=0), np.arange(n)]
    assert np.all(lead > 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unchanged_eigenbasis_is_a_fixed_point(rng, dtype):
    """diag(R) >= 0 makes an exact eigenbasis of a PD matrix map to itself (no sign flips)."""
    n = 16
    a, lam_true, v = planted(rng, n)
    q = v.astype(dtype)
    new, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q)
    np.testing.assert_array_equal(perm, np.arange(n))  # already descending
    gap = np.min(-np.diff(lam_true))
    np.testing.assert_allclose(new, q, atol=16 * n * eps(dtype) / gap)


# --- permutation, skip, fallback -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_permutation_convention_and_moments(rng, dtype):
    """new[..., i] = old[..., perm[i]]: for a shuffled exact eigenbasis (steps=0) the returned
    columns are the incoming ones at perm, and moments kept per column follow with v[perm]."""
    n = 10
    a, lam_true, v = planted(rng, n)
    shuffle = rng.permutation(n)
    q = v[:, shuffle].astype(dtype)
    moments = rng.standard_normal(n).astype(dtype) ** 2  # one second moment per basis column
    new, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q, steps=0)
    assert int(info.status) == OK and int(info.method) == M["power"] and int(info.iterations) == 0
    np.testing.assert_array_equal(new, q[:, perm])  # no arithmetic on the columns with steps=0
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    np.testing.assert_array_equal(shuffle[perm], np.arange(n))  # sorted back to descending order
    d = np.einsum("ri,rs,si->i", q.astype(np.float64), a, q.astype(np.float64))
    np.testing.assert_allclose(lam, d[perm], atol=16 * n * eps(dtype))
    moved = moments[perm]
    for i in range(n):  # the moment of column j travels with column j
        j = perm[i]
        assert moved[i] == moments[j] and np.array_equal(new[:, i], q[:, j])


def test_permutation_after_a_power_step_matches_numpy_qr(rng):
    """One step against an independent float64 QR with diag(R) >= 0, then the sort."""
    n = 14
    stream = ema_stream(rng, n, 3)
    q0 = lc.eigenbasis_refresh(stream[0], None)[0]
    new, lam, perm, info = lc.eigenbasis_refresh(stream[2], q0)
    qq, r = np.linalg.qr(stream[2] @ q0)
    qq = qq * np.where(np.diag(r) < 0, -1.0, 1.0)
    d = np.einsum("ri,rs,si->i", qq, stream[2], qq)
    expected = np.argsort(-d, kind="stable")
    np.testing.assert_array_equal(perm, expected)
    # A QR's forward error is its backward error 16 n eps times the condition of A Q (that of A).
    w = np.linalg.eigvalsh(stream[2])
    np.testing.assert_allclose(new, qq[:, expected], atol=16 * n * eps(np.float64) * w[-1] / w[0])
    np.testing.assert_allclose(lam, d[expected], atol=16 * n * eps(np.float64))


@pytest.mark.parametrize("dtype,kappa", [(np.float32, 1e2), (np.float32, 1e5), (np.float32, 1e9),
                                         (np.float64, 1e2), (np.float64, 1e7), (np.float64, 1e13)])
def test_power_step_qr_across_conditioning(rng, dtype, kappa):
    """The power step's QR (Cholesky QR twice, Householder where the Gram matrix of A Q is too
    ill-conditioned) against an independent float64 Householder QR of the same rounded A Q
    inputs: the kappa values straddle where Cholesky QR gives way (float32 1e5 within its reach
    with the Gram matrix in double, 1e9 past it; float64 1e7 within, 1e13 past)."""
    n = 14
    lam = kappa ** (-np.arange(n) / (n - 1))
    v = haar(rng, n)
    a = ((v * lam) @ v.T).astype(dtype)
    a = (a + a.T) / 2
    q_in = np.linalg.qr(v + 1e-3 * rng.standard_normal((n, n)))[0].astype(dtype)
    new, _, perm, info = lc.eigenbasis_refresh(a, q_in)
    assert info.status == OK and info.method == M["power"]
    # Orthonormal to the documented tolerance, whichever QR ran.
    assert np.abs(new.astype(np.float64).T @ new - np.eye(n)).max() <= 2 * orthonormality_tol(dtype, n)
    c = a.astype(np.float64) @ q_in.astype(np.float64)
    qq, r = np.linalg.qr(c)
    qq = qq * np.where(np.diag(r) < 0, -1.0, 1.0)
    got = presort(new, perm).astype(np.float64)
    # Column j of the Q factor depends on the leading j + 1 columns of A Q, whose condition is
    # lam_0 / lam_j (A Q ~ V diag(lam)): its forward error is the QR's backward error 16 n eps
    # (the product A Q in dtype included) times that condition, at most 2 (a unit vector).
    tol = np.minimum(16 * n * eps(dtype) * lam[0] / lam, 2.0)
    err = np.abs(got - qq).max(axis=0)
    assert np.all(err <= tol), (err / tol).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_skip_test(rng, dtype):
    n = 12
    a, lam_true, v = planted(rng, n)
    order = rng.permutation(n)
    q = v[:, order].astype(dtype)
    # An exact eigenbasis passes: columns only permuted, bit for bit; fresh estimates.
    new, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q, skip_tol=1e-3)
    assert bool(info.skipped) and int(info.method) == M["skipped"] and int(info.iterations) == 0
    np.testing.assert_array_equal(new, q[:, perm])
    exact = off_mass(a, q.astype(np.float64))
    assert abs(float(info.off_diagonal) - exact) <= 16 * n * eps(dtype)
    assert float(info.residual) == float(info.off_diagonal)
    # A rotated basis does not pass: off_diagonal is the oracle's mass, and a power step is taken.
    g = rng.standard_normal((n, n)) * 0.05
    rot = np.linalg.qr(np.eye(n) + (g - g.T))[0]
    q2 = (v @ rot).astype(dtype)
    exact = off_mass(a, q2.astype(np.float64))
    new2, _, _, info2 = lc.eigenbasis_refresh(a.astype(dtype), q2, skip_tol=exact / 2)
    assert not bool(info2.skipped) and int(info2.method) == M["power"] and int(info2.iterations) == 1
    # The mass of B = Q^T A Q is computed from a product with error 16 n eps ||A||.
    assert abs(float(info2.off_diagonal) - exact) <= 16 * n * eps(dtype) * 2
    assert float(info2.residual) < float(info2.off_diagonal)  # a power step reduces the mass
    _, _, _, info3 = lc.eigenbasis_refresh(a.astype(dtype), q2, skip_tol=exact * 2)
    assert bool(info3.skipped)
    # Without skip_tol nothing is measured on the incoming basis.
    assert float(lc.eigenbasis_refresh(a.astype(dtype), q2)[3].off_diagonal) == -1


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_to_eigh(rng, dtype):
    n = 16
    a, lam_true, v = planted(rng, n, ratio=0.95)  # slow power iteration: 0.95 per step
    q = haar(rng, n).astype(dtype)  # unrelated to the eigenbasis
    new, lam, perm, info = lc.eigenbasis_refresh(a.astype(dtype), q, steps=2, fallback_tol=1e-3)
    assert int(info.method) == M["eigh"] and int(info.iterations) == 2 and int(info.status) == OK
    np.testing.assert_allclose(lam, lam_true, atol=lct.eigen_tolerance(dtype, n, 1.0, c=16))
    assert float(info.residual) <= 1e-3 and bool(info.converged)
    # Below the threshold no fallback; converged reports the threshold was missed.
    _, _, _, info2 = lc.eigenbasis_refresh(a.astype(dtype), q, steps=2)
    assert int(info2.method) == M["power"] and float(info2.residual) > 1e-3
    _, _, _, info3 = lc.eigenbasis_refresh(a.astype(dtype), q, steps=2, fallback_tol=0.99)
    assert int(info3.method) == M["power"] and bool(info3.converged) == (float(info3.residual) <= 0.99)


def test_zero_matrix_keeps_the_basis(rng):
    q = haar(rng, 6)
    new, lam, perm, info = lc.eigenbasis_refresh(np.zeros((6, 6)), q)
    np.testing.assert_array_equal(new, q)
    assert int(info.method) == M["skipped"] and np.all(lam == 0) and int(info.status) == OK
    new, lam, perm, info = lc.eigenbasis_refresh(np.zeros((6, 6)), None)
    np.testing.assert_array_equal(new, np.eye(6))


# --- honesty ---------------------------------------------------------------------------------


@given(data=st.data())
def test_honesty_property(data):
    """ok => orthonormal basis (16 n eps, the kernel's documented bound, recomputed in float64),
    eigvals descending and within 16 (n eps + ||Q^T Q - I||_F) ||A||_F of diag(Q^T A Q) (the
    rounding of one product of length n each way), perm a permutation; otherwise finite outputs."""
    dtype = data.draw(lct.dtypes())
    n = data.draw(st.integers(1, 12))
    a = data.draw(lct.psd_matrices(n, dtype=dtype, scale="wide"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    kind = data.draw(st.sampled_from(["none", "haar", "near"]))
    if kind == "none":
        basis = None
    elif kind == "haar":
        basis = haar(rng, n).astype(dtype)
    else:
        _, vecs = np.linalg.eigh(a.astype(np.float64))
        g = rng.standard_normal((n, n)) * data.draw(st.sampled_from([1e-6, 1e-3, 1e-1]))
        basis = (vecs @ np.linalg.qr(np.eye(n) + g - g.T)[0]).astype(dtype)
    kw = dict(steps=data.draw(st.integers(0, 3)),
              skip_tol=data.draw(st.sampled_from([None, 1e-4, 1e-1])),
              fallback_tol=data.draw(st.sampled_from([None, 1e-3, 0.5])))
    new, lam, perm, info = lc.eigenbasis_refresh(a, basis, **kw)
    for x in (new, lam, info.residual, info.off_diagonal, info.orthogonality):
        assert np.all(np.isfinite(x))
    if int(info.status) != OK:
        return
    q64, a64 = new.astype(np.float64), a.astype(np.float64)
    orth = np.abs(q64.T @ q64 - np.eye(n))
    assert orth.max() <= orthonormality_tol(dtype, n)
    d = np.einsum("ri,rs,si->i", q64, a64, q64)
    tol = 16 * (n * eps(dtype) + np.linalg.norm(orth)) * np.linalg.norm(a64)
    np.testing.assert_allclose(lam, d, atol=tol, rtol=0)
    assert np.all(np.diff(lam) <= 0)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


# --- adversarial input -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "basis"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_raises_naming_the_argument(rng, name, bad):
    a, _, v = planted(rng, 5)
    args = {"a": a.copy(), "basis": v.copy()}
    args[name][1, 2] = bad
    with pytest.raises(ValueError, match=name):
        lc.eigenbasis_refresh(args["a"], args["basis"])


def test_bad_input_raises(rng):
    a, _, v = planted(rng, 5)
    with pytest.raises(ValueError, match="'a'.*square"):
        lc.eigenbasis_refresh(a[:, :4], None)
    with pytest.raises(ValueError, match="'basis'.*shape"):
        lc.eigenbasis_refresh(a, v[:4])
    with pytest.raises(ValueError, match="a must be symmetric"):
        lc.eigenbasis_refresh(a + np.triu(np.ones((5, 5)), 1), v)
    with pytest.raises(ValueError, match="'basis' must have orthonormal columns"):
        lc.eigenbasis_refresh(a, v * 1.01)
    with pytest.raises(ValueError, match="a must be a floating"):
        lc.eigenbasis_refresh(np.eye(5, dtype=np.int64), None)
    with pytest.raises(ValueError, match="steps"):
        lc.eigenbasis_refresh(a, v, steps=-1)
    with pytest.raises(ValueError, match="steps"):
        lc.eigenbasis_refresh(a, v, steps=1.5)
    for name in ("skip_tol", "fallback_tol"):
        with pytest.raises(ValueError, match=name):
            lc.eigenbasis_refresh(a, v, **{name: -1.0})


def test_jax_bad_values_are_statuses(rng):
    """On the JAX path value problems are statuses; the incoming basis (or the identity where it
    is not finite) is returned with finite outputs."""
    a, _, v = planted(rng, 5)
    s = lc.EIGENBASIS_STATUS
    nan_a = a.copy()
    nan_a[0, 0] = np.nan
    nan_q = v.copy()
    nan_q[0, 0] = np.inf
    cases = [(nan_a, v, s["non_finite_input"], v), (a, nan_q, s["non_finite_input"], np.eye(5)),
             (a + np.triu(np.ones((5, 5)), 1), v, s["not_symmetric"], v),
             (a, v * 1.01, s["invalid_basis"], v * 1.01)]
    for portable in (False, True):
        with _jax.portable_path(portable):
            for aa, qq, status, returned in cases:
                new, lam, perm, info = jax.jit(lc.eigenbasis_refresh)(jnp.asarray(aa), jnp.asarray(qq))
                assert int(info.status) == status and int(info.method) == M["input"]
                np.testing.assert_array_equal(np.asarray(new), returned)
                assert np.all(np.asarray(lam) == 0) and np.array_equal(np.asarray(perm), np.arange(5))
                assert float(info.residual) == -1 and not bool(info.converged)


@pytest.mark.parametrize("dtype,scales", [(np.float32, (1e30, 1e-30)), (np.float64, (1e200, 1e-200))])
def test_scale_safety(rng, dtype, scales):
    """Power-of-two prescaling: c A gives c times the eigenvalues and the same basis (up to the
    rounding of c A itself, eps relative, over the eigengap)."""
    n = 10
    a, lam_true, v = planted(rng, n)
    q = haar(rng, n)
    ref_q, ref_l, ref_p, _ = lc.eigenbasis_refresh(a.astype(dtype), q.astype(dtype), steps=3)
    for c in scales:
        new, lam, perm, info = lc.eigenbasis_refresh((a * c).astype(dtype), q.astype(dtype), steps=3)
        assert int(info.status) == OK
        np.testing.assert_array_equal(perm, ref_p)
        np.testing.assert_allclose(lam / c, ref_l, rtol=0, atol=16 * n * eps(dtype))
        np.testing.assert_allclose(new, ref_q, atol=16 * n * eps(dtype) / (lam_true[-2] - lam_true[-1]))


# --- batching, dtypes, parity ----------------------------------------------------------------


def test_batching_matches_single_calls(rng):
    n = 8
    mats = np.stack([planted(rng, n)[0] for _ in range(6)]).reshape(2, 3, n, n)
    bases = haar(rng, n, (2, 3))
    out = lc.eigenbasis_refresh(mats, bases, steps=2, skip_tol=1e-6, fallback_tol=0.5)
    for i in range(2):
        for j in range(3):
            single = lc.eigenbasis_refresh(mats[i, j], bases[i, j], steps=2, skip_tol=1e-6, fallback_tol=0.5)
            np.testing.assert_array_equal(out[0][i, j], single[0])
            np.testing.assert_array_equal(out[1][i, j], single[1])
            np.testing.assert_array_equal(out[2][i, j], single[2])
            assert int(out[3].method[i, j]) == int(single[3].method)
    # vmap over the JAX path hands the batch to the kernel.
    f = jax.vmap(lambda x, y: lc.eigenbasis_refresh(x, y, steps=2)[1])
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(mats[0]), jnp.asarray(bases[0]))),
                               lc.eigenbasis_refresh(mats[0], bases[0], steps=2)[1], rtol=1e-12)


def test_low_precision_inputs_compute_in_float32(rng):
    a, _, v = planted(rng, 6)
    new, lam, perm, info = lc.eigenbasis_refresh(jnp.asarray(a, jnp.bfloat16), jnp.asarray(v, jnp.bfloat16),
                                                 skip_tol=0.5)
    assert new.dtype == jnp.float32 and lam.dtype == jnp.float32


PARITY_CASES = [dict(), dict(steps=3), dict(steps=0), dict(skip_tol=1e-2), dict(skip_tol=0.9),
                dict(fallback_tol=1e-3), dict(steps=2, skip_tol=1e-8, fallback_tol=0.2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", PARITY_CASES)
@pytest.mark.ffi_path
def test_portable_matches_cpp(rng, dtype, kw):
    """Same status, method, iterations and permutation; eigenvalues within the rounding of the
    few products each path takes (16 n eps ||A||), the basis within that times the condition of
    A; the C++ kernel accumulates masses in double, the portable one in the dtype, so residuals
    agree to 16 n eps."""
    n = 12
    stream = ema_stream(rng, n, 4)
    a = np.stack([stream[1], stream[3]]).astype(dtype)
    q = np.stack([lc.eigenbasis_refresh(stream[0], None)[0], haar(rng, n)]).astype(dtype)
    for basis in (q, None):
        ref = lc.eigenbasis_refresh(a, basis, **kw)
        call = jax.jit(lambda x, y: lc.eigenbasis_refresh(x, y, **kw))
        ffi = call(jnp.asarray(a), None if basis is None else jnp.asarray(basis))
        with _jax.portable_path():
            por = call(jnp.asarray(a), None if basis is None else jnp.asarray(basis))
        for other in (ffi, por):
            for field in ("status", "method", "iterations", "skipped"):
                np.testing.assert_array_equal(np.asarray(getattr(other[3], field)), getattr(ref[3], field))
            np.testing.assert_array_equal(np.asarray(other[2]), ref[2])
            tol = 16 * n * eps(dtype)
            np.testing.assert_allclose(np.asarray(other[1]), ref[1], atol=tol * np.abs(ref[1]).max())
            np.testing.assert_allclose(np.asarray(other[3].residual), ref[3].residual, atol=tol)
            # A QR's forward error is its backward error times the condition of A Q (= that of A).
            w = np.linalg.eigvalsh(a.astype(np.float64))
            np.testing.assert_allclose(np.asarray(other[0]), ref[0], atol=tol * np.max(w[:, -1] / w[:, 0]))


@given(data=st.data())
def test_portable_parity_property(data):
    """On random PSD input, random bases and options: the portable kernel reports the C++
    kernel's status, method and iterations, and eigenvalues within 16 n eps ||A||_F (the rounding
    of the products both take) wherever the status is ok. Methods agree away from the thresholds:
    the masses tested against skip_tol/fallback_tol differ by the rounding of those products, so
    draws within 1e-3 relative of a threshold are not compared on the method."""
    dtype = data.draw(lct.dtypes())
    n = data.draw(st.integers(1, 8))
    a = data.draw(lct.psd_matrices(n, dtype=dtype, scale="wide"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    basis = None if data.draw(st.booleans()) else haar(rng, n).astype(dtype)
    kw = dict(steps=data.draw(st.integers(0, 2)), skip_tol=data.draw(st.sampled_from([None, 1e-2])),
              fallback_tol=data.draw(st.sampled_from([None, 0.3])))
    ref = lc.eigenbasis_refresh(a, basis, **kw)
    with _jax.portable_path():
        got = lc.eigenbasis_refresh(jnp.asarray(a), None if basis is None else jnp.asarray(basis), **kw)
    assert int(got[3].status) == int(ref[3].status)
    near = any(t is not None and abs(float(x) - t) <= 1e-3 * t
               for t, x in ((kw["skip_tol"], ref[3].off_diagonal), (kw["fallback_tol"], ref[3].residual)))
    if not near:
        assert int(got[3].method) == int(ref[3].method)
        assert int(got[3].iterations) == int(ref[3].iterations)
    if int(ref[3].status) == OK and not near:
        tol = 16 * n * eps(dtype) * np.linalg.norm(a.astype(np.float64))
        np.testing.assert_allclose(np.asarray(got[1]), ref[1], atol=tol, rtol=0)


# --- the GPU path lowers on this machine -----------------------------------------------------


def _custom_calls(fn, args, platform):
    import re

    from jax import export

    ours = [export.DisabledSafetyCheck.custom_call(name) for name in lc._native.cpu.ffi_targets()]
    text = export.export(jax.jit(fn), platforms=[platform], disabled_checks=ours)(*args).mlir_module()
    return set(re.findall(r'call_target_name = "(\w+)"', text)) | set(re.findall(r"stablehlo.custom_call @(\w+)", text))


@pytest.mark.parametrize("kw", [dict(), dict(skip_tol=1e-3, fallback_tol=0.1, steps=2)])
@pytest.mark.parametrize("with_basis", [True, False])
@pytest.mark.ffi_path
def test_lowers_for_cuda_with_the_portable_kernel(kw, with_basis):
    """CUDA lowering takes the portable kernel (no linalg_core custom call), CPU the FFI one;
    under vmap too."""
    spec = jax.ShapeDtypeStruct((16, 16), jnp.float32)

    def fn(a, q):
        return lc.eigenbasis_refresh(a, q if with_basis else None, **kw)

    cuda = _custom_calls(fn, [spec, spec], "cuda")
    assert not any(t.startswith("linalg_core_") for t in cuda), cuda
    assert "linalg_core_eigenbasis_refresh" in _custom_calls(fn, [spec, spec], "cpu")
    batched = jax.ShapeDtypeStruct((3, 16, 16), jnp.float32)
    assert not any(t.startswith("linalg_core_") for t in _custom_calls(jax.vmap(fn), [batched, batched], "cuda"))


def test_one_contract_across_layers():
    """The codes and the option list come from cpp/eigenbasis.h through the module; the binding
    rejects options outside that list, and the FFI handler decodes exactly the attributes the
    Python layer sends (a missing one is an error there)."""
    cpu = lc._native.cpu
    assert lc.EIGENBASIS_STATUS == dict(cpu.eigenbasis_status)
    assert lc.EIGENBASIS_METHODS == dict(cpu.eigenbasis_methods)
    assert set(lc.EIGENBASIS_STATUS) == {"ok", "non_finite_input", "not_symmetric", "invalid_basis", "failed"}
    assert list(cpu.eigenbasis_options) == ["steps", "skip_tol", "fallback_tol", "has_basis"]
    a = np.eye(3)
    with pytest.raises(ValueError, match="unknown option"):
        cpu.eigenbasis_refresh(a, a, {"steps": 1, "bogus": 2})
    with pytest.raises(ValueError, match="steps"):
        cpu.eigenbasis_refresh(a, a, {"steps": "one"})
    from linalg_core.portable import eigenbasis as portable

    assert portable.EIGENBASIS_STATUS is lc.EIGENBASIS_STATUS
    probes = cpu.eigenbasis_probes(64)
    assert probes.shape == (64, 4) and set(np.unique(probes)) == {-1.0, 1.0}
