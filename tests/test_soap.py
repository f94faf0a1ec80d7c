"""SOAP against a float64 NumPy reference of its update rule (dense, numpy.linalg.eigh/qr, no code
shared with the library), plus the permutation of the second moment, NaN safety, failures, jit.

Agreement: parameters are float64 and the eigenbases are functions of the statistics with
error ``n eps64 / gap`` (Davis-Kahan; the spectra here are well separated). The rotated moments
then carry an absolute error ``delta ~ 16 n eps64 ||G||_F``, and Adam's ``m' / (sqrt(v) + eps)``
turns it into up to ``delta / eps`` where ``v`` is tiny (the off-diagonal of ``Q_L^T G Q_R`` at
the first call is zero in exact arithmetic): :func:`_tolerance`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linalg_core
from linalg_core import EIGENBASIS_STATUS, optim


def _eigh_desc(a):
    w, v = np.linalg.eigh(a)
    return v[:, ::-1]


def _refresh(a, q, steps=1):
    """Power steps with diag(R) >= 0, then columns sorted by diag(Q^T A Q) descending."""
    for _ in range(steps):
        q, r = np.linalg.qr(a @ q)
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    d = np.einsum("ri,rs,si->i", q, a, q)
    perm = np.argsort(-d, kind="stable")
    return q[:, perm], perm


def reference_soap(grads, *, b1=0.95, b2=0.95, eps=1e-8, beta_s=None, freq=10, steps=1, eigh_refresh=False):
    """One unblocked matrix parameter: the rule of linalg_core/optim/soap.py's docstring
    (``eigh_refresh``: every refresh falls back to eigh, V keeps its ranks)."""
    beta_s = b2 if beta_s is None else beta_s
    m_, n_ = grads[0].shape
    L, R = np.zeros((m_, m_)), np.zeros((n_, n_))
    M, V = np.zeros((m_, n_)), np.zeros((m_, n_))
    ql = qr = None
    out = []
    for t, g in enumerate(grads, 1):
        L = beta_s * L + (1 - beta_s) * g @ g.T
        R = beta_s * R + (1 - beta_s) * g.T @ g
        if t == 1:
            ql, qr = _eigh_desc(L), _eigh_desc(R)
        elif t % freq == 0 and eigh_refresh:
            ql, qr = _eigh_desc(L), _eigh_desc(R)
        elif t % freq == 0:
            ql, pl = _refresh(L, ql, steps)
            qr, pr = _refresh(R, qr, steps)
            V = V[pl][:, pr]
        M = b1 * M + (1 - b1) * g
        gr = ql.T @ g @ qr
        V = b2 * V + (1 - b2) * gr * gr
        m_hat = ql.T @ (M / (1 - b1 ** t)) @ qr
        v_hat = V / (1 - b2 ** t)
        out.append(ql @ (m_hat / (np.sqrt(v_hat) + eps)) @ qr.T)
    return out


def reference_adam(grads, b1=0.95, b2=0.95, eps=1e-8):
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append((m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps))
    return out


def _stream(rng, shape, steps):
    """Gradients G = A Z B with fixed well-conditioned A, B: statistics with separated spectra."""
    a = np.diag(0.8 ** np.arange(shape[0])) @ np.linalg.qr(rng.standard_normal((shape[0],) * 2))[0]
    b = np.linalg.qr(rng.standard_normal((shape[1],) * 2))[0] @ np.diag(0.85 ** np.arange(shape[1]))
    return [a @ rng.standard_normal(shape) @ b for _ in range(steps)]


def _tolerance(grads, n, eps=1e-8):
    """The error bound of the module docstring, with ||G||_F bounding the bias-corrected moment."""
    return 16 * n * np.finfo(np.float64).eps * max(np.linalg.norm(g) for g in grads) / eps


def _run(opt, grads, params=None):
    params = jax.tree.map(lambda g: jnp.zeros(g.shape, g.dtype), grads[0]) if params is None else params
    state = opt.init(params)
    step = jax.jit(opt.update)
    outs = []
    for g in grads:
        u, state = step(jax.tree.map(jnp.asarray, g), state, params)
        outs.append(jax.tree.map(np.asarray, u))
    return outs, state


@pytest.mark.parametrize("freq,steps", [(3, 1), (2, 2), (100, 1)])
def test_matches_reference(rng, freq, steps):
    """Square blocks keep the statistics full rank from the first call, so the eigenbases (and the
    reference's) are unique up to column signs, which the update does not depend on."""
    grads = _stream(rng, (5, 5), 7)
    want = reference_soap(grads, freq=freq, steps=steps)
    got, state = _run(optim.scale_by_soap(precondition_frequency=freq, refresh_steps=steps), grads)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=0, atol=_tolerance(grads, 5))
    assert int(state.diagnostics.failures) == 0


def test_fallback_refresh_matches_reference(rng):
    """fallback_tol below any mass a power step leaves: every refresh is an eigh, V keeps ranks."""
    grads = _stream(rng, (5, 5), 6)
    want = reference_soap(grads, freq=2, eigh_refresh=True)
    got, _ = _run(optim.scale_by_soap(precondition_frequency=2, fallback_tol=1e-300), grads)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=0, atol=_tolerance(grads, 5))


def test_blocked_matches_reference_per_block_and_vectors_get_adam(rng):
    grads = [{"w": g, "b": rng.standard_normal(6)} for g in _stream(rng, (8, 8), 5)]
    opt = optim.scale_by_soap(block_size=4, precondition_frequency=2)
    got, _ = _run(opt, grads)
    for bi in range(2):
        for bj in range(2):
            sl = (slice(4 * bi, 4 * bi + 4), slice(4 * bj, 4 * bj + 4))
            block = [g["w"][sl] for g in grads]
            for w, g in zip(reference_soap(block, freq=2), got):
                np.testing.assert_allclose(g["w"][sl], w, rtol=0, atol=_tolerance(block, 4))
    for w, g in zip(reference_adam([g["b"] for g in grads]), got):
        np.testing.assert_allclose(g["b"], w, rtol=1e-10)


def test_second_moment_follows_the_permutation(rng):
    """At a refresh that reorders the basis, V is permuted with it: V_new = V_old[perm_l][:, perm_r]
    before the new gradient's term. Here the statistics are changed between calls so that the
    eigenvalue order of R flips: gradients first along column 0, then mostly along column 3."""
    e = np.eye(4)
    first = [np.outer(rng.standard_normal(4), e[0] * 2 + e[3] * 0.1) for _ in range(3)]
    later = [np.outer(rng.standard_normal(4), e[3] * 5 + e[0] * 0.1) for _ in range(1)]
    grads = first + later
    opt = optim.scale_by_soap(precondition_frequency=4, b2=0.5)
    _, state3 = _run(opt, grads[:3])
    _, state4 = _run(opt, grads)
    q_l3, q_r3, _, v3 = (np.asarray(x[0]) for x in state3.leaves[0].cache)
    q_l4, q_r4, _, v4 = (np.asarray(x[0]) for x in state4.leaves[0].cache)
    left, right = (np.asarray(x[0]) for x in state4.leaves[0].stats)
    _, pl = _refresh(left, q_l3)
    _, pr = _refresh(right, q_r3)
    assert not np.array_equal(pr, np.arange(4))  # the refresh did reorder R's basis
    g4 = q_l4.T @ grads[3] @ q_r4
    np.testing.assert_allclose(v4, 0.5 * v3[pl][:, pr] + 0.5 * g4 * g4, rtol=1e-9, atol=1e-15)


def test_jit_equals_eager_and_alias(rng):
    grads = _stream(rng, (6, 4), 4)
    params = jnp.zeros((6, 4))
    opt = optim.soap(0.1, precondition_frequency=2)
    s1 = s2 = opt.init(params)
    for g in grads:
        u1, s1 = opt.update(jnp.asarray(g), s1, params)
        u2, s2 = jax.jit(opt.update)(jnp.asarray(g), s2, params)
        np.testing.assert_allclose(np.asarray(u1), np.asarray(u2), rtol=1e-12, atol=1e-15)
    pre, _ = _run(optim.scale_by_soap(precondition_frequency=2), grads)
    full, _ = _run(optim.soap(0.1, optim.SoapOptions(precondition_frequency=2)), grads)
    for p_, f_ in zip(pre, full):
        np.testing.assert_allclose(f_, -0.1 * p_, rtol=1e-12)


def test_failed_refresh_keeps_the_previous_basis(rng, monkeypatch):
    """A refresh whose status is not ok (injected) keeps the basis and the unpermuted V, and is
    counted once per factor."""
    real = linalg_core.eigenbasis_refresh

    def flaky(a, basis, **kw):
        q, lam, perm, info = real(a, basis, **kw)
        if basis is None:
            return q, lam, perm, info
        failed = info._replace(status=jnp.full(info.status.shape, EIGENBASIS_STATUS["failed"], jnp.int32))
        return basis, lam, jnp.flip(perm, -1), failed

    monkeypatch.setattr(linalg_core, "eigenbasis_refresh", flaky)
    grads = _stream(rng, (5, 4), 3)
    opt = optim.scale_by_soap(precondition_frequency=2)
    _, state1 = _run(opt, grads[:1])
    _, state2 = _run(opt, grads[:2])
    q_l1, q_r1, _, v1 = (np.asarray(x) for x in state1.leaves[0].cache)
    q_l2, q_r2, _, v2 = (np.asarray(x) for x in state2.leaves[0].cache)
    np.testing.assert_array_equal(q_l2, q_l1)
    np.testing.assert_array_equal(q_r2, q_r1)
    g2 = q_l1[0].T @ grads[1] @ q_r1[0]
    np.testing.assert_allclose(v2[0], 0.95 * v1[0] + 0.05 * g2 * g2, rtol=1e-12)
    assert int(state2.diagnostics.failures) == 2


def test_float32_and_bfloat16_parameters(rng):
    for dtype in (jnp.float32, jnp.bfloat16):
        params = jnp.zeros((8, 6), dtype)
        opt = optim.soap(0.1)
        state = opt.init(params)
        u, state = jax.jit(opt.update)(jnp.asarray(rng.standard_normal((8, 6)), dtype), state, params)
        assert u.dtype == dtype and bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))
        assert all(x.dtype != jnp.float64 for x in jax.tree.leaves(state) if x.dtype.kind == "f")


def test_options():
    opts = optim.SoapOptions(block_size=4, precondition_frequency=3)
    assert optim.soap(0.1, opts, b1=0.9) is not None
    for bad in (dict(b1=1.0), dict(b2=-0.1), dict(eps=0.0), dict(shampoo_beta=1.0),
                dict(precondition_frequency=0), dict(refresh_steps=1.5), dict(skip_tol=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            optim.SoapOptions(**bad)
    with pytest.raises(TypeError, match="unexpected option"):
        optim.soap(0.1, bogus=1)
    with pytest.raises(TypeError, match="SoapOptions"):
        optim.soap(0.1, optim.ShampooOptions())


def test_lowers_for_cuda_with_portable_kernels():
    import re

    from jax import export

    opt = optim.soap(0.1, block_size=16)
    params = {"w": jnp.zeros((24, 20), jnp.float32), "b": jnp.zeros(20, jnp.float32)}
    specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), [params, opt.init(params), params])
    ours = [export.DisabledSafetyCheck.custom_call(name) for name in linalg_core._native.cpu.ffi_targets()]
    text = export.export(jax.jit(opt.update), platforms=["cuda"], disabled_checks=ours)(*specs).mlir_module()
    assert not re.findall(r"linalg_core_\w+", text)
