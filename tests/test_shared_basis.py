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
        np.testing.assert_allclose(u[i], inv_sqrt_apply(precond, g[i]), atol=1e-9 * np.abs(u[i]).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_rank_is_block_diagonal_adagrad(rng, dtype):
    m, b, eps = 4, 8, 1e-2
    state = lc.shared_basis_init(m, b, b, dtype=dtype)
    stats = np.zeros((m, b, b))
    for t in range(5):
        g = rng.standard_normal((m, b)).astype(dtype)
        state, u, _ = lc.shared_basis_update(state, g, key=t, eps=eps)
        stats += np.einsum("ij,ik->ijk", g.astype(np.float64), g.astype(np.float64))
        ref = np.stack([inv_sqrt_apply(stats[i] + eps * np.eye(b), g[i].astype(np.float64)) for i in range(m)])
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


@pytest.mark.ffi_path
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


# --- Honest answers: status, scale safety, failures keep the state, the input contract ---------

FIVE = ("status", "converged", "iterations", "residual", "method")
STATUS = lc.SHARED_BASIS_STATUS


def _warm_state(rng, m, b, k, dtype, steps=2):
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    mix = rng.standard_normal((b, b)) * np.geomspace(1, 0.1, b)
    for t in range(steps):
        state, _, _ = lc.shared_basis_update(state, rng.standard_normal((m, b)) @ mix.T, key=t, eps=1e-3)
    return lc.SharedBasisState(*(x.astype(dtype) for x in state)), mix


def _sb_backends():
    import jax
    import jax.numpy as jnp

    from linalg_core import _jax as lcjax

    # One jitted function per (path, eps, power_iters): eps is a static attribute of the kernel,
    # and compiling the portable kernel dominates these tests' time.
    compiled = {}

    def numpy_call(state, g, eps, key=3, power_iters=1):
        return lc.shared_basis_update(state, g, key=key, eps=eps, power_iters=power_iters)

    def jax_call(state, g, eps, key=3, power_iters=1):
        name = (lcjax.FORCE_PORTABLE, float(eps), int(power_iters))
        if name not in compiled:
            compiled[name] = jax.jit(
                lambda s, x, kk: lc.shared_basis_update(s, x, key=kk, eps=eps, power_iters=power_iters))
        out = compiled[name](lc.SharedBasisState(*(jnp.asarray(x) for x in state)), jnp.asarray(g),
                             jax.random.key(key))
        return jax.tree.map(np.asarray, out)

    def portable_call(*args, **kwargs):
        old = lcjax.FORCE_PORTABLE
        lcjax.FORCE_PORTABLE = True
        try:
            return jax_call(*args, **kwargs)
        finally:
            lcjax.FORCE_PORTABLE = old

    return {"numpy": numpy_call, "ffi": jax_call, "portable": portable_call}


SB_BACKENDS = _sb_backends()


def test_info_starts_with_the_common_fields():
    assert lc.SharedBasisInfo._fields[:5] == FIVE
    assert STATUS["ok"] == 0 and {"non_finite_input", "invalid_state", "out_of_range", "failed"} <= set(STATUS)


@pytest.mark.parametrize("backend", sorted(SB_BACKENDS))
def test_direction_is_the_preconditioner_applied_not_its_negative(rng, backend):
    """direction[i] = +P_i g_i, P_i = (B R_i B^T + (rho_i + eps) I)^(-1/2) on the returned state,
    the sign of fd_apply_inverse_root (P x): the descent step -lr P g is the caller's."""
    m, b, k, eps = 5, 10, 3, 1e-3  # test_update_is_scale_safe's sizes: one compilation for both
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    state, _, _ = lc.shared_basis_update(state, rng.standard_normal((m, b)), key=0, eps=eps)
    g = rng.standard_normal((m, b))
    new, u, info = SB_BACKENDS[backend](state, g, eps)
    assert int(info.status) == STATUS["ok"]
    for i in range(m):
        precond = new.basis @ new.coeffs[i] @ new.basis.T + (new.escaped_mass[i] + eps) * np.eye(b)
        want = inv_sqrt_apply(precond, g[i])
        # As in _check_against_float64_oracle: 64 b eps c^(-1/2) |g_i| covers both sides'
        # products and eigensolvers; the opposite sign misses by 2 |want|, far outside it.
        c = float(new.escaped_mass[i]) + eps
        np.testing.assert_allclose(u[i], want, atol=64 * b * np.finfo(np.float64).eps * c ** -0.5 * np.abs(g[i]).max())
        assert float(u[i] @ g[i]) > 0  # g^T P g > 0 for P positive definite


@pytest.mark.parametrize("backend", sorted(SB_BACKENDS))
@pytest.mark.parametrize("dtype,scales", [(np.float32, (1e-18, 1e15)), (np.float64, (1e-150, 1e150))])
def test_update_is_scale_safe(rng, backend, dtype, scales):
    """Gradients scaled by s, the state and eps by s^2: the same direction, the state scaled by
    s^2 (the update is homogeneous), status ok while the scaled state fits the dtype."""
    call = SB_BACKENDS[backend]
    m, b, k = 5, 10, 3
    state, mix = _warm_state(rng, m, b, k, dtype)
    g = (rng.standard_normal((m, b)) @ mix.T).astype(dtype)
    ref_state, ref_u, ref_info = call(state, g, 1e-3)
    assert int(ref_info.status) == STATUS["ok"]
    for s in scales:
        scaled = lc.SharedBasisState(state.basis, (state.coeffs * (s * s)).astype(dtype),
                                     (state.escaped_mass * (s * s)).astype(dtype))
        new, u, info = call(scaled, (g.astype(np.float64) * s).astype(dtype), 1e-3 * s * s)
        assert int(info.status) == STATUS["ok"] and bool(info.converged), s
        for x in (*new, u, info.step_escaped_mass):
            assert np.isfinite(x).all()
        # The scaled inputs round once (one ulp), the kernels round on both sides: 64 b eps
        # relative to each output's largest entry. The escaped-mass power iteration stops when
        # consecutive estimates differ by 1e-3 (relative), from the start g_i + v (v fixed, not
        # scaled with g): each run is within 1e-3 / (1 - q) of the limit for a convergence ratio
        # q, so 1e-2 allows q <= 0.9; u_i, a function of (. + rho_i)^(-1/2), moves half as much.
        tol = 64 * b * np.finfo(dtype).eps
        np.testing.assert_allclose(u, ref_u, atol=(tol + 5e-3) * np.abs(ref_u).max())
        np.testing.assert_allclose(new.coeffs / (s * s), ref_state.coeffs, atol=tol * np.abs(ref_state.coeffs).max())
        np.testing.assert_allclose(new.escaped_mass / (s * s), ref_state.escaped_mass, rtol=1e-2)


@pytest.mark.parametrize("backend", sorted(SB_BACKENDS))
@pytest.mark.parametrize("dtype,scale", [(np.float32, 1e-20), (np.float32, 1e20), (np.float32, 1e-25),
                                         (np.float64, 1e-200), (np.float64, 1e200)])
def test_state_out_of_the_dtype_range_is_an_honest_failure(rng, backend, dtype, scale):
    """Gradients whose squares leave the dtype's normal range cannot give a state of full
    precision: status out_of_range, the state unchanged, the direction zero. Never NaN with ok."""
    m, b, k = 4, 8, 2
    state = lc.shared_basis_init(m, b, k, dtype=dtype)
    g = (rng.standard_normal((m, b)) * scale).astype(dtype)
    new, u, info = SB_BACKENDS[backend](state, g, 1e-3)
    for x in (*new, u, info.step_escaped_mass, info.residual):
        assert np.isfinite(x).all()
    if int(info.status) == STATUS["ok"]:
        # Only where the new state is representable: its largest entry is a normal number.
        assert np.abs(new.coeffs).max() >= np.finfo(dtype).tiny
    else:
        assert int(info.status) == STATUS["out_of_range"] and not bool(info.converged)
        for got, want in zip(new, state):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(u, 0)


@pytest.mark.parametrize("backend", sorted(SB_BACKENDS))
def test_float32_tiny_gradients_give_a_finite_escaped_mass(rng, backend):
    """float32 gradients of size 1e-20 from a warm state of matching scale: ok and accurate, or
    an honest failure with the state unchanged (never a NaN escaped mass with converged=True)."""
    m, b, k = 3, 8, 2
    unit, mix = _warm_state(rng, m, b, k, np.float64)
    g1 = rng.standard_normal((m, b)) @ mix.T
    s = 1e-17
    state = lc.SharedBasisState(unit.basis.astype(np.float32), (unit.coeffs * s * s).astype(np.float32),
                                (unit.escaped_mass * s * s).astype(np.float32))
    g = (g1 * s).astype(np.float32)
    new, u, info = SB_BACKENDS[backend](state, g, 1e-3 * s * s)
    assert np.isfinite(new.escaped_mass).all() and np.isfinite(u).all()
    assert int(info.status) == STATUS["ok"] and bool(info.converged)
    assert np.all(new.escaped_mass >= state.escaped_mass)
    # The same update at unit scale in float64: masses within the power iteration's 1e-2
    # (test_update_is_scale_safe), directions within half of that plus float32 rounding.
    ref, ref_u, _ = lc.shared_basis_update(unit, g1, key=3, eps=1e-3)
    np.testing.assert_allclose(new.escaped_mass / (s * s), ref.escaped_mass, rtol=1e-2)
    np.testing.assert_allclose(u, ref_u, atol=1e-2 * np.abs(ref_u).max())


@pytest.mark.parametrize("backend", ["ffi", "portable"])
@pytest.mark.parametrize("bad,code", [("nan_grads", "non_finite_input"), ("inf_coeffs", "non_finite_input"),
                                      ("nan_basis", "non_finite_input"), ("nan_mass", "non_finite_input"),
                                      ("negative_mass", "invalid_state"), ("asymmetric_coeffs", "invalid_state"),
                                      ("huge_grads", "out_of_range")])
def test_jax_failure_returns_the_input_state(rng, backend, bad, code):
    m, b, k = 5, 10, 3
    state, mix = _warm_state(rng, m, b, k, np.float32)
    g = (rng.standard_normal((m, b)) @ mix.T).astype(np.float32)
    basis, coeffs, mass = (x.copy() for x in state)
    if bad == "nan_grads":
        g[2, 3] = np.nan
    elif bad == "inf_coeffs":
        coeffs[1, 0, 0] = np.inf
    elif bad == "nan_basis":
        basis[0, 0] = np.nan
    elif bad == "nan_mass":
        mass[4] = np.nan
    elif bad == "negative_mass":
        mass[0] = -1.0
    elif bad == "asymmetric_coeffs":
        coeffs[3, 0, 2] += 0.1 * np.abs(coeffs[3]).max()  # far beyond 8 k eps (cpp/symmetry.h)
    elif bad == "huge_grads":
        g = g * np.float32(1e20)  # squares of 1e40 overflow float32
    bad_state = lc.SharedBasisState(basis, coeffs, mass)
    new, u, info = SB_BACKENDS[backend](bad_state, g, 1e-3)
    assert int(info.status) == STATUS[code] and not bool(info.converged)
    for got, want in zip(new, bad_state):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(u, 0)
    assert np.isfinite(info.step_escaped_mass).all() and np.isfinite(info.residual)


def _exact_direction(state, grads, eps, clip=False):
    """(B R_i B^T + c I)^(-1/2) g_i in float64 on the given (rounded) state, in the factored form
    c^(-1/2) (g_i - B h_i) + B V (w + c)^(-1/2) V^T h_i, h_i = B^T g_i, R_i = V diag(w) V^T."""
    basis = np.asarray(state.basis, np.float64)
    out = []
    for r, rho, g in zip(np.asarray(state.coeffs, np.float64), np.asarray(state.escaped_mass, np.float64), grads):
        w, v = np.linalg.eigh(r)
        w = np.maximum(w, 0.0) if clip else w  # a perturbed PSD R_i, as the kernel clips f >= 0
        c = rho + eps
        h = basis.T @ g
        out.append(c ** -0.5 * (g - basis @ h) + basis @ (v @ ((w + c) ** -0.5 * (v.T @ h))))
    return np.array(out)


@pytest.mark.parametrize("backend", sorted(SB_BACKENDS))
@pytest.mark.parametrize("along", ["random", "top"])
def test_direction_without_cancellation_when_rho_is_small(backend, along):
    """rho = 0, eps = 1e-6, coefficients 1e4..1e3 and the zero eigenvalue every R_i has (R_i =
    R~ - lambda_min(R~) I), gradients in span(B): the direction's part in span(B) is up to
    A = (lambda_max / c)^(1/2) ~ 1e3 times smaller than c^(-1/2) |g|, c = rho + eps after the
    update, and the one-GEMM form lost ~10 eps A to cancellation there. The exact formula on the
    returned state is itself sensitive to the rounding of R_i (its zero eigenvalue against c):
    that floor is measured here by perturbing each R_i by the backward error of a float32
    eigensolver, k eps32 max|R_i| per entry (3 draws), and the direction must lie within 2 times
    it plus the float32 evaluation 4 (b + k) eps32."""
    rng = np.random.default_rng(11)
    m, b, k, eps = 8, 64, 8, 1e-6
    basis = np.linalg.qr(rng.standard_normal((b, k)))[0]
    rots = [np.linalg.qr(rng.standard_normal((k, k)))[0] for _ in range(m)]
    coeffs = np.stack([(q * np.r_[np.geomspace(1e4, 1e3, k - 1), 0.0]) @ q.T for q in rots])
    state = lc.SharedBasisState(basis.astype(np.float32), coeffs.astype(np.float32), np.zeros(m, np.float32))
    coords = rng.standard_normal((m, k)) if along == "random" else 1e-2 * np.stack([q[:, 0] for q in rots])
    g = (coords @ basis.T).astype(np.float32)
    new, u, info = SB_BACKENDS[backend](state, g, eps)
    assert int(info.status) == STATUS["ok"]
    g64 = g.astype(np.float64)
    ref = _exact_direction(new, g64, eps)
    norm = np.linalg.norm(ref, axis=1)
    r64 = np.asarray(new.coeffs, np.float64)
    floor = np.zeros(m)
    for draw in range(3):
        # The float32 eigendecomposition of R~ is exact for a matrix within ~k eps32 ||R~||.
        scale = k * np.finfo(np.float32).eps * np.abs(r64).max(axis=(1, 2), keepdims=True)
        d = scale * np.random.default_rng(draw).uniform(-1, 1, r64.shape)
        moved = _exact_direction(lc.SharedBasisState(new.basis, r64 + (d + np.swapaxes(d, 1, 2)) / 2,
                                                     new.escaped_mass), g64, eps, clip=True)
        floor = np.maximum(floor, np.linalg.norm(moved - ref, axis=1) / norm)
    err = np.linalg.norm(np.asarray(u, np.float64) - ref, axis=1) / norm
    assert (err <= 2 * floor + 4 * (b + k) * np.finfo(np.float32).eps).all(), (err, floor)


def test_numpy_path_names_the_asymmetric_coefficients(rng):
    """The kernel finds the asymmetry (status invalid_state); the NumPy layer names the field."""
    state, mix = _warm_state(rng, 5, 10, 3, np.float64)
    coeffs = state.coeffs.copy()
    coeffs[4, 2, 1] += 1e-3 * np.abs(coeffs[4]).max()
    g = rng.standard_normal((5, 10)) @ mix.T
    with pytest.raises(ValueError, match="state.coeffs must be symmetric"):
        lc.shared_basis_update(lc.SharedBasisState(state.basis, coeffs, state.escaped_mass), g, key=0, eps=1e-3)


def test_a_huge_finite_gradient_is_ok_on_every_backend(rng):
    """1e9 float32 gradients (squares 1e18, inside the range) update the state like unit ones."""
    m, b, k = 5, 10, 3
    state, mix = _warm_state(rng, m, b, k, np.float32)
    g = (rng.standard_normal((m, b)) @ mix.T).astype(np.float32) * np.float32(1e9)
    for name, call in SB_BACKENDS.items():
        new, u, info = call(state, g, 1e-3)
        assert int(info.status) == STATUS["ok"], name
        assert np.isfinite(new.coeffs).all() and np.isfinite(u).all()
        assert np.abs(new.basis.T @ new.basis - np.eye(k)).max() <= 64 * b * np.finfo(np.float32).eps


def _state_with(field, value, m=2, b=4, k=2):
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    parts = state._asdict()
    arr = parts[field].copy()
    arr.flat[0] = value
    parts[field] = arr
    return lc.SharedBasisState(**parts)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.shared_basis_init(2, 4, 2.7), "'rank'"),
        (lambda: lc.shared_basis_init(2.0, 4, 2), "'blocks'"),
        (lambda: lc.shared_basis_init(2, 4.5, 2), "'block_dim'"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.ones((2, 4)), key=0, eps=1e-3,
                                        power_iters=1.5), "'power_iters'"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.ones((2, 4)), key=0, eps=1e-3,
                                        oversample=0.5), "'oversample'"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.full((2, 4), np.inf), key=0, eps=1e-3),
         "grads contains NaN or Inf"),
        (lambda: lc.shared_basis_update(_state_with("basis", np.nan), np.ones((2, 4)), key=0, eps=1e-3),
         "state.basis contains NaN"),
        (lambda: lc.shared_basis_update(_state_with("coeffs", np.inf), np.ones((2, 4)), key=0, eps=1e-3),
         "state.coeffs contains NaN"),
        (lambda: lc.shared_basis_update(_state_with("escaped_mass", np.nan), np.ones((2, 4)), key=0, eps=1e-3),
         "state.escaped_mass contains NaN"),
        (lambda: lc.shared_basis_update(_state_with("escaped_mass", -1.0), np.ones((2, 4)), key=0, eps=1e-3),
         "state.escaped_mass must be >= 0"),
        (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.ones((2, 4)), key=0, eps=np.inf), "eps"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _check_against_float64_oracle(state, g, new, u, info, eps, dtype):
    """The defining equations of one update, in float64 from the inputs and the returned basis:
    B orthonormal, R_i = B^T M_i B - lambda_min I, rho_i = rho_i(old) + step_i with step_i a
    lower estimate of ||M_i - B R_i B^T||_2, u_i = (B R_i B^T + (rho_i + eps) I)^(-1/2) g_i."""
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    basis, coeffs, mass, g = f64(new.basis), f64(new.coeffs), f64(new.escaped_mass), f64(g)
    m, b = g.shape
    k = basis.shape[1]
    ueps = np.finfo(dtype).eps
    # Householder QR and the Ritz rotation: orthonormal to c (b + k) eps.
    assert np.abs(basis.T @ basis - np.eye(k)).max() <= 64 * (b + k) * ueps
    blocks = dense_blocks(lc.SharedBasisState(f64(state.basis), f64(state.coeffs), None), g)
    for i in range(m):
        size = np.abs(blocks[i]).max()
        # GEMMs and a k x k eigensolver on data of size |M_i|, with B itself rounded to dtype:
        # 256 b eps |M_i|.
        tol = 256 * b * ueps * size
        rt = basis.T @ blocks[i] @ basis
        ref = rt - np.linalg.eigvalsh(rt)[0] * np.eye(k)
        np.testing.assert_allclose(coeffs[i], ref, atol=tol)
        true_norm = np.abs(np.linalg.eigvalsh(blocks[i] - basis @ coeffs[i] @ basis.T)).max()
        step = float(info.step_escaped_mass[i])
        assert 0 <= step <= true_norm + tol  # a power-iteration estimate never exceeds ||D||_2
        assert mass[i] == pytest.approx(float(state.escaped_mass[i]) + step, rel=float(4 * ueps), abs=float(tol))
        c = mass[i] + eps
        precond = basis @ coeffs[i] @ basis.T + c * np.eye(b)
        want = inv_sqrt_apply(precond, g[i])
        # The factored form's c^(-1/2) g_i term carries the rounding of everything: b eps c^(-1/2)
        # |g_i| per product, 64 for the products and eigensolvers of both sides.
        np.testing.assert_allclose(u[i], want, atol=64 * b * ueps * c ** -0.5 * np.abs(g[i]).max())


@given(data=st.data())
def test_honest_or_error(data):
    """Whenever the status is ok the update satisfies its defining equations against a float64
    oracle; whenever it is not, the state comes back unchanged and the direction is zero. Scales
    1e+-30 (float32) and 1e+-200 (float64) of the gradients (the state scaled by their square),
    the three backends, NaN/Inf and negative masses injected."""
    backend = data.draw(st.sampled_from(sorted(SB_BACKENDS)), label="backend")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    top = 30 if dtype == np.float32 else 200
    exponent = data.draw(st.integers(-top, top), label="log10 scale")
    if backend == "numpy":
        b = data.draw(st.integers(2, 10), label="b")
        m, k = data.draw(st.integers(1, 5), label="m"), data.draw(st.integers(1, b), label="k")
    else:  # fixed shapes: one compilation per dtype
        m, b, k = 5, 10, 3
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    state, mix = _warm_state(rng, m, b, k, np.float64)
    s = 10.0 ** exponent
    with np.errstate(over="ignore"):  # a state of size s^2 may overflow dtype: non-finite input
        state = lc.SharedBasisState(state.basis.astype(dtype), (state.coeffs * s * s).astype(dtype),
                                    (state.escaped_mass * s * s).astype(dtype))
    g = (rng.standard_normal((m, b)) @ mix.T * s).astype(dtype)
    if not all(np.isfinite(x).all() for x in state):
        if backend == "numpy":
            return  # a ValueError naming the field (test_bad_input_is_named)
        poison = "overflowed state"
    else:
        poison = data.draw(st.sampled_from(["none", "none", "grads", "coeffs", "mass"] if backend != "numpy" else ["none"]))
    if poison == "grads":
        g[0, 0] = np.nan
    elif poison == "coeffs":
        state.coeffs[0, 0, 0] = np.inf
    elif poison == "mass":
        state.escaped_mass[0] = -1.0
    eps = 1e-3
    new, u, info = SB_BACKENDS[backend](state, g, eps)
    for x in (u, info.step_escaped_mass, info.residual):
        assert np.isfinite(x).all()
    status = int(info.status)
    if poison in ("grads", "coeffs", "overflowed state"):
        assert status == STATUS["non_finite_input"]
    elif poison == "mass":
        assert status == STATUS["invalid_state"]
    if status == STATUS["ok"]:
        assert poison == "none" and bool(info.converged)
        assert all(np.isfinite(x).all() for x in new)
        _check_against_float64_oracle(state, g, new, u, info, eps, dtype)
    else:
        assert not bool(info.converged)
        for got, want in zip(new, state):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(u, 0)
        np.testing.assert_array_equal(info.step_escaped_mass, 0)
        # Not vacuous: a clean update fails only where the new state cannot be held.
        with np.errstate(divide="ignore"):  # log10 of the state's size, which may be 0
            log_size = max(np.log10(np.abs(state.coeffs.astype(np.float64)).max()),
                           2 * np.log10(np.abs(g.astype(np.float64)).max()))
        if poison == "none":
            assert status == STATUS["out_of_range"]
            finfo = np.finfo(dtype)
            assert not np.log10(finfo.tiny) + 4 <= log_size <= np.log10(finfo.max) - 4, log_size
