"""Shared-basis block low-rank update: dense oracle of every step, AdaGrad at k = b, invariants.

Tolerances: the dense oracle repeats the same finite-precision linear algebra on b x b
matrices (b <= 24): c b eps ||M|| with c = 100 covers the eigensolvers and GEMMs of both sides;
the escaped-mass power iteration (30 steps) is a lower bound converging at the rate of the two
largest |eigenvalues| of the difference, held to 10% of the dense spectral norm.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc


def dense_blocks(state, g):
    b_old, r_old = state.basis, state.coeffs
    return np.stack([b_old @ r_old[i] @ b_old.T + np.outer(g[i], g[i]) for i in range(len(g))])


def inv_sqrt_apply(mat, v):
    w, q = np.linalg.eigh(mat)
    return (q * w ** -0.5) @ q.T @ v


@pytest.mark.parametrize("k, b", [(1, 12), (3, 12), (6, 12), (56, 64)])  # k = 56 > 48: syevd path
def test_one_step_matches_dense_oracle(rng, k, b):
    m, eps = 5, 1e-3
    # A state with structure: a few steps first.
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    mix = rng.standard_normal((b, b)) * np.geomspace(1, 0.05, b)
    for t in range(3):
        state, _, _ = lc.shared_basis_update(state, rng.standard_normal((m, b)) @ mix.T, key=t, eps=eps, power_iters=30)
    g = rng.standard_normal((m, b)) @ mix.T
    new, u, info = lc.shared_basis_update(state, g, key=9, eps=eps, power_iters=30)
    blocks = dense_blocks(state, g)
    a = sum(mi @ mi.T for mi in blocks)
    w, v = np.linalg.eigh(a)
    top = v[:, ::-1][:, :k]
    basis = new.basis
    tol = 100 * b * np.finfo(np.float64).eps * np.abs(blocks).max()
    assert np.abs(basis.T @ basis - np.eye(k)).max() <= 100 * b * np.finfo(np.float64).eps
    wd = w[::-1]
    gap = wd[k - 1] / wd[k] if k < b else np.inf
    if gap > 1.5:
        # 30 subspace-iteration steps on A itself (oversample 0) shrink the angle to the top-k
        # subspace by (lambda_k+1 / lambda_k)^30 = gap^-30 (the start's tangent is O(1): the
        # previous basis); both sides' rounding adds ~ c b eps ||A|| / (lambda_k - lambda_k+1)
        # (Davis-Kahan), c = 100.
        bound = gap**-30 + 100 * b * np.finfo(np.float64).eps * wd[0] / (wd[k - 1] - wd[k])
        assert np.linalg.norm(basis @ basis.T - top @ top.T, 2) <= bound
    for i in range(m):
        rt = basis.T @ blocks[i] @ basis
        ref_r = rt - np.linalg.eigvalsh(rt)[0] * np.eye(k)
        np.testing.assert_allclose(new.coeffs[i], ref_r, atol=tol)
        assert np.linalg.eigvalsh(new.coeffs[i]).min() >= -tol  # PSD
        diff = blocks[i] - basis @ new.coeffs[i] @ basis.T
        true_norm = np.abs(np.linalg.eigvalsh(diff)).max()
        assert 0.9 * true_norm - tol <= info.step_escaped_mass[i] <= true_norm + tol
        np.testing.assert_allclose(new.escaped_mass[i], state.escaped_mass[i] + info.step_escaped_mass[i], rtol=1e-14)
        precond = basis @ new.coeffs[i] @ basis.T + (new.escaped_mass[i] + eps) * np.eye(b)
        np.testing.assert_allclose(u[i], -inv_sqrt_apply(precond, g[i]), atol=1e-9 * np.abs(u[i]).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_rank_is_block_diagonal_adagrad(rng, dtype):
    m, b, eps = 4, 8, 1e-2
    state = lc.shared_basis_init(m, b, b, dtype=dtype)
    stats = np.zeros((m, b, b))
    for t in range(5):
        g = rng.standard_normal((m, b)).astype(dtype)
        state, u, _ = lc.shared_basis_update(state, g, key=t, eps=eps)
        stats += np.einsum("ij,ik->ijk", g.astype(np.float64), g.astype(np.float64))
        ref = np.stack([-inv_sqrt_apply(stats[i] + eps * np.eye(b), g[i].astype(np.float64)) for i in range(m)])
        # Accumulated rounding over t steps of b x b eigensolvers, relative to |u|.
        atol = 1e3 * (t + 1) * b * np.finfo(dtype).eps * np.abs(ref).max() * (1 / eps) ** 0.5
        np.testing.assert_allclose(u, ref, atol=atol)


@given(seed=st.integers(0, 2**31), m=st.integers(1, 6), b=st.integers(2, 12), data=st.data())
def test_invariants_and_theorem_2(seed, m, b, data):
    """rho_i non-decreasing, B orthonormal, R_i PSD, and sum_i rho_i^(1/2) <= (3 m^3)^(1/4)
    (sum_i tr H_i)^(1/2) (Theorem 2) with H_i = sum_t g_i g_i^T."""
    k = data.draw(st.integers(1, b))
    rng = np.random.default_rng(seed)
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    trace = 0.0
    for t in range(data.draw(st.integers(1, 6))):
        g = rng.standard_normal((m, b)) * rng.uniform(0.1, 3)
        old = state.escaped_mass.copy()
        state, u, info = lc.shared_basis_update(state, g, key=t, eps=1e-3)
        trace += float((g**2).sum())
        assert np.all(state.escaped_mass >= old)
        assert np.abs(state.basis.T @ state.basis - np.eye(k)).max() <= 1e-10
        for r in state.coeffs:
            assert np.linalg.eigvalsh(r).min() >= -1e-10 * max(1.0, np.abs(r).max())
        assert np.all(np.isfinite(u))
    assert np.sqrt(state.escaped_mass).sum() <= (3 * m**3) ** 0.25 * np.sqrt(trace) * (1 + 1e-9)


def test_jax_path_matches_numpy(rng):
    import jax
    import jax.numpy as jnp

    m, b, k = 4, 10, 3
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    g0 = rng.standard_normal((m, b))
    state, _, _ = lc.shared_basis_update(state, g0, key=0, eps=1e-3, power_iters=2)
    g = rng.standard_normal((m, b))
    ref_state, ref_u, _ = lc.shared_basis_update(state, g, key=1, eps=1e-3, power_iters=2)
    jstate = lc.SharedBasisState(*(jnp.asarray(x) for x in state))
    out, u, info = jax.jit(lambda s, x, key: lc.shared_basis_update(s, x, key=key, eps=1e-3, power_iters=2))(
        jstate, jnp.asarray(g), jax.random.key(0))
    # Same warm start (the previous basis, no oversampling): the same kernel, bitwise.
    np.testing.assert_array_equal(np.asarray(u), ref_u)
    np.testing.assert_array_equal(np.asarray(out.escaped_mass), ref_state.escaped_mass)
    assert bool(info.converged)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.shared_basis_init(2, 4, 5), "rank"),
        (lambda: lc.shared_basis_init(0, 4, 2), "blocks"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.ones((3, 4)), key=0, eps=1e-3), "grads"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.ones((2, 4)), key=0, eps=0.0), "eps"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.full((2, 4), np.nan), key=0, eps=1e-3), "grads contains NaN"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
