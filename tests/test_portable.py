"""The portable (plain-JAX) kernels against the CPU kernels and the float64 oracles.

On the CPU the public JAX entry points take the FFI kernels; the portable kernels (the path on
GPUs and TPUs) are called here directly, with the operands and attributes of their FFI handler, so
the same contract is checked on a machine without an accelerator.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import numpy as np
import pytest

import linalg_core as lc
from linalg_core import _jax, kron, roots, rsvd
from linalg_core.portable import fd as pfd
from linalg_core.portable import roots as proots


def _spd(rng, n, kappa, batch=()):
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    w = np.geomspace(1.0, 1.0 / kappa, n)
    return (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)


def _sketch(state):
    u, lam, _ = (np.asarray(x) for x in state)
    return (u * lam[..., None, :]) @ np.swapaxes(u, -1, -2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r,method", [(3, -1), (40, -1), (3, 1), (5, 2)])
def test_fd_update_matches_cpu_kernel(rng, dtype, r, method):
    d, l, batch = 24, 6, (3,)
    state = lc.fd_init(d, l, dtype=dtype, batch_shape=batch)
    for _ in range(2):  # a warm sketch
        state, _ = lc.fd_update(state, factor=rng.standard_normal(batch + (d, 4)).astype(dtype), beta=0.9)
    g = rng.standard_normal(batch + (d, r)).astype(dtype)
    want, want_info = lc.fd_update(state, factor=g, beta=0.9)
    beta = jnp.full(batch, 0.9, dtype)
    basis, eigvals, escaped, step, residual, used, status = pfd.update(
        *(jnp.asarray(x) for x in state), jnp.asarray(g), beta, term_is_matrix=0, method=method)
    # Both are exact top-l eigenpairs of the same d x d matrix: they agree to the eigensolvers'
    # backward error, a few d eps ||C||, relative to the largest eigenvalue.
    eps = np.finfo(dtype).eps
    scale = float(np.max(np.asarray(want.eigvals)))
    tol = 64 * d * eps * scale
    np.testing.assert_allclose(_sketch((basis, eigvals, escaped)), _sketch(want), atol=tol)
    np.testing.assert_allclose(np.asarray(escaped), want.escaped_mass, atol=tol)
    np.testing.assert_allclose(np.asarray(step), want_info.step_escaped_mass, atol=tol)
    np.testing.assert_array_equal(np.asarray(status), 0)
    gram = np.swapaxes(np.asarray(basis), -1, -2) @ np.asarray(basis)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(l), gram.shape), atol=64 * d * eps)


def test_fd_update_dense_matrix_term_and_failures(rng):
    d, l = 10, 4
    state = lc.fd_init(d, l, dtype=np.float64, batch_shape=(3,))
    m = rng.standard_normal((3, d, d))
    m = m @ np.swapaxes(m, -1, -2)
    m[1, 0, 0] = np.nan
    beta = jnp.asarray([1.0, 1.0, 1.5])
    out = pfd.update(*(jnp.asarray(x) for x in state), jnp.asarray(m), beta, term_is_matrix=1, method=-1)
    status = np.asarray(out[-1])
    assert status.tolist() == [0, 1, 2]
    want, _ = lc.fd_update(lc.fd_init(d, l, dtype=np.float64), matrix=m[0])
    np.testing.assert_allclose(_sketch([o[0] for o in out[:3]]), _sketch(want), atol=1e-12 * np.abs(m[0]).max())
    for i in (1, 2):  # failures leave the state unchanged
        np.testing.assert_array_equal(np.asarray(out[0][i]), state.basis[i])
        assert float(out[2][i]) == 0.0


def test_fd_apply_inverse_root_matches_cpu_kernel(rng):
    d, l = 20, 5
    state = lc.fd_init(d, l, dtype=np.float64)
    state, _ = lc.fd_update(state, factor=rng.standard_normal((d, 8)))
    x = rng.standard_normal((d, 3))
    want = lc.fd_apply_inverse_root(state, x, p=4, eps=1e-3)
    (got,) = pfd.apply_inverse_root(*(jnp.asarray(a) for a in state), jnp.asarray(x), p=4.0, eps=1e-3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-14)


# inverse_root's keyword defaults, so that the kernel gets the attributes the public function sends.
_ROOT_DEFAULTS = {k: v.default for k, v in inspect.signature(lc.inverse_root).parameters.items()
                  if v.kind is inspect.Parameter.KEYWORD_ONLY and k != "prev"}


def _root_call(a, prev=None, p=4.0, **kw):
    """The portable kernel on the attribute dict lc.inverse_root builds for these keywords."""
    attrs = roots._attrs(p, **{**_ROOT_DEFAULTS, **kw}, has_previous=prev is not None)
    a = jnp.asarray(a)
    return proots.inverse_root(a, a if prev is None else jnp.asarray(prev),
                               **{name: _jax._python(value) for name, value in attrs.items()})


@pytest.mark.parametrize("method", ["eigh", "newton", "newton3"])
@pytest.mark.parametrize("dtype,kappa", [(np.float64, 1e8), (np.float32, 1e4)])
def test_inverse_root_matches_oracle(rng, method, dtype, kappa):
    n, p = 40, 4
    a = _spd(rng, n, kappa, (2,))
    root, residual, lmax, ridge, iters, used, status = _root_call(a.astype(dtype), p=float(p), method=method)
    w, v = np.linalg.eigh(a)
    for i in range(2):
        r = float(ridge[i])  # the kernel's own ridge (a power-iteration lambda_max for iterations)
        oracle = (v[i] * (np.maximum(w[i], 0) + r) ** (-1 / p)) @ v[i].T
        # The bound of tests/test_roots.py (8 n eps kappa / p plus the iteration's residual / p),
        # kappa that of A + ridge, in the spectral norm.
        k_eff = w[i, -1] / (w[i, 0] + r) + 1
        res = max(float(residual[i]), 0.0)
        bound = 8 * n * np.finfo(dtype).eps * k_eff / p + res / p
        err = np.linalg.norm(np.asarray(root[i], np.float64) - oracle, 2) / np.linalg.norm(oracle, 2)
        assert err <= bound, (err, bound)
    assert np.asarray(status).tolist() == [0, 0] and np.asarray(used).tolist() == [lc.ROOT_METHODS[method]] * 2
    if method != "eigh":
        # The true residual, accepted up to max(sqrt(eps), 64 n eps, 4 n eps kappa) (inverse_root).
        e = np.finfo(dtype).eps
        assert (np.asarray(residual) <= max(e ** 0.5, 64 * n * e, 4 * n * e * kappa)).all()
        assert (np.asarray(iters) > 0).all()


def test_inverse_root_matches_cpu_kernel_and_falls_back(rng):
    a = _spd(rng, 16, 1e3, (3,))
    a[1, 2, 2] = np.inf
    prev = np.broadcast_to(np.eye(16), a.shape).copy()
    want, info = lc.inverse_root(jnp.asarray(a), 2, eps=1e-6, prev=jnp.asarray(prev))
    got = _root_call(a, prev, p=2.0)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want), rtol=1e-9, atol=1e-12)
    assert np.asarray(got[6]).tolist() == np.asarray(info.status).tolist() == [0, 1, 0]
    assert np.asarray(got[5]).tolist() == np.asarray(info.method).tolist()
    # Newton that cannot converge in 1 iteration falls back to eigh and says so.
    got = _root_call(a[[0]], p=4.0, method="newton", max_iters=1)
    assert int(got[5][0]) == 0 and int(got[6][0]) == 2


def test_inverse_root_pinv_and_true_residual(rng):
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    w = np.r_[np.geomspace(1, 1e-2, 8), np.zeros(4)]
    a = (q * w) @ q.T
    got = _root_call(a, p=2.0, pinv_threshold=1e-6, true_residual=True)
    want, _ = lc.inverse_root(a, 2, pinv_threshold=1e-6)
    np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-10)
    full = _spd(rng, 12, 1e2)
    got = _root_call(full, p=4.0, true_residual=True, method="newton3")
    assert 0 <= float(got[1]) <= 1e-10


def _assert_same_coefficient_operators(got, want, b, dtype):
    """The operators ``B R_i B^T`` of two shared-basis results ``(basis, coeffs, ...)`` agree (the
    basis itself is determined only up to signs). Both come from backward-stable eigensolvers and
    QR on the same starting block: a few ``b eps`` relative to the largest entry."""
    def operator(basis, coeffs):
        basis = np.asarray(basis, np.float64)
        return np.einsum("ij,mjk,lk->mil", basis, np.asarray(coeffs, np.float64), basis)

    op_want = operator(want[0], want[1])
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(operator(got[0], got[1]), op_want, atol=256 * b * eps * np.abs(op_want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_basis_update_matches_cpu_kernel(rng, dtype):
    from linalg_core.portable import shared_basis as psb

    m, b, k = 12, 16, 4
    mix = rng.standard_normal((b, b)) * np.geomspace(1, 0.05, b)
    state = lc.shared_basis_init(m, b, k, dtype=dtype)
    for t in range(2):
        state, _, _ = lc.shared_basis_update(state, (rng.standard_normal((m, b)) @ mix.T).astype(dtype),
                                             key=t, eps=1e-3)
    g = (rng.standard_normal((m, b)) @ mix.T).astype(dtype)
    y0 = np.concatenate([state.basis, rng.standard_normal((b, 2)).astype(dtype)], axis=1)
    want = lc._native.cpu.shared_basis_update(*(np.ascontiguousarray(x) for x in state), g, y0, 1e-3, 1)
    got = psb.update(*(jnp.asarray(x) for x in state), jnp.asarray(g), jnp.asarray(y0), eps=1e-3, power_iters=1)
    assert int(got[5]) == 0 and int(want[5]) == 0
    # Same algorithm and starting block; the basis is determined up to signs, so compare the
    # coefficient operators, the masses and the directions. The masses' differences: the
    # eigensolvers' and QR's few b eps, amplified by the power iteration's 1e-3 stopping rule.
    _assert_same_coefficient_operators(got, want, b, dtype)
    np.testing.assert_allclose(np.asarray(got[2]), want[2], rtol=2e-3)
    np.testing.assert_allclose(np.asarray(got[3]), want[3], rtol=2e-3, atol=2e-3 * np.abs(want[3]).max())


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_kron_approx_and_cosine_match_cpu_kernel(rng, steps):
    from linalg_core.portable import kron as pkron

    samples = rng.standard_normal((2, 16, 5, 4)) * np.geomspace(1, 0.1, 4)
    want_l, want_r, info = lc.kron_approx(samples, steps=steps)
    got_l, got_r, sigma, change, status = pkron.approx(jnp.asarray(samples), steps=steps)
    np.testing.assert_array_equal(np.asarray(status), info.status)
    # Same iteration in another association order (einsum vs SYRK of square-root factors): the
    # float64 rounding of a few m n N products, relative to the factors' norms.
    tol = 1e-12
    np.testing.assert_allclose(np.asarray(got_l), want_l, atol=tol * np.abs(want_l).max())
    np.testing.assert_allclose(np.asarray(got_r), want_r, atol=tol * np.abs(want_r).max())
    np.testing.assert_allclose(np.asarray(sigma), info.sigma, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(change), info.residual, atol=1e-10)
    (cos,) = pkron.cosine(jnp.asarray(samples), jnp.asarray(want_l), jnp.asarray(want_r))
    np.testing.assert_allclose(np.asarray(cos), lc.kron_cosine(samples, want_l, want_r), rtol=1e-12)


@pytest.mark.parametrize("power_iters", [0, 2])
def test_randomized_svd_matches_cpu_kernel(rng, power_iters):
    from linalg_core.portable import rsvd as prsvd

    m, n, k, l = 60, 40, 5, 12
    u0, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v0, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s0 = np.geomspace(1, 1e-3, n)
    a = (u0 * s0) @ v0.T
    a = np.stack([a, a * 2.0])
    a[1, 0, 0] = np.nan
    omega = rng.standard_normal((2, n, l))
    probes = rng.standard_normal((2, n, 6))
    attrs = rsvd._attrs(k, power_iters, "svd")
    want = lc._native.cpu.randomized_svd(np.ascontiguousarray(a[:1]), omega[:1], probes[:1], attrs)
    u, s, vt, err, iters, status = prsvd.randomized_svd(jnp.asarray(a), jnp.asarray(omega), jnp.asarray(probes),
                                                 **{name: _jax._python(value) for name, value in attrs.items()})
    assert np.asarray(status).tolist() == [0, 1] and float(jnp.abs(u[1]).max()) == 0.0
    # Same subspace from the same Omega: the triplets agree to the float64 rounding of the range
    # finder, amplified by the gap sigma_k / sigma_{k+1} only through the subspace angle.
    np.testing.assert_allclose(np.asarray(s[0]), want[1][0], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(u[0] * s[0]) @ np.asarray(vt[0]),
                               (want[0][0] * want[1][0]) @ want[2][0], atol=1e-10)
    np.testing.assert_allclose(float(err[0]), float(want[3][0]), rtol=1e-8)
    assert np.asarray(iters).tolist() == [power_iters, 0] and int(want[4][0]) == power_iters


@pytest.mark.parametrize("method", ["rayleigh_ritz", "nystrom"])
def test_randomized_eigh_matches_cpu_kernel(rng, method):
    from linalg_core.portable import rsvd as prsvd

    n, k, l = 50, 4, 10
    a = _spd(rng, n, 1e4)
    omega = rng.standard_normal((n, l))
    probes = rng.standard_normal((n, 5))
    attrs = rsvd._attrs(k, 2, method)
    want = lc._native.cpu.randomized_eigh(a, omega, probes, attrs)
    vals, vecs, err, iters, status, used = prsvd.randomized_eigh(jnp.asarray(a), jnp.asarray(omega), jnp.asarray(probes),
                                                          **{name: _jax._python(value) for name, value in attrs.items()})
    assert int(status) == 0 and int(used) == int(want[5]) == lc.RSVD_METHODS[method]
    assert int(iters) == int(want[3]) == 2
    np.testing.assert_allclose(np.asarray(vals), want[0], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.asarray(vecs).T @ want[1]), np.eye(k), atol=1e-7)
    np.testing.assert_allclose(float(err), float(want[2]), rtol=1e-8)


@pytest.mark.parametrize("n,k", [(120, 4), (15, 4)])
def test_lobpcg_matches_oracle(rng, n, k):
    from linalg_core.portable import lobpcg as plobpcg

    a = np.stack([_spd(rng, n, 1e3), _spd(rng, n, 1e2)])
    a[1, 0, 0] = np.nan if n == 15 else a[1, 0, 0]
    x0 = rng.standard_normal((2, n, k))
    w, v, res, iters, status, dense = plobpcg.lobpcg(jnp.asarray(a), jnp.asarray(x0), k=k, max_iters=300,
                                                     tol=0.0, guard=2)
    assert np.asarray(dense).tolist() == [int(5 * k >= n)] * 2
    exact = np.linalg.eigvalsh(a[0])[::-1][:k]
    assert int(status[0]) == 0
    # Converged: residuals <= tol = 10 sqrt(eps) relative to ||A||, so each eigenvalue is within
    # tol * ||A|| (Bauer-Fike for symmetric matrices); the dense path is exact.
    np.testing.assert_allclose(np.asarray(w[0]), exact, atol=10 * np.finfo(np.float64).eps ** 0.5 * exact[0])
    np.testing.assert_allclose(np.asarray(v[0]).T @ np.asarray(v[0]), np.eye(k), atol=1e-8)
    if n == 15:
        assert int(status[1]) == 3 and float(jnp.abs(v[1]).max()) == 0.0


@pytest.mark.parametrize("factory", ["shampoo", "sketchy_shampoo", "sketchy_adagrad", "shared_basis_adagrad"])
def test_optimizers_on_the_portable_path_match_the_cpu_kernels(rng, monkeypatch, factory):
    """The whole GPU/TPU code path of each optimizer, run on the CPU, against the FFI kernels."""
    import jax

    from linalg_core import _jax, optim

    params = {"w": jnp.zeros((20, 12)), "b": jnp.zeros(12)}
    grads = [{"w": jnp.asarray(rng.standard_normal((20, 12)) * np.geomspace(1, 0.1, 12)),
              "b": jnp.asarray(rng.standard_normal(12))} for _ in range(4)]
    runs = []
    for forced in (False, True):
        monkeypatch.setattr(_jax, "FORCE_PORTABLE", forced)
        opt = getattr(optim, factory)(0.1, block_size=16)
        state = opt.init(params)
        step = jax.jit(opt.update)
        outs = []
        for g in grads:
            u, state = step(g, state, params)
            outs.append(np.asarray(u["w"]))
        runs.append(outs)
    # float64 parameters, eps relative 1e-6 (Shampoo-type roots of kappa <= 1e6 matrices, n <= 20)
    # or absolute (shared basis): the two kernel sets differ by eigensolver rounding, bounded by
    # 8 n eps kappa^(1/p) relative with p = 4 (Sketchy AdaGrad: p = 2, kappa <= ||g||^2 / eps).
    tol = 8 * 20 * np.finfo(np.float64).eps * 1e6 ** 0.5
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a, atol=tol * np.abs(a).max())


# --- kron / shared basis: C++ kernel vs portable kernel on the honest-answer cases --------------


@pytest.mark.parametrize("case", ["plain", "huge", "tiny", "zero", "inf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kron_status_and_scaling_match_cpu_kernel(rng, case, dtype):
    from linalg_core.portable import kron as pkron

    big = 1e30 if dtype == np.float32 else 1e200
    samples = rng.standard_normal((10, 4, 3)) * np.geomspace(1, 0.1, 3)
    samples = {"plain": samples, "huge": samples * big, "tiny": samples / big, "zero": 0 * samples,
               "inf": np.where(np.arange(samples.size).reshape(samples.shape) == 5, np.inf, samples)}[case]
    samples = samples.astype(dtype)
    want = lc._native.cpu.kron_approx(samples, kron._attrs(3))
    got = [np.asarray(x) for x in pkron.approx(jnp.asarray(samples), steps=3)]
    assert int(got[4]) == int(want[4])
    # Same iteration in another association order: 64 (N + m + n) eps relative to each output.
    tol = 64 * (10 + 4 + 3) * np.finfo(dtype).eps
    for g_, w_ in zip(got[:4], want[:4]):
        assert np.isfinite(g_).all()
        np.testing.assert_allclose(g_, w_, rtol=tol, atol=tol * np.abs(w_).max())
    (cos,) = pkron.cosine(jnp.asarray(samples), jnp.asarray(want[0]), jnp.asarray(want[1]))
    if case in ("plain", "huge", "tiny"):
        np.testing.assert_allclose(np.asarray(cos), lc._native.cpu.kron_cosine(samples, want[0], want[1]), rtol=tol)


@pytest.mark.parametrize("case", ["plain", "huge", "tiny", "nan_grads", "negative_mass", "overflow"])
def test_shared_basis_status_and_scaling_match_cpu_kernel(rng, case):
    from linalg_core.portable import shared_basis as psb

    dtype, m, b, k = np.float32, 6, 10, 3
    mix = rng.standard_normal((b, b)) * np.geomspace(1, 0.05, b)
    state = lc.shared_basis_init(m, b, k, dtype=np.float64)
    for t in range(2):
        state, _, _ = lc.shared_basis_update(state, rng.standard_normal((m, b)) @ mix.T, key=t, eps=1e-3)
    g = rng.standard_normal((m, b)) @ mix.T
    s = {"huge": 1e15, "tiny": 1e-15, "overflow": 1e20}.get(case, 1.0)
    state_scale = 1.0 if case == "overflow" else s * s  # overflow: only the new state leaves float32
    basis, coeffs, mass = state.basis, state.coeffs * state_scale, state.escaped_mass * state_scale
    g = g * s
    if case == "nan_grads":
        g[1, 1] = np.nan
    if case == "negative_mass":
        mass[2] = -1.0
    parts = [np.ascontiguousarray(x, dtype) for x in (basis, coeffs, mass)]
    g = np.ascontiguousarray(g, dtype)
    y0 = np.concatenate([parts[0], rng.standard_normal((b, 2)).astype(dtype)], axis=1)
    eps = 1e-3 * state_scale
    want = lc._native.cpu.shared_basis_update(*parts, g, y0, eps, 1)
    got = [np.asarray(x) for x in psb.update(*(jnp.asarray(x) for x in parts), jnp.asarray(g), jnp.asarray(y0),
                                             eps=eps, power_iters=1)]
    assert int(got[5]) == int(want[5])
    for x in got[:5] + list(want[:5]):
        assert np.isfinite(x).all()
    if int(want[5]) != lc.SHARED_BASIS_STATUS["ok"]:
        for i in range(3):  # both return the input state
            np.testing.assert_array_equal(got[i], parts[i])
            np.testing.assert_array_equal(want[i], parts[i])
        assert not got[3].any() and not want[3].any()
        return
    # As in test_shared_basis_update_matches_cpu_kernel; the masses' 1e-3 stopping rule (2e-3
    # relative) for masses and directions.
    _assert_same_coefficient_operators(got, want, b, dtype)
    np.testing.assert_allclose(got[2], want[2], rtol=2e-3)
    np.testing.assert_allclose(got[3], want[3], atol=2e-3 * np.abs(want[3]).max())
# --------------------------------------------------------------------------- FD parity, fixed cases
#
# The C++ kernel (through its NumPy binding, which does no validation of its own) and the portable
# kernel on the same operands: the same status and method per batch element, and answers within
# the eigensolvers' backward error.


def _fd_case(rng, name, dtype):
    """(state parts, term, beta, term_is_matrix, method) for one named case."""
    d, l = 16, 4
    state = lc.fd_init(d, l, dtype=dtype)
    for _ in range(2):
        state, _ = lc.fd_update(state, factor=(rng.standard_normal((d, 3)) * np.geomspace(1, 0.1, d)[:, None]).astype(dtype))
    basis, eigvals, escaped = (np.array(a) for a in state)
    g = rng.standard_normal((d, 3))
    term, matrix, method, beta = g, False, -1, 0.9
    big = 1e20 if dtype == np.float32 else 1e170
    if name == "thin_stack":
        method = 0
    elif name == "householder":
        method = 2
    elif name == "dense_factor":
        method = 1
    elif name == "wide_factor":  # l + r > d: only the Householder form applies
        term, method = rng.standard_normal((d, 14)), 0
    elif name == "inside_span":  # G's part orthogonal to U is zero: the thin stack falls back
        basis, eigvals, escaped = (np.array(a) for a in lc.fd_init(d, l, dtype=dtype))
        term = np.zeros((d, 2))
        term[:l] = rng.standard_normal((l, 2))
        method = 0
    elif name == "matrix":
        term, matrix = g @ g.T, True
    elif name == "scaled_up":
        eigvals = eigvals * np.asarray(1e30 if dtype == np.float32 else 1e200, dtype)
        term = g * (1e15 if dtype == np.float32 else 1e100)
    elif name == "overflow":
        term = g * big
    elif name == "nan":
        term = g.copy()
        term[3, 1] = np.nan
    elif name == "bad_beta":
        beta = 1.5
    elif name == "invalid_state":
        eigvals = eigvals[::-1].copy()
    elif name == "non_symmetric":
        term, matrix = g @ g.T, True
        term[0, 1] += 0.1
    elif name == "indefinite":
        term, matrix = -np.eye(d), True
    return ([basis, eigvals, escaped], np.asarray(term, dtype), np.asarray(beta, dtype), matrix, method)


FD_CASES = {
    "thin_stack": ("ok", "thin_stack"), "householder": ("ok", "thin_stack_householder"),
    "dense_factor": ("ok", "dense_eigh"), "wide_factor": ("ok", "thin_stack_householder"),
    "inside_span": ("ok", "thin_stack_householder"), "matrix": ("ok", "dense_eigh"),
    "scaled_up": ("ok", "thin_stack"), "overflow": ("not_representable", None),
    "nan": ("non_finite_input", None), "bad_beta": ("bad_beta", None),
    "invalid_state": ("invalid_state", None), "non_symmetric": ("non_symmetric_term", None),
    "indefinite": ("indefinite_term", None),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(FD_CASES))
def test_fd_update_parity_with_cpu_kernel(rng, dtype, name):
    parts, term, beta, matrix, method = _fd_case(rng, name, dtype)
    want = lc._native.cpu.fd_update(*(np.ascontiguousarray(a, dtype) for a in parts), term, beta, matrix, method)
    got = [np.asarray(a) for a in pfd.update(*(jnp.asarray(a, dtype) for a in parts), jnp.asarray(term),
                                              jnp.asarray(beta), term_is_matrix=int(matrix), method=method)]
    status, used = FD_CASES[name]
    assert int(want[6]) == int(got[6]) == lc.FD_STATUS[status]
    if name == "inside_span":
        # G's part orthogonal to U is exactly zero: Q2 is built from the rounding noise of the
        # projection, which the BLAS kernel decides (SkylakeX and Haswell differ). The thin stack
        # then either succeeds (noise columns orthonormal and orthogonal to U: the same answer,
        # R2 = 0) or falls back; either answer is held to the bounds below.
        allowed = {lc.FD_METHODS["thin_stack"], lc.FD_METHODS["thin_stack_householder"]}
        assert int(want[5]) in allowed and int(got[5]) in allowed
    elif used is not None:
        assert int(want[5]) == int(got[5]) == lc.FD_METHODS[used]
    if status != "ok":  # both pass the state through unchanged, outputs finite
        for a, b in zip(got[:3], parts):
            np.testing.assert_array_equal(a, np.asarray(b, dtype))
        for a in want[:3]:
            assert np.isfinite(a).all()
        return
    # Both compute the top eigenpairs of the same C to the eigensolvers' backward error
    # (eig_tol = 4 d eps ||C|| each, tests/test_fd.py), and the sketches U diag(lambda) U^T to
    # (2 + log2 d) times that; rho to the same bound plus one rounding.
    eps = np.finfo(dtype).eps
    d = parts[0].shape[0]
    norm_c = float(want[1][0]) + float(want[3])
    tol = 2 * 4 * d * eps * norm_c
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=tol)
    np.testing.assert_allclose(float(got[3]), float(want[3]), rtol=0, atol=tol)
    np.testing.assert_allclose(float(got[2]), float(want[2]), rtol=0, atol=tol + 4 * eps * float(want[2]))
    sk = (2 + np.log2(d)) * tol
    np.testing.assert_allclose(_sketch(got[:3]), _sketch(want[:3]), rtol=0, atol=sk)
    np.testing.assert_allclose(float(got[4]), float(want[4]), rtol=0, atol=tol / norm_c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fd_apply_parity_with_cpu_kernel(rng, dtype):
    """Both accumulate in float64 (x64 is on in the tests): within two roundings to the dtype plus
    the float64 GEMMs' error amplified by c0 / c_1 (here lambda / f <= 1e10, p = 2)."""
    d, l = 16, 4
    basis = np.linalg.qr(rng.standard_normal((d, l)))[0].astype(dtype)
    eigvals = np.geomspace(1e4, 1e1, l).astype(dtype)
    escaped = np.zeros((), dtype)
    x = np.concatenate([basis[:, :2], rng.standard_normal((d, 2)).astype(dtype)], axis=1)
    want, finite = lc._native.cpu.fd_apply_inverse_root(basis, eigvals, escaped, x, 2.0, 1e-6)
    assert bool(finite)
    (got,) = pfd.apply_inverse_root(*(jnp.asarray(a) for a in (basis, eigvals, escaped, x)), p=2.0, eps=1e-6)
    scale = np.abs(want).max(axis=0)
    amplified = (d + l) * np.finfo(np.float64).eps * 1e3 * np.abs(x).max(axis=0)
    assert (np.abs(np.asarray(got, np.float64) - want).max(axis=0) <= 2 * np.finfo(dtype).eps * scale + 4 * amplified).all()
# ---------------------------------------------------------------------------------------------
# Inverse roots: the FFI kernel and the portable kernel on the same fixed cases (statuses,
# methods, certificates)


def _root_batch(dtype):
    """Fixed cases in one batch per dtype (n = 16, p = 4, eps = 1e-6 relative), with `prev` the
    identity except for one matrix whose prev holds an Inf."""
    rng = np.random.default_rng(1313)
    n = 16
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    well = _spd(rng, n, 1e2)
    skew = well.copy()
    skew[0, 5] += 1e-3
    big = 1e30 if dtype == np.float32 else 1e200
    cases = {
        "well": well,
        "kappa 1e6": _spd(rng, n, 1e6),  # the float32 Newton case: its M drifts from X^p A
        "kappa 1e9": _spd(rng, n, 1e9),  # float32: unresolved even with the ridge
        "indefinite": (q * np.r_[np.geomspace(1, 1e-2, n - 1), -0.2]) @ q.T,
        "not symmetric": skew,
        "inf in prev": well,
        "huge": well * big,
        "tiny": well / big,
    }
    a = np.stack(list(cases.values())).astype(dtype)
    prev = np.broadcast_to(np.eye(n), a.shape).astype(dtype).copy()
    prev[list(cases).index("inf in prev"), 2, 2] = np.inf
    return list(cases), a, prev


@pytest.mark.parametrize("method", ["eigh", "newton", "newton3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_root_ffi_and_portable_agree(monkeypatch, dtype, method):
    """Same status and method per matrix on the FFI and the portable path; certified roots that
    agree to the documented bound; the same residual definition."""
    import jax

    from linalg_core import _jax

    names, a, prev = _root_batch(dtype)
    p, n = 4, a.shape[-1]
    outs = []
    for forced in (False, True):
        monkeypatch.setattr(_jax, "FORCE_PORTABLE", forced)
        x, info = jax.jit(lambda m, q: lc.inverse_root(m, p, prev=q, method=method))(jnp.asarray(a), jnp.asarray(prev))
        outs.append((np.asarray(x), [np.asarray(f) for f in info]))
    (x_ffi, i_ffi), (x_port, i_port) = outs
    i_ffi, i_port = lc.RootInfo(*i_ffi), lc.RootInfo(*i_port)
    # "kappa 1e6" sits at the iterations' accept threshold (sqrt(eps) in float64, 0.5 in
    # float32), and the C++ Newton iteration is scaled (Lanczos bound) while the portable one is
    # not: either may fall back there, depending also on the BLAS kernel's rounding (both
    # certified below). "kappa 1e9" in float32 is beyond what float32 resolves: both report
    # ill_conditioned, with whichever link's root passed its residual test first. Every other
    # matrix: the same status and method.
    iterative = method != "eigh"
    same = np.array([not (iterative and name == "kappa 1e6") for name in names])
    same_method = same & np.array([not (iterative and dtype == np.float32 and name == "kappa 1e9") for name in names])
    np.testing.assert_array_equal(i_port.status[same], i_ffi.status[same], err_msg=str(names))
    np.testing.assert_array_equal(i_port.method[same_method], i_ffi.method[same_method], err_msg=str(names))
    assert np.all(np.isfinite(x_ffi)) and np.all(np.isfinite(x_port))
    status = dict(zip(names, i_ffi.status.tolist()))
    assert status["indefinite"] == lc.ROOT_STATUS["indefinite"]
    assert status["not symmetric"] == lc.ROOT_STATUS["not_symmetric"]
    assert status["inf in prev"] == lc.ROOT_STATUS["non_finite_input"]
    assert status["kappa 1e9"] == (lc.ROOT_STATUS["ill_conditioned"] if dtype == np.float32 else lc.ROOT_STATUS["ok"])
    for name in ("well", "huge", "tiny", "kappa 1e6"):
        assert status[name] in (lc.ROOT_STATUS["ok"], lc.ROOT_STATUS["fell_back"]), name
    eps = np.finfo(dtype).eps
    for i, name in enumerate(names):
        a64 = a[i].astype(np.float64)
        w, v = np.linalg.eigh(a64)
        for x, info in ((x_ffi[i], i_ffi), (x_port[i], i_port)):
            if not info.converged[i]:
                continue
            # Each against the float64 oracle with its own ridge (eps times its own lambda_max
            # estimate, which may differ by the power steps' 1e-3): the bound of tests/test_roots.py,
            # 8 n eps kappa / p + residual / p.
            r = float(info.ridge[i])
            kappa = (w[-1] + r) / (max(w[0], 0) + r)
            ref = (v * (np.maximum(w, 0) + r) ** (-1.0 / p)) @ v.T
            err = np.linalg.norm(x.astype(np.float64) - ref, 2) / np.linalg.norm(ref, 2)
            assert err <= 8 * n * eps * kappa / p + max(float(info.residual[i]), 0) / p, (name, err)
            # lambda_max: exact (eigh) or a Rayleigh quotient of power steps, in [lambda_max / 2,
            # lambda_max] up to rounding.
            assert 0.5 * w[-1] <= float(info.lambda_max[i]) <= w[-1] * (1 + 10 * n * eps), name
            if info.method[i] in (lc.ROOT_METHODS["newton"], lc.ROOT_METHODS["newton3"]):
                # ||X^p (A + eps I) - I||_inf of its own root, within the default accept (<= 0.5).
                assert 0 <= info.residual[i] <= 0.5, name
