"""Frequent Directions: float64 oracle, invariants (hypothesis), NumPy/JAX agreement, bad input.

Tolerances. Householder QR and LAPACK's symmetric eigensolvers are backward stable: the computed
decomposition is exact for C + E with ||E||_2 <= p(d) eps ||C||_2, p(d) = O(d) in the worst case
(Higham, Accuracy and Stability of Numerical Algorithms, Thm 19.4 and Sec. 11). Eigenvalues then
move by at most ||E||_2 (Weyl). The sketch S = U diag(lambda) U^T equals (C - mu_{l+1} I)_+, the
positive part of a shifted C, which moves by at most c log(d) ||E||_2 (Kato's bound for |.|), so
sketch comparisons use `(2 + log2 d)` times the eigenvalue tolerance. Over a stream of T updates
the backward errors add up: T times the per-step bound, at the largest ||C_t||.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core import testing as lct

DTYPES = [np.float32, np.float64]


def eig_tol(dtype, d: int, scale: float) -> float:
    """Backward-error bound p(d) eps ||C||, p(d) = 4 d (see the module docstring)."""
    return 4 * d * np.finfo(dtype).eps * scale


def sketch_tol(dtype, d: int, scale: float) -> float:
    return (2 + np.log2(max(d, 2))) * eig_tol(dtype, d, scale)


def sketch_matrix(state: lc.FDState) -> np.ndarray:
    u = np.asarray(state.basis, np.float64)
    return (u * np.asarray(state.eigvals, np.float64)[..., None, :]) @ np.swapaxes(u, -1, -2)


def oracle_update(state: lc.FDState, term: np.ndarray, beta: float):
    """Dense float64 FD update of one sketch: returns (S, lambda, rho_t, rho, ||C||)."""
    u = np.asarray(state.basis, np.float64)
    lam = np.asarray(state.eigvals, np.float64)
    d, rank = u.shape
    c = beta * (u * lam) @ u.T + term
    w, v = np.linalg.eigh(c)
    w, v = w[::-1], v[:, ::-1]
    rho_t = max(w[rank], 0.0) if rank < d else 0.0
    new_lam = np.maximum(w[:rank] - rho_t, 0)
    s = (v[:, :rank] * new_lam) @ v[:, :rank].T
    return s, new_lam, rho_t, beta * float(state.escaped_mass) + rho_t, max(w[0], 0.0)


def term_matrix(factor=None, matrix=None) -> np.ndarray:
    if matrix is not None:
        m = np.asarray(matrix, np.float64)
        return (m + m.T) / 2
    g = np.asarray(factor, np.float64)
    return g @ g.T


def random_state(rng, d, rank, dtype, steps=2):
    """A non-trivial sketch reached by a few updates (decaying spectrum)."""
    state = lc.fd_init(d, rank, dtype=dtype)
    scales = np.geomspace(1, 1e-2, d)
    for _ in range(steps):
        g = (scales[:, None] * rng.standard_normal((d, rank))).astype(dtype)
        state, _ = lc.fd_update(state, factor=g, beta=1.0)
    return state


# --------------------------------------------------------------------------- oracle, one update


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "form,method,cols",
    [
        ("factor", "thin_stack", 5),
        ("factor", "dense_eigh", 5),
        ("factor", "auto", 48),
        ("factor", "thin_stack_householder", 5),
        ("factor", "thin_stack", 70),  # l + r > d: only the Householder form applies
        ("matrix", "dense_eigh", 48),
    ],
)
@pytest.mark.parametrize("beta", [1.0, 0.9])
def test_update_matches_float64_oracle(rng, dtype, form, method, cols, beta):
    d, rank = 48, 12
    state = random_state(rng, d, rank, dtype)
    g = rng.standard_normal((d, cols)).astype(dtype)
    kwargs = {"factor": g} if form == "factor" else {"matrix": (g @ g.T).astype(dtype)}
    new, info = lc.fd_update(state, beta=beta, method=method, **kwargs)
    s_ref, lam_ref, rho_t_ref, rho_ref, norm_c = oracle_update(state, term_matrix(**kwargs), beta)

    assert bool(info.converged) and int(info.status) == 0
    tol = eig_tol(dtype, d, norm_c)
    np.testing.assert_allclose(new.eigvals, lam_ref, rtol=0, atol=2 * tol)  # two eigenvalues' errors
    assert abs(float(info.step_escaped_mass) - rho_t_ref) <= tol
    assert abs(float(new.escaped_mass) - rho_ref) <= tol + 4 * np.finfo(dtype).eps * rho_ref
    assert np.abs(sketch_matrix(new) - s_ref).max() <= sketch_tol(dtype, d, norm_c)
    # Orthonormal basis: Householder Q / MRRR vectors are orthonormal to O(d eps).
    u = np.asarray(new.basis, np.float64)
    assert np.abs(u.T @ u - np.eye(rank)).max() <= 4 * d * np.finfo(dtype).eps
    assert np.all(np.diff(np.asarray(new.eigvals)) <= 0) and np.all(np.asarray(new.eigvals) >= 0)
    assert float(info.residual) == pytest.approx(rho_t_ref / norm_c, abs=2 * tol / norm_c)
    expected_method = method
    if method == "auto":
        expected_method = "dense_eigh" if 4 * (rank + cols) > 3 * d else "thin_stack"
    if expected_method == "thin_stack" and rank + cols > d:
        expected_method = "thin_stack_householder"
    assert int(info.method) == lc.FD_METHODS[expected_method]


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_rank_sketch_is_exact(rng, dtype):
    """l = d keeps everything: rho stays 0 and the sketch equals the stream."""
    d = 10
    state = lc.fd_init(d, d, dtype=dtype)
    total = np.zeros((d, d))
    for _ in range(4):
        g = rng.standard_normal((d, 3)).astype(dtype)
        state, info = lc.fd_update(state, factor=g, beta=0.5)
        total = 0.5 * total + term_matrix(factor=g)
        assert float(info.step_escaped_mass) == 0.0
    assert float(state.escaped_mass) == 0.0
    assert np.abs(sketch_matrix(state) - total).max() <= 4 * sketch_tol(dtype, d, np.linalg.norm(total, 2))


def test_first_update_from_empty_state(rng):
    d, rank = 20, 4
    g = rng.standard_normal((d, 2))
    state, info = lc.fd_update(lc.fd_init(d, rank, dtype=np.float64), factor=g)
    # A rank-2 term in a rank-4 sketch: nothing escapes and the sketch is the term.
    assert float(info.step_escaped_mass) <= eig_tol(np.float64, d, np.linalg.norm(g, 2) ** 2)
    np.testing.assert_allclose(sketch_matrix(state), g @ g.T, atol=sketch_tol(np.float64, d, np.linalg.norm(g, 2) ** 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_term_inside_span_of_basis_falls_back_exactly(rng, dtype):
    """From the initial basis e_1..e_l, a term inside span(e_1..e_l) leaves G's orthogonal part
    zero; the projected thin stack detects the degenerate [U, Q2] and the Householder form
    gives the exact answer."""
    d, rank = 16, 6
    g = np.zeros((d, 3), dtype)
    g[:rank] = rng.standard_normal((rank, 3))
    state, info = lc.fd_update(lc.fd_init(d, rank, dtype=dtype), factor=g)
    assert int(info.method) == lc.FD_METHODS["thin_stack_householder"] and bool(info.converged)
    s_ref, _, _, _, norm_c = oracle_update(lc.fd_init(d, rank, dtype=dtype), term_matrix(factor=g), 1.0)
    assert np.abs(sketch_matrix(state) - s_ref).max() <= sketch_tol(dtype, d, norm_c)
    u = np.asarray(state.basis, np.float64)
    assert np.abs(u.T @ u - np.eye(rank)).max() <= 4 * d * np.finfo(dtype).eps


def test_zero_term_only_decays(rng):
    state = random_state(rng, 16, 4, np.float64)
    new, info = lc.fd_update(state, factor=np.zeros((16, 3)), beta=0.5)
    tol = eig_tol(np.float64, 16, float(state.eigvals[0]))
    np.testing.assert_allclose(new.eigvals, 0.5 * state.eigvals, atol=tol)
    assert float(info.step_escaped_mass) <= tol


# --------------------------------------------------------------------------- invariants on streams


def run_stream(stream, rank, beta, dtype):
    """Feeds a stream through fd_update; returns the final state, the float64 A_T and max ||A_t||."""
    d = stream.terms[0].shape[0]
    state = lc.fd_init(d, rank, dtype=dtype)
    total = np.zeros((d, d))
    peak = 0.0
    for term in stream.terms:
        kwargs = {"factor": term} if stream.form == "factor" else {"matrix": term}
        state, info = lc.fd_update(state, beta=beta, **kwargs)
        assert bool(info.converged)
        total = beta * total + term_matrix(**kwargs)
        peak = max(peak, np.linalg.norm(total, 2))
    return state, total, peak


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_stream_keeps_basis_orthonormal(rng, dtype):
    """The Cholesky-QR step stops rounding from accumulating in U over a long EMA stream: after
    300 updates the orthogonality error is still O(d eps), not O(T d eps)."""
    d, rank = 64, 16
    state = lc.fd_init(d, rank, dtype=dtype)
    scales = np.geomspace(1, 1e-3, d)
    for _ in range(300):
        g = (scales[:, None] * rng.standard_normal((d, 4))).astype(dtype)
        state, info = lc.fd_update(state, factor=g, beta=0.99)
        assert int(info.method) == lc.FD_METHODS["thin_stack"]
    u = np.asarray(state.basis, np.float64)
    assert np.abs(u.T @ u - np.eye(rank)).max() <= 4 * d * np.finfo(dtype).eps


@st.composite
def stream_cases(draw):
    dtype = draw(lct.dtypes())
    d = draw(st.integers(2, 24))
    rank = draw(st.integers(1, d))
    beta = draw(st.sampled_from([1.0, 0.99, 0.9, 0.5]))
    form = draw(st.sampled_from(["factor", "matrix"]))
    stream = draw(lct.fd_streams(d, steps=st.integers(1, 6), dtype=dtype, form=form))
    return dtype, d, rank, beta, stream


@given(stream_cases())
def test_sandwich_and_liberty_bounds(case):
    """0 <= A_T - S <= rho I and rho <= min_k sum_{i>k} lambda_i(A_T) / (l + 1 - k)."""
    dtype, d, rank, beta, stream = case
    state, total, peak = run_stream(stream, rank, beta, dtype)
    tol = len(stream.terms) * sketch_tol(dtype, d, peak)
    rho = float(state.escaped_mass)
    gap = np.linalg.eigvalsh(total - sketch_matrix(state))
    assert gap[0] >= -tol
    assert gap[-1] <= rho + tol
    lam = np.clip(np.linalg.eigvalsh(total)[::-1], 0, None)
    tails = np.array([lam[k:].sum() / (rank + 1 - k) for k in range(rank + 1)])
    assert rho <= tails.min() + tol * d
    u = np.asarray(state.basis, np.float64)
    assert np.abs(u.T @ u - np.eye(rank)).max() <= 4 * d * np.finfo(dtype).eps * len(stream.terms)
    ev = np.asarray(state.eigvals)
    assert np.all(np.diff(ev) <= 0) and np.all(ev >= 0) and np.all(np.isfinite(ev))


@given(
    dtype=lct.dtypes(),
    d=st.integers(3, 24),
    data=st.data(),
)
def test_exact_recovery_when_stream_rank_at_most_l(dtype, d, data):
    """A stream living in a k-dimensional subspace, k <= l, is sketched exactly (rho = 0)."""
    k = data.draw(st.integers(1, d - 1))
    rank = data.draw(st.integers(k, d))
    q = data.draw(lct.orthogonal_matrices(d))[:, :k]
    steps = data.draw(st.integers(1, 5))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    terms = [(q @ rng.standard_normal((k, data.draw(st.integers(1, 4))))).astype(dtype) for _ in range(steps)]
    state, total, peak = run_stream(lct.FDStream(terms, "factor"), rank, 0.9, dtype)
    tol = steps * sketch_tol(dtype, d, peak)
    assert float(state.escaped_mass) <= tol
    assert np.abs(sketch_matrix(state) - total).max() <= tol


@given(dtype=lct.dtypes(), d=st.integers(2, 16), data=st.data())
def test_equivariant_under_orthogonal_similarity(dtype, d, data):
    """Sketching the rotated stream Q g_t gives the rotated sketch Q S Q^T, the same rho."""
    rank = data.draw(st.integers(1, d))
    q = data.draw(lct.orthogonal_matrices(d))
    stream = data.draw(lct.fd_streams(d, steps=3, dtype=np.float64, form="factor"))
    rotated = lct.FDStream([(q @ g).astype(dtype) for g in stream.terms], "factor")
    plain = lct.FDStream([g.astype(dtype) for g in stream.terms], "factor")
    s1, _, peak = run_stream(plain, rank, 0.9, dtype)
    s2, _, _ = run_stream(rotated, rank, 0.9, dtype)
    tol = 3 * sketch_tol(dtype, d, peak) * 4  # two runs, plus the rounding of Q g_t to dtype
    assert abs(float(s1.escaped_mass) - float(s2.escaped_mass)) <= tol
    assert np.abs(q @ sketch_matrix(s1) @ q.T - sketch_matrix(s2)).max() <= tol


@given(dtype=lct.dtypes(), scale=st.sampled_from([1e-6, 1e-3, 10.0, 1e4]), data=st.data())
def test_scaling_terms_scales_the_sketch(dtype, scale, data):
    """Terms c*g_t give eigenvalues and escaped mass times c^2, the same basis span."""
    d = data.draw(st.integers(2, 16))
    rank = data.draw(st.integers(1, d))
    stream = data.draw(lct.fd_streams(d, steps=3, dtype=dtype, form="factor"))
    scaled = lct.FDStream([(scale * g).astype(dtype) for g in stream.terms], "factor")
    s1, _, peak = run_stream(stream, rank, 0.9, dtype)
    s2, _, _ = run_stream(scaled, rank, 0.9, dtype)
    tol = 3 * sketch_tol(dtype, d, peak) * 4
    assert abs(float(s2.escaped_mass) / scale**2 - float(s1.escaped_mass)) <= tol
    assert np.abs(sketch_matrix(s2) / scale**2 - sketch_matrix(s1)).max() <= tol


# --------------------------------------------------------------------------- batching, JAX


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_equals_looped(rng, dtype):
    d, rank, batch = 24, 6, (3, 2)
    state = lc.fd_init(d, rank, dtype=dtype, batch_shape=batch)
    g = rng.standard_normal(batch + (d, 5)).astype(dtype)
    beta = np.array([[1.0, 0.9], [0.5, 0.99], [0.7, 1.0]])
    for _ in range(2):
        state, info = lc.fd_update(state, factor=g, beta=beta)
    for idx in np.ndindex(*batch):
        single = lc.fd_init(d, rank, dtype=dtype)
        for _ in range(2):
            single, _ = lc.fd_update(single, factor=g[idx], beta=float(beta[idx]))
        np.testing.assert_array_equal(state.eigvals[idx], single.eigvals)
        np.testing.assert_array_equal(state.basis[idx], single.basis)
        np.testing.assert_array_equal(state.escaped_mass[idx], single.escaped_mass)
    assert info.status.shape == batch


def test_batch_broadcasts_state_and_term(rng):
    state = lc.fd_init(16, 4, dtype=np.float64)
    g = rng.standard_normal((5, 16, 3))
    new, info = lc.fd_update(state, factor=g)
    assert new.basis.shape == (5, 16, 4) and info.residual.shape == (5,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["factor", "matrix"])
@pytest.mark.ffi_path
def test_numpy_and_jax_paths_agree(rng, dtype, form):
    d, rank = 32, 8
    state = random_state(rng, d, rank, dtype)
    g = rng.standard_normal((d, 6)).astype(dtype)
    term = {"factor": g} if form == "factor" else {"matrix": (g @ g.T).astype(dtype)}
    ref, ref_info = lc.fd_update(state, beta=0.95, **term)
    jstate = lc.FDState(*(jnp.asarray(a) for a in state))
    jterm = {k: jnp.asarray(v) for k, v in term.items()}
    out, info = jax.jit(lambda s, t: lc.fd_update(s, beta=0.95, **t))(jstate, jterm)
    # Same kernel, same inputs, same LAPACK: bitwise equal.
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(np.asarray(a), b)
    np.testing.assert_array_equal(np.asarray(info.step_escaped_mass), ref_info.step_escaped_mass)
    assert out.basis.dtype == np.dtype(dtype)


@pytest.mark.ffi_path
def test_jax_vmap_and_traced_beta(rng):
    d, rank = 16, 4
    states = lc.fd_init(d, rank, dtype=np.float64, batch_shape=(3,), backend="jax")
    g = jnp.asarray(rng.standard_normal((3, d, 2)))
    betas = jnp.asarray([1.0, 0.9, 0.5])
    f = jax.jit(jax.vmap(lambda s, t, b: lc.fd_update(s, factor=t, beta=b)))
    out, info = f(states, g, betas)
    ref, _ = lc.fd_update(lc.fd_init(d, rank, dtype=np.float64, batch_shape=(3,)),
                          factor=np.asarray(g), beta=np.asarray(betas))
    np.testing.assert_array_equal(np.asarray(out.eigvals), ref.eigvals)
    assert info.status.shape == (3,)


def test_jax_non_finite_term_leaves_state_unchanged(rng):
    state = lc.FDState(*(jnp.asarray(a) for a in random_state(rng, 16, 4, np.float64)))
    g = jnp.asarray(rng.standard_normal((16, 3))).at[2, 1].set(jnp.nan)
    new, info = jax.jit(lambda s, t: lc.fd_update(s, factor=t))(state, g)
    assert int(info.status) == lc.FD_STATUS["non_finite_input"] and not bool(info.converged)
    for a, b in zip(new, state):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_jax_bad_traced_beta_leaves_state_unchanged(rng):
    state = lc.fd_init(8, 2, dtype=np.float64, backend="jax")
    new, info = jax.jit(lambda b: lc.fd_update(state, factor=jnp.ones((8, 1)), beta=b))(1.5)
    assert int(info.status) == lc.FD_STATUS["bad_beta"]
    np.testing.assert_array_equal(np.asarray(new.basis), np.asarray(state.basis))


def test_low_precision_terms_accumulate_in_state_dtype(rng):
    g = rng.standard_normal((16, 3))
    state = lc.fd_init(16, 4, dtype=np.float32)
    a, _ = lc.fd_update(state, factor=g.astype(np.float16))
    b, _ = lc.fd_update(state, factor=g.astype(np.float16).astype(np.float32))
    assert a.basis.dtype == np.float32
    np.testing.assert_array_equal(a.eigvals, b.eigvals)
    jb, _ = lc.fd_update(lc.FDState(*map(jnp.asarray, state)), factor=jnp.asarray(g, jnp.bfloat16))
    assert jb.basis.dtype == jnp.float32


# --------------------------------------------------------------------------- inverse root, merge


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_apply_inverse_root_matches_dense(rng, dtype, p, backend):
    d, rank, eps = 24, 6, 1e-3
    state = random_state(rng, d, rank, dtype, steps=3)
    x = rng.standard_normal((d, 3)).astype(dtype)
    if backend == "jax":
        y = jax.jit(lambda s, v: lc.fd_apply_inverse_root(s, v, p=p, eps=eps))(
            lc.FDState(*map(jnp.asarray, state)), jnp.asarray(x))
    else:
        y = lc.fd_apply_inverse_root(state, x, p=p, eps=eps)
    floor = float(state.escaped_mass) + eps
    m = sketch_matrix(state) + floor * np.eye(d)
    w, v = np.linalg.eigh(m)
    ref = (v * w ** (-1.0 / p)) @ v.T @ x.astype(np.float64)
    # Each output entry is a short sum of products of O(1) terms of size <= floor^(-1/p) |x|:
    # forward error O((d + l) eps) relative to that scale (two GEMMs of depth d and l).
    scale = floor ** (-1.0 / p) * np.abs(x).max()
    assert np.abs(np.asarray(y, np.float64) - ref).max() <= 4 * (d + rank) * np.finfo(dtype).eps * scale


def test_apply_inverse_root_broadcasts_batch(rng):
    states = lc.fd_init(8, 2, dtype=np.float64, batch_shape=(4,))
    states, _ = lc.fd_update(states, factor=rng.standard_normal((4, 8, 2)))
    y = lc.fd_apply_inverse_root(states, np.ones((8, 1)), p=2, eps=1e-2)
    assert y.shape == (4, 8, 1)
    for i in range(4):
        yi = lc.fd_apply_inverse_root(lc.FDState(*(a[i] for a in states)), np.ones((8, 1)), p=2, eps=1e-2)
        np.testing.assert_allclose(y[i], yi, rtol=1e-14)


@given(dtype=lct.dtypes(), d=st.integers(2, 20), parts=st.integers(2, 4), data=st.data())
def test_merge_keeps_invariants_for_the_summed_stream(dtype, d, parts, data):
    rank = data.draw(st.integers(1, d))
    states, total, peak = [], np.zeros((d, d)), 0.0
    for _ in range(parts):
        stream = data.draw(lct.fd_streams(d, steps=st.integers(1, 3), dtype=dtype, form="factor"))
        s, a, pk = run_stream(stream, rank, 1.0, dtype)
        states.append(s)
        total += a
        peak += pk
    merged = lc.fd_merge(states)
    tol = 4 * parts * sketch_tol(dtype, d, peak)
    rho = float(merged.escaped_mass)
    gap = np.linalg.eigvalsh(total - sketch_matrix(merged))
    assert gap[0] >= -tol and gap[-1] <= rho + tol
    lam = np.clip(np.linalg.eigvalsh(total)[::-1], 0, None)
    assert rho <= min(lam[k:].sum() / (rank + 1 - k) for k in range(rank + 1)) + d * tol


def test_merge_with_empty_sketch_is_identity(rng):
    s = random_state(rng, 16, 4, np.float64)
    merged = lc.fd_merge([s, lc.fd_init(16, 4, dtype=np.float64)])
    np.testing.assert_allclose(sketch_matrix(merged), sketch_matrix(s), atol=sketch_tol(np.float64, 16, float(s.eigvals[0])))
    assert float(merged.escaped_mass) == pytest.approx(float(s.escaped_mass), abs=1e-12)


def test_merge_jax_matches_numpy(rng):
    a, b = random_state(rng, 16, 4, np.float64), random_state(rng, 16, 4, np.float64)
    ref = lc.fd_merge([a, b])
    out = jax.jit(lambda x, y: lc.fd_merge([x, y]))(lc.FDState(*map(jnp.asarray, a)), lc.FDState(*map(jnp.asarray, b)))
    np.testing.assert_allclose(np.asarray(out.eigvals), ref.eigvals, rtol=1e-13)


def test_state_bytes():
    assert lc.fd_state_bytes(1024, 256) == (1024 * 256 + 256 + 1) * 4
    assert lc.fd_state_bytes(128, 32, dtype=np.float64, batch_shape=(64,)) == 64 * (128 * 32 + 33) * 8
    s = lc.fd_init(128, 32, dtype=np.float64, batch_shape=(64,))
    assert sum(a.nbytes for a in s) == lc.fd_state_bytes(128, 32, dtype=np.float64, batch_shape=(64,))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.fd_init(4, 5), "rank"),
        (lambda: lc.fd_init(4, 0), "rank"),
        (lambda: lc.fd_init(0, 1), "dim"),
        (lambda: lc.fd_init(4, 2, dtype=np.int32), "dtype"),
        (lambda: lc.fd_init(4, 2, backend="cupy"), "backend"),
        (lambda: lc.fd_update(lc.fd_init(4, 2)), "exactly one"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1)), matrix=np.eye(4)), "exactly one"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((5, 1))), "factor"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones(4)), "factor"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1), np.int64)), "factor"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), matrix=np.ones((4, 3))), "matrix"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1)), beta=0.0), "beta"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1)), beta=1.5), "beta"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.full((4, 1), np.nan)), "factor"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), matrix=np.full((4, 4), np.inf)), "matrix"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1)), method="svd"), "method"),
        (lambda: lc.fd_update(lc.fd_init(4, 2), matrix=np.eye(4), method="thin_stack"), "thin_stack"),
        (lambda: lc.fd_update(lc.fd_init(4, 2, batch_shape=(3,)), factor=np.ones((2, 4, 1))), "batch"),
        (lambda: lc.fd_update((np.eye(4, 2), np.zeros(3), np.zeros(())), factor=np.ones((4, 1))), "eigvals"),
        (lambda: lc.fd_apply_inverse_root(lc.fd_init(4, 2), np.ones((3, 1)), p=2, eps=1e-3), "x"),
        (lambda: lc.fd_apply_inverse_root(lc.fd_init(4, 2), np.ones((4, 1)), p=0, eps=1e-3), "p"),
        (lambda: lc.fd_apply_inverse_root(lc.fd_init(4, 2), np.ones((4, 1)), p=2, eps=0.0), "eps"),
        (lambda: lc.fd_merge([]), "states"),
        (lambda: lc.fd_merge([lc.fd_init(4, 2), lc.fd_init(5, 2)]), r"states\[1\]"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_finite_state_is_rejected():
    s = lc.fd_init(4, 2, dtype=np.float64)
    s = s._replace(eigvals=np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="state.eigvals"):
        lc.fd_update(s, factor=np.ones((4, 1)))


def test_jax_shape_errors_at_trace_time():
    state = lc.fd_init(4, 2, backend="jax")
    with pytest.raises(ValueError, match="factor"):
        jax.jit(lambda g: lc.fd_update(state, factor=g))(jnp.ones((5, 1), jnp.float32))


# --------------------------------------------------------------------------- honest answers
#
# "Status ok is a promise": an ok update meets the sandwich invariant against a float64 oracle,
# any other status leaves the state unchanged, and the outputs are finite on every path.

BACKENDS = ["numpy", "jax", "portable"]


_JITTED: dict = {}


def _jitted_update(backend, form, method):
    """One jitted fd_update per backend: FORCE_PORTABLE is read when a function is traced, so the
    two JAX backends never share a trace."""
    key = (backend, form, method)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(lambda s, t, b: lc.fd_update(s, beta=b, method=method, **{form: t}))
    return _JITTED[key]


def call_update(backend, state, **kwargs):
    """fd_update on one backend: NumPy (pybind11), JAX (XLA FFI) or the portable JAX kernel."""
    if backend == "numpy":
        return lc.fd_update(state, **kwargs)
    from linalg_core import _jax

    forced = _jax.FORCE_PORTABLE
    _jax.FORCE_PORTABLE = backend == "portable"
    try:
        jstate = lc.FDState(*map(jnp.asarray, state))
        form = "factor" if "factor" in kwargs else "matrix"
        fn = _jitted_update(backend, form, kwargs.get("method", "auto"))
        out, info = fn(jstate, jnp.asarray(kwargs[form]), jnp.asarray(kwargs.get("beta", 1.0)))
    finally:
        _jax.FORCE_PORTABLE = forced
    return lc.FDState(*map(np.asarray, out)), type(info)(*map(np.asarray, info))


def call_apply(backend, state, x, **kwargs):
    if backend == "numpy":
        return lc.fd_apply_inverse_root(state, x, **kwargs)
    from linalg_core import _jax

    forced = _jax.FORCE_PORTABLE
    _jax.FORCE_PORTABLE = backend == "portable"
    try:
        y = lc.fd_apply_inverse_root(lc.FDState(*map(jnp.asarray, state)), jnp.asarray(x), **kwargs)
    finally:
        _jax.FORCE_PORTABLE = forced
    return np.asarray(y)


def assert_state_equal(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def scaled_state(state, s):
    return lc.FDState(state.basis, (state.eigvals * s).astype(state.eigvals.dtype),
                      (state.escaped_mass * s).astype(state.eigvals.dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,factor_scale", [(np.float32, 1e20), (np.float32, 1e-25),
                                                (np.float64, 1e170), (np.float64, 1e-170)])
@pytest.mark.parametrize("method", ["thin_stack", "dense_eigh", "thin_stack_householder"])
def test_unrepresentable_update_is_not_ok(rng, backend, dtype, factor_scale, method):
    """A finite factor whose G G^T overflows the dtype (or lies below tiny / eps, where the smaller eigenvalues
    would be subnormal): the answer is not representable, so the status is not ok and the state passes
    through unchanged."""
    d, rank = 16, 4
    # A warm O(1) state would keep the top eigenvalue representable: underflow needs an empty one.
    state = random_state(rng, d, rank, dtype) if factor_scale > 1 else lc.fd_init(d, rank, dtype=dtype)
    g = (factor_scale * rng.standard_normal((d, 3))).astype(dtype)
    assert np.isfinite(g).all() and np.abs(g).min() > 0
    new, info = call_update(backend, state, factor=g, method=method)
    assert int(info.status) == lc.FD_STATUS["not_representable"] and not bool(info.converged)
    assert_state_equal(new, state)
    assert np.isfinite(info.step_escaped_mass) and np.isfinite(info.residual)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", ["factor", "matrix"])
@pytest.mark.parametrize("dtype,mass_scale", [(np.float32, 2e30), (np.float32, 1e-30),
                                              (np.float64, 1e200), (np.float64, 1e-200),
                                              (np.float32, "near_max")])
def test_scaled_update_gives_the_scaled_answer(rng, backend, form, dtype, mass_scale):
    """State eigenvalues and term scaled by s (a factor by sqrt(s)): eigenvalues and escaped mass
    times s, the same basis. The kernels prescale by a power of two, so only the rounding of s
    itself (the terms are cast after scaling) separates the two runs: eigenvalues agree to the
    eigensolver's backward error of the unscaled problem, eig_tol relative to ||C||."""
    d, rank = 24, 5
    base = random_state(rng, d, rank, np.float64)
    g = rng.standard_normal((d, 4)) * np.geomspace(1, 1e-2, d)[:, None]
    term = {"factor": g} if form == "factor" else {"matrix": g @ g.T}
    if mass_scale == "near_max":  # the largest eigenvalue of C at a tenth of the dtype's max
        c = (base.basis * base.eigvals) @ base.basis.T * 0.9 + g @ g.T
        mass_scale = 0.1 * float(np.finfo(dtype).max) / np.linalg.norm(c, 2)
    root = np.sqrt(mass_scale)
    plain_state = lc.FDState(*(a.astype(dtype) for a in base))
    big_state = scaled_state(base, mass_scale)
    big_state = lc.FDState(*(a.astype(dtype) for a in big_state))
    plain_term = {k: v.astype(dtype) for k, v in term.items()}
    big_term = {k: (v * (root if k == "factor" else mass_scale)).astype(dtype) for k, v in term.items()}
    ref, ref_info = call_update(backend, plain_state, beta=0.9, **plain_term)
    out, info = call_update(backend, big_state, beta=0.9, **big_term)
    assert int(ref_info.status) == 0 and int(info.status) == 0
    for a in out:
        assert np.isfinite(np.asarray(a)).all()
    norm_c = float(ref.eigvals[0]) + float(ref_info.step_escaped_mass)
    # Both runs are backward stable for inputs that differ by the rounding of the scaling (one
    # eps each), so eigenvalues agree to twice the eigensolver's bound plus that rounding.
    tol = 2 * eig_tol(dtype, d, norm_c) + 4 * np.finfo(dtype).eps * norm_c
    np.testing.assert_allclose(np.asarray(out.eigvals, np.float64) / mass_scale, ref.eigvals, rtol=0, atol=tol)
    assert abs(float(out.escaped_mass) / mass_scale - float(ref.escaped_mass)) <= tol
    assert np.abs(sketch_matrix(lc.FDState(out.basis, np.asarray(out.eigvals, np.float64) / mass_scale, 0))
                  - sketch_matrix(ref)).max() <= 2 * sketch_tol(dtype, d, norm_c)


# The initial basis of every sketch: e_1..e_l, lambda = 1e4, rho = 0 (a sketch's first l steps).
def _early_state(dtype, d=16, rank=4, lam=1e4, rotate=None):
    basis = np.eye(d, rank) if rotate is None else np.linalg.qr(rotate.standard_normal((d, rank)))[0]
    eigvals = np.geomspace(lam, lam / 10, rank)
    return lc.FDState(basis.astype(dtype), eigvals.astype(dtype), np.zeros((), dtype))


def exact_apply(state, x, p, eps):
    """The factored formula in float64 on the given (rounded) U: c0 x + U (c - c0) U^T x, with
    the coefficient c - c0 = c0 ((1 + lambda / f)^(-1/p) - 1) evaluated without cancellation."""
    u = np.asarray(state.basis, np.float64)
    lam = np.asarray(state.eigvals, np.float64)
    f = float(state.escaped_mass) + eps
    c0 = f ** (-1.0 / p)
    diff = c0 * np.expm1(-np.log1p(lam / f) / p)
    xd = np.asarray(x, np.float64)
    return c0 * xd + u @ (diff[:, None] * (u.T @ xd))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("rotated", [False, True])
def test_apply_inverse_root_is_cancellation_free(backend, dtype, p, rotated):
    """lambda = 1e4 >> rho + eps = 1e-6: the answer's part in span(U) is (lambda + f)^(-1/p) a,
    up to 1e10 times smaller than f^(-1/p) |x|. The float32 kernels accumulate in float64 and
    split x = U a + (x - U a) so neither part is a difference of large terms: the error is one
    rounding of the output (eps |y|) plus the float64 rounding of the two GEMMs amplified by at
    most f^(-1/p) / (lambda + f)^(-1/p) (<= 1e10 here), (d + l) eps64 c0 |x|."""
    d, rank, eps = 16, 4, 1e-6
    rng = np.random.default_rng(p + 10 * rotated)
    state = _early_state(dtype, d, rank, rotate=rng if rotated else None)
    u = np.asarray(state.basis, np.float64)
    # Columns: in span(U), mostly in span(U), generic, orthogonal to U.
    x = np.stack([u[:, 0], u[:, 1] + 1e-3 * rng.standard_normal(d), rng.standard_normal(d),
                  (np.eye(d) - u @ u.T) @ rng.standard_normal(d)], axis=1).astype(dtype)
    y = np.asarray(call_apply(backend, state, x, p=p, eps=eps), np.float64)
    ref = exact_apply(state, x, p, eps)
    c0 = eps ** (-1.0 / p)
    col = np.linalg.norm(ref, axis=0)
    amplified = (d + rank) * np.finfo(np.float64).eps * c0 * np.linalg.norm(np.asarray(x, np.float64), axis=0)
    work = np.finfo(dtype).eps if dtype == np.float32 else 0.0
    if dtype == np.float64:
        # float64 in float64: the GEMMs' rounding (d + l) eps |x| amplified by c0 is the bound.
        tol = 4 * np.finfo(dtype).eps * col + 4 * amplified
    else:
        tol = 4 * work * col + 4 * amplified
    err = np.linalg.norm(y - ref, axis=0)
    assert (err <= tol).all(), (err / col, tol / col)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ratio", [0.5, 2.9, 3.1, 30.0])
def test_apply_inverse_root_float32_at_low_amplification(backend, ratio):
    """lambda_1 / f = ratio, p = 2: the amplification c0 / c_1 = (1 + ratio)^(1/2) is below 2 for
    the first two (the float32 kernel then runs float32 GEMMs) and above it for the others (float64
    accumulation). Either way the error is the float32 evaluation's: each term's rounding
    (d + l + 2) eps c0 |x| in the worst case, amplified by at most c0 / c_1 relative to |y|."""
    d, rank, eps, p = 24, 4, 1e-6, 2
    rng = np.random.default_rng(int(10 * ratio))
    basis = np.linalg.qr(rng.standard_normal((d, rank)))[0]
    f = 0.25
    state = lc.FDState(basis.astype(np.float32), (f * ratio * np.geomspace(1, 0.5, rank)).astype(np.float32),
                       np.float32(f - eps))
    u = np.asarray(state.basis, np.float64)
    x = np.stack([u[:, 0], u[:, 1] + 1e-3 * rng.standard_normal(d), rng.standard_normal(d)], axis=1).astype(np.float32)
    y = np.asarray(call_apply(backend, state, x, p=p, eps=eps), np.float64)
    ref = exact_apply(state, x, p, eps)
    c0 = (float(state.escaped_mass) + eps) ** (-1.0 / p)
    amplification = (1 + ratio) ** (1.0 / p)
    col = np.linalg.norm(ref, axis=0)
    bound = min(amplification, 2.0) * (d + rank + 2) * np.finfo(np.float32).eps * c0 * np.linalg.norm(
        np.asarray(x, np.float64), axis=0)
    err = np.linalg.norm(y - ref, axis=0)
    assert (err <= bound + 4 * np.finfo(np.float32).eps * col).all(), (err / col, bound / col)


@pytest.mark.parametrize("backend", BACKENDS)
def test_root_times_is_cancellation_free(backend):
    """root_times applies a sketched side through fd_apply_inverse_root (both sides here)."""
    d, eps, p = 12, 1e-6, 2
    state = _early_state(np.float32, d, 3, rotate=np.random.default_rng(3))
    g = np.asarray(state.basis[:, :2] @ state.basis[:, :2].T, np.float32)  # in span(U) on both sides
    if backend == "numpy":
        y = lc.root_times(g, state, state, p=p, eps=eps)
    else:
        from linalg_core import _jax

        forced, _jax.FORCE_PORTABLE = _jax.FORCE_PORTABLE, backend == "portable"
        try:
            js = lc.FDState(*map(jnp.asarray, state))
            y = np.asarray(lc.root_times(jnp.asarray(g), js, js, p=p, eps=eps))
        finally:
            _jax.FORCE_PORTABLE = forced
    # The right side acts on the float32 output of the left one (one rounding, amplified by up to
    # c0 / c_1 like any rounding of its input): the oracle applies the exact formula to that.
    left = call_apply(backend, state, g, p=p, eps=eps)
    np.testing.assert_allclose(np.asarray(left, np.float64), exact_apply(state, g, p, eps),
                               rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(exact_apply(state, g, p, eps)).max())
    ref = exact_apply(state, np.asarray(left).T, p, eps).T
    # One application: one float32 rounding of each entry (relative to the largest) plus the
    # float64 GEMMs' (d + l) eps64 c0 |x|.
    tol = 4 * np.finfo(np.float32).eps * np.abs(ref).max() + 4 * (d + 3) * np.finfo(np.float64).eps * eps ** (-1 / p) * np.abs(left).max()
    assert np.abs(np.asarray(y, np.float64) - ref).max() <= tol


def _bad_states():
    """(field, state) pairs breaking one field's contract each."""
    good = _early_state(np.float64, 8, 3, lam=2.0)
    out = []
    for field, value in [
        ("basis", np.nan), ("basis", np.inf),
        ("eigvals", np.nan), ("eigvals", -np.inf), ("eigvals", -1.0),
        ("escaped_mass", np.nan), ("escaped_mass", np.inf), ("escaped_mass", -1e-3),
    ]:
        arr = np.array(getattr(good, field))
        if field == "escaped_mass":
            arr = np.asarray(value, np.float64)
        elif field == "basis":
            arr[1, 2] = value
        else:
            arr[2] = value
        out.append((field, good._replace(**{field: arr})))
    ascending = good._replace(eigvals=np.array([1.0, 2.0, 0.5]))
    out.append(("eigvals", ascending))
    return out


BAD_STATES = _bad_states()


@pytest.mark.parametrize("field,state", BAD_STATES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_STATES)])
def test_numpy_rejects_out_of_contract_state(field, state):
    with pytest.raises(ValueError, match=f"state.{field}"):
        lc.fd_update(state, factor=np.ones((8, 1)))
    with pytest.raises(ValueError, match=f"state.{field}"):
        lc.fd_apply_inverse_root(state, np.ones((8, 2)), p=2, eps=1e-3)


@pytest.mark.parametrize("backend", ["jax", "portable"])
@pytest.mark.parametrize("field,state", BAD_STATES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_STATES)])
def test_jax_out_of_contract_state_is_a_status(backend, field, state):
    new, info = call_update(backend, state, factor=np.ones((8, 1)))
    finite = np.isfinite(np.asarray(state[FDState_index(field)])).all()
    want = "invalid_state" if finite else "non_finite_input"
    assert int(info.status) == lc.FD_STATUS[want]
    assert_state_equal(new, state)
    assert np.isfinite(info.step_escaped_mass) and np.isfinite(info.residual)


def FDState_index(field):
    return lc.FDState._fields.index(field)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_x_is_rejected_or_flagged(value):
    state = _early_state(np.float64, 8, 3, lam=2.0)
    x = np.ones((8, 2))
    x[3, 1] = value
    with pytest.raises(ValueError, match="x"):
        lc.fd_apply_inverse_root(state, x, p=2, eps=1e-3)
    for backend in ("jax", "portable"):
        from linalg_core import _jax

        with _jax.portable_path(backend == "portable"):
            y, status = lc.fd_apply_inverse_root(lc.FDState(*map(jnp.asarray, state)), jnp.asarray(x),
                                                 p=2, eps=1e-3, return_status=True)
        assert int(status) == lc.FD_STATUS["non_finite_input"]
        assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize("backend", ["jax", "portable"])
def test_jax_apply_status_on_a_batch(backend):
    """One bad element of a batch is flagged (output zero), the others are computed."""
    good = _early_state(np.float64, 8, 3, lam=2.0)
    states = lc.FDState(*(np.stack([a, a, a]) for a in good))
    states.eigvals[1, 0] = -1.0
    x = np.ones((3, 8, 2))
    x[2, 0, 0] = np.nan
    from linalg_core import _jax

    with _jax.portable_path(backend == "portable"):
        y, status = lc.fd_apply_inverse_root(lc.FDState(*map(jnp.asarray, states)), jnp.asarray(x),
                                             p=2, eps=1e-3, return_status=True)
    assert np.asarray(status).tolist() == [lc.FD_STATUS[s] for s in ("ok", "invalid_state", "non_finite_input")]
    np.testing.assert_allclose(np.asarray(y[0]), lc.fd_apply_inverse_root(good, x[0], p=2, eps=1e-3), rtol=1e-14)
    assert np.all(np.asarray(y[1:]) == 0)


def _indefinite_cases(rng, dtype):
    """A warm state with U = e_1..e_3 and three matrices: non-symmetric, indefinite along a
    direction orthogonal to U (so C = beta S + M keeps the -0.5 eigenvalue; the diagonal of M
    stays >= 0.7, so only the eigenvalue test can see it), and a negative diagonal entry."""
    d = 8
    state = lc.FDState(np.eye(d, 3, dtype=dtype), np.array([3.0, 2.0, 1.0], dtype), np.asarray(0.5, dtype))
    g = rng.standard_normal((d, d))
    skew = g @ g.T
    skew[0, 1] += 1e-3 * np.abs(skew).max()
    v = np.r_[np.zeros(3), rng.uniform(0.8, 1.2, d - 3)]
    v /= np.linalg.norm(v)
    indefinite = np.eye(d) - 1.5 * np.outer(v, v)
    negative_diag = np.diag(np.r_[np.ones(7), -1.0])
    return state, skew.astype(dtype), indefinite.astype(dtype), negative_diag.astype(dtype), (g @ g.T).astype(dtype)


def test_numpy_rejects_non_symmetric_matrix_and_reports_indefinite_as_status(rng):
    """Symmetry is input checking (ValueError); indefiniteness is found by the computation, a
    status with the state unchanged (the failure policy of linalg_core)."""
    state, skew, indefinite, negative_diag, _ = _indefinite_cases(rng, np.float64)
    with pytest.raises(ValueError, match="matrix must be symmetric"):
        lc.fd_update(state, matrix=skew)
    for m in (indefinite, negative_diag):
        new, info = lc.fd_update(state, matrix=m)
        assert int(info.status) == lc.FD_STATUS["indefinite_term"] and not bool(info.converged)
        assert_state_equal(new, state)


@pytest.mark.parametrize("backend", ["jax", "portable"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_non_symmetric_and_indefinite_matrix_are_statuses(rng, backend, dtype):
    state, skew, indefinite, negative_diag, psd = _indefinite_cases(rng, dtype)
    for m, want in [(skew, "non_symmetric_term"), (indefinite, "indefinite_term"),
                    (negative_diag, "indefinite_term"), (psd, "ok")]:
        new, info = call_update(backend, state, matrix=m)
        assert int(info.status) == lc.FD_STATUS[want], want
        if want != "ok":
            assert_state_equal(new, state)
        assert all(np.isfinite(np.asarray(a)).all() for a in new)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_beta_is_rejected_or_flagged(rng, backend):
    state = random_state(rng, 8, 3, np.float64)
    for beta in (0.0, -0.5, 1.5, np.nan):
        if backend == "numpy":
            with pytest.raises(ValueError, match="beta"):
                lc.fd_update(state, factor=np.ones((8, 1)), beta=beta)
            continue
        new, info = call_update(backend, state, factor=np.ones((8, 1)), beta=np.float64(beta))
        assert int(info.status) == lc.FD_STATUS["bad_beta"]
        assert_state_equal(new, state)


@st.composite
def honest_cases(draw):
    # Few distinct shapes, so the JAX backends compile each once per run.
    dtype = draw(lct.dtypes())
    d = draw(st.sampled_from([3, 9]))
    rank = draw(st.sampled_from([1, d // 2 + 1, d]))
    beta = draw(st.sampled_from([1.0, 0.9, 0.5]))
    form = draw(st.sampled_from(["factor", "matrix"]))
    stream = draw(lct.fd_streams(d, steps=st.integers(1, 3), term_rank=st.sampled_from([1, d // 2 + 1]),
                                 dtype=np.float64, form=form))
    big = 1e30 if dtype == np.float32 else 1e200
    # Mass scales from the representable extremes to overflow/underflow of the dtype.
    mass = draw(st.sampled_from([1.0, big, 1 / big, big**1.5, big**-1.5]))
    batch = draw(st.sampled_from([(), (2,)]))
    backend = draw(st.sampled_from(BACKENDS))
    method = draw(st.sampled_from(["auto", "thin_stack", "dense_eigh", "thin_stack_householder"])
                  if form == "factor" else st.just("auto"))
    return dtype, d, rank, beta, stream, mass, batch, backend, method


@given(honest_cases())
def test_fd_update_is_honest_or_errs(case):
    """Whenever status is ok, 0 <= A_T - S <= rho I against a float64 oracle (per batch element)
    and every output is finite; whenever not, that element's state is unchanged and finite."""
    dtype, d, rank, beta, stream, mass, batch, backend, method = case
    state = lc.fd_init(d, rank, dtype=dtype, batch_shape=batch)
    total = np.zeros(batch + (d, d))
    peak = np.zeros(batch)
    for i, term in enumerate(stream.terms):
        # Batch element j sees the term scaled by (j + 1): different elements, one stream each.
        weights = np.arange(1, int(np.prod(batch)) + 1, dtype=np.float64).reshape(batch)
        s = mass * weights[..., None, None]
        big = term * (np.sqrt(s) if stream.form == "factor" else s)
        with np.errstate(over="ignore", under="ignore"):
            cast = big.astype(dtype)
        if not np.isfinite(cast).all():
            return  # the term itself is not representable: fd_update's input contract
        tiny = np.finfo(dtype).tiny
        if stream.form == "matrix" and ((cast != 0) & (np.abs(cast) < tiny)).any():
            return  # subnormal entries: the rounded matrix is no longer PSD (out of contract)
        kwargs = {stream.form: cast, "beta": beta}
        if stream.form == "factor":
            kwargs["method"] = method
        new, info = call_update(backend, state, **kwargs)
        status = np.asarray(info.status)
        for a in new:
            assert np.isfinite(np.asarray(a)).all()
        exact = np.asarray(cast, np.float64)
        exact = exact @ np.swapaxes(exact, -1, -2) if stream.form == "factor" else exact
        ok = status == 0
        for idx in np.ndindex(*batch):
            if not ok[idx]:
                assert status[idx] in (lc.FD_STATUS["not_representable"],), status[idx]
                for a, b in zip(new, state):
                    np.testing.assert_array_equal(np.asarray(a)[idx], np.asarray(b)[idx])
                continue
            total[idx] = beta * total[idx] + exact[idx]
            peak[idx] = max(peak[idx], np.linalg.norm(total[idx], 2))
            one = lc.FDState(*(np.asarray(a)[idx] for a in new))
            tol = (i + 1) * sketch_tol(dtype, d, peak[idx])
            gap = np.linalg.eigvalsh(total[idx] - sketch_matrix(one))
            assert gap[0] >= -tol and gap[-1] <= float(one.escaped_mass) + tol
            ev = np.asarray(one.eigvals)
            assert np.all(np.diff(ev) <= 0) and np.all(ev >= 0) and float(one.escaped_mass) >= 0
        # A not-ok element keeps its old state, whose invariant against the old total still holds.
        state = new


def test_merge_checks_every_state_and_keeps_a_failed_merge_unchanged(rng):
    a = random_state(rng, 16, 4, np.float64)
    bad = a._replace(eigvals=a.eigvals[::-1].copy())
    with pytest.raises(ValueError, match=r"states\[1\].eigvals"):
        lc.fd_merge([a, bad])
    huge = a._replace(eigvals=a.eigvals / a.eigvals[0] * 1e308, escaped_mass=np.float64(1.0))  # sum overflows
    merged, info = lc.fd_merge([a, huge, huge], return_info=True)  # a status, no warning
    assert int(info.status) == lc.FD_STATUS["not_representable"]
    assert_state_equal(merged, a)
    with pytest.raises(ValueError, match="not_representable.*return_info=True"):
        lc.fd_merge([a, huge, huge])  # without the info nothing else would report it
    single, info = lc.fd_merge([a], return_info=True)
    assert single is a and int(info.status) == 0
