"""Randomized SVD and symmetric eigh in plain JAX (the contracts of ``linalg_core_randomized_svd``
and ``linalg_core_randomized_eigh``; see :func:`linalg_core.randomized_svd`). Between power steps
the block is re-orthonormalised by QR (the CPU kernel uses the cheaper P L factor of an LU; the
span is the same in exact arithmetic)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from linalg_core.rsvd import RSVD_METHODS, RSVD_STATUS

_OK, _NON_FINITE, _FAILURE = (RSVD_STATUS[name] for name in ("ok", "non_finite_input", "lapack_failure"))
_RAYLEIGH_RITZ, _NYSTROM = RSVD_METHODS["rayleigh_ritz"], RSVD_METHODS["nystrom"]


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _range(a, omega, power_iters):
    q = jnp.linalg.qr(a @ omega)[0]
    for _ in range(int(power_iters)):
        q = jnp.linalg.qr(a @ jnp.linalg.qr(_t(a) @ q)[0])[0]
    return q


def _error_bound(a, q, probes):
    if probes.shape[-1] == 0:
        return jnp.zeros(a.shape[:-2], a.dtype)
    y = a @ probes
    y = y - q @ (_t(q) @ y)
    return 10.0 * np.sqrt(2.0 / np.pi) * jnp.max(jnp.linalg.norm(y, axis=-2), axis=-1)


def _finalise(outs, finite_in):
    ok_out = jnp.ones(finite_in.shape, bool)
    for o in outs:
        # Reduced over the trailing axes by name: a reshape to (..., -1) fails on an empty batch.
        ok_out &= jnp.all(jnp.isfinite(o), axis=tuple(range(finite_in.ndim, o.ndim)))
    status = jnp.where(~finite_in, _NON_FINITE, jnp.where(ok_out, _OK, _FAILURE)).astype(jnp.int32)
    good = status == _OK
    outs = tuple(jnp.where(good.reshape(good.shape + (1,) * (o.ndim - good.ndim)), o, 0.0) for o in outs)
    return outs, status


def randomized_svd(a, omega, probes, *, k, power_iters, method):
    """The handler's contract: operands ``a``, ``omega``, ``probes`` and every option of
    ``LC_RSVD_OPTIONS`` (cpp/rsvd.h) as a keyword; ``method`` is ``svd``."""
    del method
    finite_in = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    a = jnp.where(finite_in[..., None, None], a, 0.0)
    q = _range(a, omega, power_iters)
    ub, s, vt = jnp.linalg.svd(_t(q) @ a, full_matrices=False)
    u = q @ ub[..., :, :k]
    err = _error_bound(a, q, probes)
    (u, s, vt, err), status = _finalise((u, s[..., :k], vt[..., :k, :], err), finite_in)
    return u, s, vt, err, status


def randomized_eigh(a, omega, probes, *, k, power_iters, method):
    """The handler's contract: operands ``a``, ``omega``, ``probes`` and every option of
    ``LC_RSVD_OPTIONS`` (cpp/rsvd.h) as a keyword; ``method`` is ``rayleigh_ritz`` or
    ``nystrom``."""
    finite_in = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    a = jnp.where(finite_in[..., None, None], a, 0.0)
    n = a.shape[-1]
    q = _range(a, omega, power_iters)
    aq = a @ q
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
    err = _error_bound(a, q, probes)
    (vals, vecs, err), status = _finalise((vals, vecs, err), finite_in)
    return vals, vecs, err, status, used
