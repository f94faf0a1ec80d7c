"""Randomized SVD and symmetric eigh in plain JAX (the contracts of ``linalg_core_randomized_svd``
and ``linalg_core_randomized_eigh``; see :func:`linalg_core.randomized_svd`). Between power steps
the block is re-orthonormalised by QR (the CPU kernel uses the cheaper P L factor of an LU; the
span is the same in exact arithmetic). The tolerance mode (``tol > 0``) is one ``lax.while_loop``
over the whole batch with a per-element stop flag: an element that has stopped keeps its basis,
bound and count while the others iterate (its products are computed and discarded), so each
element's answer and ``iterations`` are those of the C++ kernel, which stops each on its own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core.rsvd import RSVD_METHODS, RSVD_STATUS

_OK, _NON_FINITE, _FAILURE, _MAX_ITERS = (RSVD_STATUS[name] for name in ("ok", "non_finite_input", "lapack_failure",
                                                                          "max_iters"))
_RAYLEIGH_RITZ, _NYSTROM = RSVD_METHODS["rayleigh_ritz"], RSVD_METHODS["nystrom"]


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _range(a, omega, power_iters):
    q = jnp.linalg.qr(a @ omega)[0]
    for _ in range(int(power_iters)):
        q = jnp.linalg.qr(a @ jnp.linalg.qr(_t(a) @ q)[0])[0]
    return q


def _projected_bound(aw, q):
    """10 sqrt(2/pi) max_j ||(I - Q Q^T) A w_j|| from ``aw = A W`` (HMT Lemma 4.1)."""
    y = aw - q @ (_t(q) @ aw)
    return 10.0 * np.sqrt(2.0 / np.pi) * jnp.max(jnp.linalg.norm(y, axis=-2), axis=-1)


def _error_bound(a, q, probes):
    if probes.shape[-1] == 0:
        return jnp.zeros(a.shape[:-2], a.dtype)
    return _projected_bound(a @ probes, q)


def _spectral_norm(z):
    """||Z||_2 as sqrt(lambda_max(Z^T Z)), the C++ kernel's formula."""
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(_t(z) @ z)[..., -1], 0.0))


def _range_to_tolerance(a, omega, probes, power_iters, tol):
    """The tolerance mode: (Q, Z = A^T Q, bound, iterations, met) per element, Q the first basis
    (after 0, 1, ..., power_iters iterations) whose bound is <= tol ||Z||_2."""
    aw = a @ probes
    q = jnp.linalg.qr(a @ omega)[0]
    z = _t(a) @ q
    bound = _projected_bound(aw, q)
    met = bound <= tol * _spectral_norm(z)
    iters = jnp.zeros(met.shape, jnp.int32)

    def unfinished(carry):
        it, _, _, _, met, _ = carry
        return (it < power_iters) & ~jnp.all(met)

    def step(carry):
        it, q, z, bound, met, iters = carry
        q_new = jnp.linalg.qr(a @ jnp.linalg.qr(z)[0])[0]
        z_new = _t(a) @ q_new
        bound_new = _projected_bound(aw, q_new)
        met_new = bound_new <= tol * _spectral_norm(z_new)
        go = ~met
        q = jnp.where(go[..., None, None], q_new, q)
        z = jnp.where(go[..., None, None], z_new, z)
        bound = jnp.where(go, bound_new, bound)
        iters = jnp.where(go, it + 1, iters)
        return it + 1, q, z, bound, met | (go & met_new), iters

    _, q, z, bound, met, iters = jax.lax.while_loop(unfinished, step, (jnp.int32(0), q, z, bound, met, iters))
    return q, z, bound, iters, met


def _range_and_bound(a, omega, probes, power_iters, tol):
    """(Q, Q^T A, bound, iterations, met) by the fixed (tol = 0) or the tolerance mode; Q^T A is
    None in the fixed mode, where the tolerance mode's check has not already formed it."""
    if tol > 0:
        q, z, bound, iters, met = _range_to_tolerance(a, omega, probes, power_iters, tol)
        return q, _t(z), bound, iters, met
    q = _range(a, omega, power_iters)
    batch = a.shape[:-2]
    return q, None, _error_bound(a, q, probes), jnp.full(batch, power_iters, jnp.int32), jnp.ones(batch, bool)


def _finalise(outs, finite_in, met):
    ok_out = jnp.ones(finite_in.shape, bool)
    for o in outs:
        # Reduced over the trailing axes by name: a reshape to (..., -1) fails on an empty batch.
        ok_out &= jnp.all(jnp.isfinite(o), axis=tuple(range(finite_in.ndim, o.ndim)))
    status = jnp.where(~finite_in, _NON_FINITE,
                       jnp.where(ok_out, jnp.where(met, _OK, _MAX_ITERS), _FAILURE)).astype(jnp.int32)
    good = (status == _OK) | (status == _MAX_ITERS)
    outs = tuple(jnp.where(good.reshape(good.shape + (1,) * (o.ndim - good.ndim)), o, 0.0) for o in outs)
    return outs, status


def randomized_svd(a, omega, probes, *, k, power_iters, tol, method):
    """The handler's contract: operands ``a``, ``omega``, ``probes`` and every option of
    ``LC_RSVD_OPTIONS`` (cpp/rsvd.h) as a keyword; ``method`` is ``svd``."""
    del method
    finite_in = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    a = jnp.where(finite_in[..., None, None], a, 0.0)
    q, b, err, iters, met = _range_and_bound(a, omega, probes, power_iters, tol)
    ub, s, vt = jnp.linalg.svd(_t(q) @ a if b is None else b, full_matrices=False)
    u = q @ ub[..., :, :k]
    (u, s, vt, err), status = _finalise((u, s[..., :k], vt[..., :k, :], err), finite_in, met)
    return u, s, vt, err, jnp.where(finite_in, iters, 0), status


def randomized_eigh(a, omega, probes, *, k, power_iters, tol, method):
    """The handler's contract: operands ``a``, ``omega``, ``probes`` and every option of
    ``LC_RSVD_OPTIONS`` (cpp/rsvd.h) as a keyword; ``method`` is ``rayleigh_ritz`` or
    ``nystrom``."""
    finite_in = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    a = jnp.where(finite_in[..., None, None], a, 0.0)
    n = a.shape[-1]
    q, qta, err, iters, met = _range_and_bound(a, omega, probes, power_iters, tol)
    aq = a @ q if qta is None else _t(qta)
    # Rayleigh-Ritz: the eigenpairs of Q^T A Q.
    t = _t(q) @ aq
    mu, w = jnp.linalg.eigh(0.5 * (t + _t(t)))
    rr_vals, rr_vecs = mu[..., ::-1][..., :k], q @ w[..., :, ::-1][..., :, :k]
    vals, vecs, used = rr_vals, rr_vecs, jnp.full(a.shape[:-2], _RAYLEIGH_RITZ, jnp.int32)
    if method == _NYSTROM:
        # Stabilised Nystrom (Tropp et al. 2017, Alg. 3): falls back to Rayleigh-Ritz where the
        # Cholesky factor of Q^T (A Q + nu Q) does not exist (non-finite).
        nu = np.sqrt(n) * np.finfo(np.dtype(a.dtype)).eps * jnp.sqrt(jnp.sum(aq * aq, axis=(-2, -1)))
        y = aq + nu[..., None, None] * q
        c = _t(q) @ y
        chol = jnp.linalg.cholesky(0.5 * (c + _t(c)))  # lower: c = chol chol^T
        f = _t(jnp.linalg.solve(chol, _t(y)))          # Y C^-1 with C = chol^T
        u, sv, _ = jnp.linalg.svd(f, full_matrices=False)
        ny_vals = jnp.maximum(sv[..., :k] ** 2 - nu[..., None], 0.0)
        ny_vecs = u[..., :, :k]
        ok = jnp.all(jnp.isfinite(chol), axis=(-2, -1)) & jnp.all(jnp.isfinite(ny_vecs), axis=(-2, -1))
        vals = jnp.where(ok[..., None], ny_vals, rr_vals)
        vecs = jnp.where(ok[..., None, None], ny_vecs, rr_vecs)
        used = jnp.where(ok, _NYSTROM, _RAYLEIGH_RITZ).astype(jnp.int32)
    (vals, vecs, err), status = _finalise((vals, vecs, err), finite_in, met)
    return vals, vecs, err, jnp.where(finite_in, iters, 0), status, used
