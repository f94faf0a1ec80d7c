"""LOBPCG: float64 oracle over spectra, no false convergence, warm start, batching, JAX.

Tolerance. For an orthonormal X with Ritz values theta and residual block R = A X - X diag(theta),
the theta are within ||R||_2 <= ||R||_F of k eigenvalues of A (Kahan; Parlett, The Symmetric
Eigenvalue Problem, Thm 11.5.2). LOBPCG reports r_j = ||R_j|| / ||A||_est, so a converged answer
must match the oracle's top k within sqrt(k) * max_j r_j * ||A|| (+ rounding, c n eps ||A||) —
provided they are the *top* k, which is exactly what "no false convergence" asserts. A residual
test cannot tell apart eigenvalues closer together than the tolerance itself (a cluster of
width < tol ||A||: any vector in it passes), so the bound uses max(r_j, tol).
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


def spd_from(rng, lam):
    q, _ = np.linalg.qr(rng.standard_normal((len(lam), len(lam))))
    return (q * lam) @ q.T, q


def check_against_oracle(a, w, v, info, k):
    n = a.shape[0]
    lam = np.linalg.eigvalsh(a.astype(np.float64))[::-1][:k]
    dtype = a.dtype
    norm = np.abs(lam).max() if np.abs(lam).max() > 0 else 1.0
    rounding = 8 * n * np.finfo(dtype).eps * norm
    if bool(info.converged):
        tol = 10 * np.sqrt(np.finfo(dtype).eps)  # lobpcg's default
        bound = np.sqrt(k) * max(float(np.max(info.residual)), tol) * norm + rounding
        assert np.abs(w.astype(np.float64) - lam).max() <= bound
    vv = v.astype(np.float64)
    assert np.abs(vv.T @ vv - np.eye(k)).max() <= 8 * n * np.finfo(dtype).eps * 10
    assert np.all(np.diff(w) <= rounding)


SPECTRA = {
    "geometric_1e6": lambda n: np.geomspace(1, 1e-6, n),
    "geometric_1e8": lambda n: np.geomspace(1, 1e-8, n),
    "linear": lambda n: np.linspace(1, 1e-3, n),
    "cluster_at_k": lambda n: np.concatenate([[3.0, 2.5, 2.0, 1.0, 1.0, 1.0, 1.0], np.linspace(0.5, 0.01, n - 7)]),
    "rank_deficient": lambda n: np.concatenate([[4.0, 3.0, 2.0], np.zeros(n - 3)]),
    "outlier": lambda n: np.concatenate([[1e6], np.linspace(1.0, 0.5, n - 1)]),
    "identity": lambda n: np.ones(n),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(SPECTRA))
@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
def test_matches_oracle_or_says_not_converged(rng, dtype, kind, scale):
    n, k = 150, 5
    a, _ = spd_from(rng, scale * SPECTRA[kind](n))
    a = a.astype(dtype)
    w, v, info = lc.lobpcg(a, rng.standard_normal((n, k)).astype(dtype), max_iters=400)
    assert int(info.method) == 0
    check_against_oracle(a, w, v, info, k)
    if kind != "cluster_at_k":  # the boundary cluster may legitimately need more iterations
        assert bool(info.converged), info


def test_rank_deficient_with_k_above_rank_converges(rng):
    n = 120
    a, _ = spd_from(rng, np.concatenate([[3.0, 2.0], np.zeros(n - 2)]))
    w, v, info = lc.lobpcg(a, rng.standard_normal((n, 6)))
    assert bool(info.converged) and int(info.iterations) < 50
    np.testing.assert_allclose(w[:2], [3.0, 2.0], atol=1e-10)
    assert np.abs(w[2:]).max() <= 1e-10


def test_warm_start_from_exact_answer_converges_at_once(rng):
    n, k = 200, 6
    a, q = spd_from(rng, np.geomspace(1, 1e-4, n))
    w, v, info = lc.lobpcg(a, q[:, :k])
    assert bool(info.converged) and int(info.iterations) <= 1


@given(seed=st.integers(0, 2**31), k=st.integers(1, 6), spread=st.sampled_from([1e-2, 1e-3, 1e-4]))
def test_warm_start_from_perturbed_answer_needs_fewer_iterations(seed, k, spread):
    """The previous answer with each column moved by `spread` (relative, random direction)."""
    rng = np.random.default_rng(seed)
    n = 120
    a, q = spd_from(rng, np.geomspace(1, 1e-5, n))
    x0 = rng.standard_normal((n, k))
    _, _, cold = lc.lobpcg(a, x0)
    noise = rng.standard_normal((n, k))
    noise /= np.linalg.norm(noise, axis=0)
    _, _, warm = lc.lobpcg(a, q[:, :k] + spread * noise)
    assert bool(cold.converged) and bool(warm.converged)
    assert int(warm.iterations) < int(cold.iterations)


@given(case=lct.psd_matrices_with_spectrum(st.integers(30, 80), condition=1e6), k=st.integers(1, 5),
       seed=st.integers(0, 2**31))
def test_property_no_false_convergence(case, k, seed):
    a, lam = case
    n = a.shape[0]
    x0 = np.random.default_rng(seed).standard_normal((n, k))
    w, v, info = lc.lobpcg(a, x0, max_iters=300)
    check_against_oracle(a, w, v, info, k)


def test_dense_path_for_small_problems(rng):
    a, _ = spd_from(rng, np.arange(10, 0, -1.0))
    w, v, info = lc.lobpcg(a, rng.standard_normal((10, 3)))
    assert int(info.method) == 1 and bool(info.converged)
    np.testing.assert_allclose(w, [10, 9, 8], atol=1e-12)


def test_callable_matches_explicit(rng):
    n, k = 150, 4
    a, _ = spd_from(rng, np.geomspace(1, 1e-3, n))
    x0 = rng.standard_normal((n, k))
    w1, v1, i1 = lc.lobpcg(a, x0)
    w2, v2, i2 = lc.lobpcg(lambda x: a @ x, x0)
    np.testing.assert_allclose(w2, w1, rtol=1e-12)
    assert int(i1.iterations) == int(i2.iterations)


def test_batched_equals_looped(rng):
    n, k = 60, 3
    mats = np.stack([spd_from(rng, np.geomspace(1, 1e-3 * (i + 1), n))[0] for i in range(3)])
    x0 = rng.standard_normal((3, n, k))
    w, v, info = lc.lobpcg(mats, x0)
    assert w.shape == (3, k) and v.shape == (3, n, k) and info.residual.shape == (3, k)
    for i in range(3):
        wi, vi, _ = lc.lobpcg(mats[i], x0[i])
        np.testing.assert_array_equal(w[i], wi)


@pytest.mark.ffi_path
def test_jax_matches_numpy(rng):
    n, k = 80, 3
    a, _ = spd_from(rng, np.geomspace(1, 1e-3, n))
    x0 = rng.standard_normal((n, k))
    w, v, info = lc.lobpcg(a, x0)
    wj, vj, ij = jax.jit(lambda m, x: lc.lobpcg(m, x))(jnp.asarray(a), jnp.asarray(x0))
    np.testing.assert_array_equal(np.asarray(wj), w)
    np.testing.assert_array_equal(np.asarray(ij.iterations), info.iterations)
    wv, _, _ = jax.vmap(lambda m, x: lc.lobpcg(m, x))(jnp.stack([jnp.asarray(a)] * 2), jnp.stack([jnp.asarray(x0)] * 2))
    np.testing.assert_array_equal(np.asarray(wv)[1], w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jax_matvec_function(rng, dtype):
    n, k = 300, 4
    a, q = spd_from(rng, np.geomspace(1, 1e-4, n))
    ja = jnp.asarray(a, dtype)
    x0 = jnp.asarray(rng.standard_normal((n, k)), dtype)
    w, v, info = jax.jit(lambda x: lc.lobpcg(lambda y: ja @ y, x))(x0)
    assert bool(info.converged) and w.dtype == dtype
    check_against_oracle(np.asarray(ja), np.asarray(w), np.asarray(v), info, k)
    # Warm start from the exact answer: converged without iterating.
    _, _, warm = lc.lobpcg(lambda y: ja @ y, jnp.asarray(q[:, :k], dtype))
    assert int(warm.iterations) <= 1


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.lobpcg(np.eye(5), np.ones(5)), "x0"),
        (lambda: lc.lobpcg(np.eye(5), np.ones((5, 2)), k=3), "k must"),
        (lambda: lc.lobpcg(np.eye(4), np.ones((5, 2))), "a must have shape"),
        (lambda: lc.lobpcg(np.eye(5), np.ones((5, 2), np.int32)), "floating"),
        (lambda: lc.lobpcg(np.full((5, 5), np.nan), np.ones((5, 2))), "a contains NaN"),
        (lambda: lc.lobpcg(lambda x: x, np.ones((2, 5, 2))), "unbatched"),
        (lambda: lc.lobpcg(np.eye(5), np.ones((5, 2)), tol=-1.0), "tol"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_matvec_path_at_n_20000():
    """A callable operator of size 20000 (diagonal in a hidden basis of Householder reflectors):
    nothing n x n is ever formed."""
    n, k = 20000, 4
    rng = np.random.default_rng(5)
    d = np.concatenate([[10.0, 9.0, 8.0, 7.0], rng.uniform(0, 5, n - 4)])
    h = rng.standard_normal(n)
    h /= np.linalg.norm(h)

    def matvec(x):  # H diag(d) H x, H = I - 2 h h^T
        y = x - 2 * np.outer(h, h @ x)
        y = d[:, None] * y
        return y - 2 * np.outer(h, h @ y)

    w, v, info = lc.lobpcg(matvec, rng.standard_normal((n, k)), max_iters=300)
    assert bool(info.converged)
    np.testing.assert_allclose(w, [10.0, 9.0, 8.0, 7.0], rtol=1e-9)


@given(case=lct.psd_matrices_with_spectrum(st.just(48), condition=1e6), seed=st.integers(0, 2**31))
def test_property_no_false_convergence_jax_matvec(case, seed):
    """The JAX path (a jax matvec function) under the same property as the kernel: whatever it
    reports converged is the top of the spectrum (one shape, so one compilation)."""
    a, lam = case
    k = 3
    x0 = np.random.default_rng(seed).standard_normal((48, k))
    w, v, info = _jax_matvec_lobpcg(jnp.asarray(a), jnp.asarray(x0))
    check_against_oracle(a, np.asarray(w), np.asarray(v), info, k)


@jax.jit
def _jax_matvec_lobpcg(a, x0):
    return lc.lobpcg(lambda y: a @ y, x0, max_iters=300)


# ---------------------------------------------------------------------------------------------
# Honest answers: no converged status on a wrong answer, scale safety, one input contract,
# backend parity, iteration counts against scipy's LOBPCG, an honest-or-error property.
# ---------------------------------------------------------------------------------------------

STATUS = lc.LOBPCG_STATUS


def _true_relative_residuals(a, w, v):
    """max_j ||A v_j - w_j v_j|| / ||A||_2 in float64 (the oracle's norm)."""
    a64, v64, w64 = (np.asarray(z, np.float64) for z in (a, v, w))
    norm = np.abs(np.linalg.eigvalsh(a64)).max()
    return np.linalg.norm(a64 @ v64 - v64 * w64, axis=0).max() / (norm if norm > 0 else 1.0)


def _run(path, a, x0, **kw):
    """One call of lc.lobpcg on `path`; NumPy outputs."""
    if path == "numpy":
        w, v, info = lc.lobpcg(a, x0, **kw)
    elif path == "numpy_matvec":
        w, v, info = lc.lobpcg(lambda y: a @ y, x0, **kw)
    elif path == "ffi":
        w, v, info = lc.lobpcg(jnp.asarray(a), jnp.asarray(x0), **kw)
    elif path == "jax_matvec":
        ja = jnp.asarray(a)
        w, v, info = lc.lobpcg(lambda y: ja @ y, jnp.asarray(x0), **kw)
    elif path == "portable":
        from linalg_core.portable import lobpcg as plobpcg

        k = kw.pop("k", x0.shape[-1])
        tol = kw.pop("tol", None)
        guard = kw.pop("guard", None)
        w, v, res, iters, status, dense = plobpcg.lobpcg(
            jnp.asarray(a), jnp.asarray(x0), k=k, max_iters=kw.pop("max_iters", 500),
            tol=0.0 if tol is None else tol, guard=max(2, k // 2) if guard is None else guard)
        info = lc.LobpcgInfo(status, status == 0, iters, res, dense)
    else:
        raise AssertionError(path)
    return np.asarray(w), np.asarray(v), lc.LobpcgInfo(*(np.asarray(f) for f in info))


PATHS = ["numpy", "numpy_matvec", "ffi", "jax_matvec", "portable"]


@pytest.mark.parametrize("path", PATHS)
def test_tol_below_the_attainable_floor_never_converges_falsely(path):
    """B = T T^T (rank 10, n = 100), k = 10, tol = 1e-15: tol is below what float64 residuals
    can show (~ n eps ||A||), so it is clamped to the floor 8 n eps (documented); the answer
    must then meet the floor against the oracle, never a diverged Ritz value."""
    rng = np.random.default_rng(13)
    t = rng.standard_normal((100, 10))
    b = t @ t.T
    x0 = np.random.default_rng(14).standard_normal((100, 10))
    w, v, info = _run(path, b, x0, tol=1e-15, max_iters=400)
    lam = np.linalg.eigvalsh(b)[::-1][:10]
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(v))
    assert bool(info.converged), info
    floor = 8 * 100 * np.finfo(np.float64).eps
    # Converged means explicit residuals <= floor ||A||: then each Ritz value is within
    # sqrt(k) * floor * ||A|| of an eigenvalue (Kahan), plus the oracle's rounding.
    assert _true_relative_residuals(b, w, v) <= 2 * floor
    assert np.abs(w - lam).max() <= np.sqrt(10) * 2 * floor * lam[0]


SCALES = [(np.float32, 1e-30), (np.float32, 1e30), (np.float64, 1e-200), (np.float64, 1e200)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype,scale", SCALES)
@pytest.mark.parametrize("n", [150, 15])
def test_scaled_operator_gives_the_scaled_answer(path, dtype, scale, n):
    """A and s A (s a huge or tiny scale, not a power of two) give the same pairs up to s."""
    rng = np.random.default_rng(21)
    k = 3
    a, _ = spd_from(rng, np.geomspace(1, 1e-3, n))
    x0 = rng.standard_normal((n, k)).astype(dtype)
    w1, v1, i1 = _run(path, a.astype(dtype), x0)
    ws, vs, is_ = _run(path, (a * scale).astype(dtype), x0)
    assert bool(i1.converged) and bool(is_.converged), is_
    lam = np.linalg.eigvalsh(a)[::-1][:k]
    tol = 10 * np.sqrt(np.finfo(dtype).eps)  # the default tolerance
    # Both converged: each within sqrt(k) tol ||A|| of the top k (+ the float rounding of A).
    bound = np.sqrt(k) * tol * lam[0] + 10 * n * np.finfo(dtype).eps * lam[0]
    assert np.abs(ws.astype(np.float64) / scale - lam).max() <= bound
    assert np.abs(w1.astype(np.float64) - lam).max() <= bound
    assert np.all(np.isfinite(vs))


@pytest.mark.parametrize("path", ["ffi", "portable"])
@pytest.mark.parametrize("n", [10, 60])
def test_non_finite_matrix_gives_status_and_zeros_on_jax(path, n):
    a = np.eye(n)
    a[2, 3] = a[3, 2] = np.nan
    w, v, info = _run(path, a, np.ones((n, 2)) + np.eye(n, 2))
    assert int(info.status) == STATUS["non_finite"]
    assert not bool(info.converged)
    assert np.all(w == 0) and np.all(v == 0) and np.all(np.isfinite(info.residual))


@pytest.mark.parametrize("path", ["ffi", "portable"])
@pytest.mark.parametrize("n", [10, 60])
def test_non_symmetric_matrix_gives_status_on_jax(path, n):
    rng = np.random.default_rng(3)
    a, _ = spd_from(rng, np.geomspace(1, 1e-2, n))
    a[0, 1] += 0.1
    w, v, info = _run(path, a, rng.standard_normal((n, 2)))
    assert int(info.status) == STATUS["non_symmetric"]
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(v))


def test_non_finite_matvec_output_gives_status_on_jax():
    n = 60
    w, v, info = lc.lobpcg(lambda y: y * jnp.nan, jnp.ones((n, 2)) + jnp.eye(n, 2))
    assert int(info.status) == STATUS["non_finite"]
    assert np.all(np.isfinite(np.asarray(w))) and np.all(np.isfinite(np.asarray(v)))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: lc.lobpcg(np.eye(60), np.full((60, 2), np.nan)), "x0"),
        (lambda: lc.lobpcg(lambda x: x, np.full((60, 2), np.inf)), "x0"),
        (lambda: lc.lobpcg(lambda x: x * np.nan, np.ones((60, 2)) + np.eye(60, 2)), r"a \(matvec\).*NaN"),
        (lambda: lc.lobpcg(lambda x: x[:, :1], np.ones((60, 2)) + np.eye(60, 2)), r"a \(matvec\).*shape"),
        (lambda: lc.lobpcg(np.triu(np.ones((60, 60))), np.ones((60, 2))), "a must be symmetric"),
        (lambda: lc.lobpcg(np.triu(np.ones((6, 6))), np.ones((6, 2))), "a must be symmetric"),
        (lambda: lc.lobpcg(lambda x: np.triu(np.ones((6, 6))) @ x, np.ones((6, 2))), r"a \(matvec\) must be a symmetric"),
    ],
)
def test_bad_input_contract(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_jax_and_cpp_share_the_svqb_drop_threshold():
    from linalg_core import _lobpcg_jax
    from linalg_core._native import cpu

    assert _lobpcg_jax.SVQB_DROP == cpu.lobpcg_svqb_drop


PARITY_CASES = {
    "geometric": lambda n: np.geomspace(1, 1e-4, n),
    "cluster_at_k": lambda n: np.concatenate([[3.0, 2.5, 2.0, 1.0, 1.0, 1.0, 1.0], np.linspace(0.5, 0.01, n - 7)]),
    "rank_deficient": lambda n: np.concatenate([[4.0, 3.0, 2.0], np.zeros(n - 3)]),
}


@pytest.mark.parametrize("kind", list(PARITY_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_portable_and_cpp_kernels_agree(kind, dtype):
    """The C++ kernel (FFI) and the portable JAX kernel on fixed cases: the same status,
    iteration counts within 20% + 3 (the algorithms are the same, but rounding differs between
    the two BLAS call sequences, which moves the iteration at which a residual crosses tol), and
    eigenvalues that both meet the converged bound, so within 2 sqrt(k) tol ||A|| of each other."""
    rng = np.random.default_rng(8)
    n, k = 90, 5
    a, _ = spd_from(rng, PARITY_CASES[kind](n))
    a, x0 = a.astype(dtype), rng.standard_normal((n, k)).astype(dtype)
    wc, _, ic = _run("ffi", a, x0, max_iters=300)
    wp, _, ip = _run("portable", a, x0, max_iters=300)
    assert int(ic.status) == int(ip.status) == STATUS["converged"]
    assert abs(int(ic.iterations) - int(ip.iterations)) <= 0.2 * int(ic.iterations) + 3
    tol = 10 * np.sqrt(np.finfo(dtype).eps)
    norm = np.abs(np.linalg.eigvalsh(a.astype(np.float64))).max()
    assert np.abs(wc.astype(np.float64) - wp).max() <= 2 * np.sqrt(k) * tol * norm


def _ring(n):
    return 2 * np.eye(n) - np.roll(np.eye(n), 1, 0) - np.roll(np.eye(n), -1, 0)


def _path_laplacian(n):
    return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)


def _clustered(n):
    rng = np.random.default_rng(31)
    lam = np.concatenate([1 + 1e-3 * rng.uniform(-1, 1, 5), 0.5 + 1e-3 * rng.uniform(-1, 1, 5),
                          np.linspace(0.3, 0.01, n - 10)])
    return spd_from(rng, lam)[0]


def _random_symmetric(n):
    g = np.random.default_rng(32).standard_normal((n, n))
    return (g + g.T) / 2


def _scipy_iterations(a, x0, tol):
    """Iterations of scipy.sparse.linalg.lobpcg (largest=True, absolute tolerance `tol`): its
    operator products minus the initial one."""
    import warnings

    import scipy.sparse.linalg as ssl

    calls = [0]

    def product(x):
        calls[0] += 1
        return a @ x

    op = ssl.LinearOperator(a.shape, matvec=product, matmat=product, dtype=a.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssl.lobpcg(op, x0.copy(), largest=True, tol=tol, maxiter=3000)
    return calls[0] - 1


@pytest.mark.parametrize("family", ["ring", "path", "clustered", "random"])
@pytest.mark.parametrize("tol", [1e-5, 1e-8, 1e-10, 1e-12])
@pytest.mark.parametrize("guard", [None, 0])
def test_no_more_iterations_than_scipy(family, tol, guard):
    """Same block (k = 10, n = 100, same x0) and the same residual test: scipy's tol is absolute
    on ||A x - theta x||, ours relative to ||A||_est <= ||A||_2, so tol / ||A||_2 here is at least
    as strict as scipy's (tol / ||A||_2 below the floor 8 n eps is raised to it, documented).
    Iteration counts are deterministic for fixed inputs."""
    n, k = 100, 10
    a = {"ring": _ring, "path": _path_laplacian, "clustered": _clustered, "random": _random_symmetric}[family](n)
    norm = np.abs(np.linalg.eigvalsh(a)).max()
    x0 = np.random.default_rng(1).standard_normal((n, k))
    w, v, info = lc.lobpcg(a, x0, tol=tol / norm, guard=guard, max_iters=3000)
    assert bool(info.converged)
    applied = max(tol, 8 * n * np.finfo(np.float64).eps * norm)
    # The kernel's explicit residual and NumPy's differ by rounding, ~ sqrt(n) eps ||A|| << 1%.
    assert np.linalg.norm(a @ v - v * w, axis=0).max() <= 1.01 * applied
    assert int(info.iterations) <= _scipy_iterations(a, x0, tol)


_PROPERTY_SCALES = {np.float32: [1e-30, 1.0, 1e30], np.float64: [1e-200, 1.0, 1e200]}


@st.composite
def _honest_cases(draw, n):
    dtype = draw(lct.dtypes())
    case = draw(lct.psd_matrices_with_spectrum(n, dtype=np.float64))
    scale = draw(st.sampled_from(_PROPERTY_SCALES[dtype]))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    return case[0], dtype, scale, k, seed


def _check_honest(a64, dtype, scale, k, seed, path):
    n = a64.shape[0]
    a = (a64 * scale).astype(dtype)
    x0 = np.random.default_rng(seed).standard_normal((n, k)).astype(dtype)
    w, v, info = _run(path, a, x0, k=k, max_iters=300)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(v)) and np.all(np.isfinite(info.residual))
    if not bool(info.converged):
        return
    # The oracle of the matrix actually passed, unscaled in float64 (relative rounding 1e-16) so
    # that its own norms neither overflow nor underflow.
    aa = a.astype(np.float64) / scale
    w = w.astype(np.float64) / scale
    lam = np.linalg.eigvalsh(aa)[::-1][:k]
    norm = np.abs(np.linalg.eigvalsh(aa)).max()
    eps = np.finfo(dtype).eps
    applied = max(10 * np.sqrt(eps), 8 * n * eps)  # default tol, raised to the floor
    rounding = 10 * n * eps * norm  # float rounding of the kernel's own products
    # Converged: explicit residuals <= applied ||A||_est <= applied ||A||_2, so each Ritz value is
    # within sqrt(k) applied ||A|| of the top k (Kahan's bound, see the module docstring).
    assert np.linalg.norm(aa @ v.astype(np.float64) - v.astype(np.float64) * w.astype(np.float64),
                          axis=0).max() <= applied * norm + rounding
    assert np.abs(w.astype(np.float64) - lam).max() <= np.sqrt(k) * applied * norm + rounding


@given(case=_honest_cases(st.integers(31, 60)))
def test_property_honest_or_error_numpy(case):
    """Over spectra, scales (1e+-30 float32, 1e+-200 float64), dtypes and k: converged means the
    float64 oracle agrees to the tolerance; otherwise every output is finite."""
    _check_honest(*case, "numpy")


@given(case=_honest_cases(st.just(40)))
def test_property_honest_or_error_ffi(case):
    """The same property on the JAX FFI path (one n; k and dtype vary the compiled shapes)."""
    _check_honest(*case, "ffi")
