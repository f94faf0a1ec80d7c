"""The eigenbasis refresh in plain JAX: the contract of ``linalg_core_eigenbasis_refresh``
(cpp/eigenbasis.h; see :func:`linalg_core.eigenbasis_refresh`), for GPUs, TPUs and the portable
CPU path. Value-dependent branches of the C++ kernel (skip, fallback, failure) are selects per
batch element; the fallback ``eigh`` runs (under ``lax.cond``) only when some element needs it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core._native import cpu
from linalg_core.eigenbasis import EIGENBASIS_METHODS, EIGENBASIS_STATUS, orthonormality_tol


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _orthogonality(q):
    """(||(Q^T Q - I) X||_max, the estimate sqrt(||(Q^T Q - I) X||_F^2 / k) of ||Q^T Q - I||_F)
    on the k fixed sign probes X of cpp/eigenbasis.h."""
    x = jnp.asarray(cpu.eigenbasis_probes(q.shape[-1]), q.dtype)
    err = _t(q) @ (q @ x) - x
    return (jnp.max(jnp.abs(err), axis=(-2, -1)),
            jnp.sqrt(jnp.sum(err * err, axis=(-2, -1)) / x.shape[-1]))


def _congruence(s, q, exact):
    """diag(Q^T A Q), its relative off-diagonal mass, and ||Q^T A Q||_F (exact) or ||A Q||_F
    (from ||A Q||_F^2 - sum d^2, one product fewer), as in cpp/eigenbasis.cc."""
    c = s @ q
    if exact:
        b = _t(q) @ c
        d = jnp.diagonal(b, axis1=-2, axis2=-1)
        total2 = jnp.sum(b * b, axis=(-2, -1))
    else:
        d = jnp.sum(q * c, axis=-2)
        total2 = jnp.sum(c * c, axis=(-2, -1))
    diag = jnp.sum(d * d, axis=-1)
    off = jnp.maximum(total2 - diag, 0.0)
    total = jnp.sqrt(off + diag)
    rel = jnp.where(total > 0, jnp.sqrt(off) / jnp.where(total > 0, total, 1.0), 0.0)
    return d, rel, total


def _qr_signed(c):
    """The Q factor of c with diag(R) >= 0 (cpp/eigenbasis.h says why)."""
    q, r = jnp.linalg.qr(c)
    sign = jnp.where(jnp.diagonal(r, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(c.dtype)
    return q * sign[..., None, :]


def _eigh_signed(s):
    """Eigenvectors of s, each column's largest-magnitude entry (the first on ties) positive."""
    _, v = jnp.linalg.eigh(s)
    at = jnp.argmax(jnp.abs(v), axis=-2)
    lead = jnp.take_along_axis(v, at[..., None, :], axis=-2)[..., 0, :]
    return v * jnp.where(lead < 0, -1.0, 1.0).astype(s.dtype)[..., None, :]


def refresh(a, basis, *, steps, skip_tol, fallback_tol, has_basis):
    dt = a.dtype
    n = a.shape[-1]
    batch = a.shape[:-2]
    eps = float(np.finfo(dt).eps)
    tol_orth = orthonormality_tol(dt, n)
    eye = jnp.broadcast_to(jnp.eye(n, dtype=dt), a.shape)
    has_basis, steps = bool(has_basis), int(steps)
    finite_a = jnp.all(jnp.isfinite(a), axis=(-2, -1))
    finite_q = jnp.all(jnp.isfinite(basis), axis=(-2, -1)) if has_basis else jnp.ones(batch, bool)
    a0 = jnp.where(finite_a[..., None, None], a, 0)
    q_in = jnp.where(finite_q[..., None, None], basis, 0) if has_basis else eye
    amax = jnp.max(jnp.abs(a0), axis=(-2, -1))
    symmetric = jnp.max(jnp.abs(a0 - _t(a0)), axis=(-2, -1)) <= 8.0 * n * eps * amax
    e = jnp.where(amax > 0, jnp.frexp(amax)[1], 0)
    s = jnp.ldexp(a0, -e[..., None, None])
    s = (s + _t(s)) * 0.5
    zero = amax == 0
    orth_in = _orthogonality(q_in)
    valid = orth_in[0] <= tol_orth if has_basis else jnp.ones(batch, bool)

    off_in = -jnp.ones(batch, dt)
    skipped = jnp.zeros(batch, bool)
    fallback = jnp.zeros(batch, bool)
    q = q_in
    if has_basis:
        if skip_tol > 0 or steps == 0:
            d, rel, total = _congruence(s, q_in, skip_tol > 0)
            if skip_tol > 0:
                off_in = jnp.where(zero, -1.0, rel).astype(dt)
                skipped = rel <= skip_tol
        for _ in range(steps):
            q = _qr_signed(s @ q)
        if steps > 0:
            d_p, rel_p, total_p = _congruence(s, q, False)
            if skip_tol > 0:
                d = jnp.where(skipped[..., None], d, d_p)
                rel, total = jnp.where(skipped, rel, rel_p), jnp.where(skipped, total, total_p)
                q = jnp.where(skipped[..., None, None], q_in, q)
            else:
                d, rel, total = d_p, rel_p, total_p
        if fallback_tol > 0:
            fallback = ~skipped & ~(rel <= fallback_tol)
        skipped = skipped | zero
        fallback = fallback & ~zero
        q = jnp.where(zero[..., None, None], q_in, q)
        use_eigh = fallback
    else:
        use_eigh = ~zero
        d = rel = total = None

    if not has_basis or fallback_tol > 0:
        def with_eigh(q):
            return jnp.where(use_eigh[..., None, None], _eigh_signed(s), q)

        q = jax.lax.cond(jnp.any(use_eigh), with_eigh, lambda q: q, q)
        d_e, rel_e, total_e = _congruence(s, q, False)
        if d is None:
            d, rel, total = d_e, rel_e, total_e
        else:
            d = jnp.where(use_eigh[..., None], d_e, d)
            rel, total = jnp.where(use_eigh, rel_e, rel), jnp.where(use_eigh, total_e, total)
    orth_max, orth_f = _orthogonality(q)
    orth_max = jnp.where(skipped, orth_in[0], orth_max)
    orth_f = jnp.where(skipped, orth_in[1], orth_f)

    # The a-posteriori check of cpp/eigenbasis.cc.
    norm_a = jnp.sqrt(jnp.sum(s * s, axis=(-2, -1)))
    allowance = (orth_f + 16.0 * n * eps) * norm_a
    trace_a = jnp.trace(s, axis1=-2, axis2=-1)
    checked = ((orth_max <= tol_orth) & jnp.isfinite(rel) & (jnp.abs(jnp.sum(d, axis=-1) - trace_a) <= allowance)
               & (jnp.abs(total - norm_a) <= allowance) & jnp.all(jnp.isfinite(q), axis=(-2, -1)))
    perm = jnp.argsort(-d, axis=-1, stable=True).astype(jnp.int32)
    eigvals = jnp.ldexp(jnp.take_along_axis(d, perm, axis=-1), e[..., None])
    checked = checked & jnp.all(jnp.isfinite(eigvals), axis=-1)
    q_sorted = jnp.take_along_axis(q, perm[..., None, :], axis=-1)

    status = jnp.where(checked, EIGENBASIS_STATUS["ok"], EIGENBASIS_STATUS["failed"])
    status = jnp.where(valid, status, EIGENBASIS_STATUS["invalid_basis"])
    status = jnp.where(symmetric, status, EIGENBASIS_STATUS["not_symmetric"])
    status = jnp.where(finite_a & finite_q, status, EIGENBASIS_STATUS["non_finite_input"]).astype(jnp.int32)
    ok = status == EIGENBASIS_STATUS["ok"]
    method = jnp.where(use_eigh, EIGENBASIS_METHODS["eigh"],
                       jnp.where(skipped, EIGENBASIS_METHODS["skipped"], EIGENBASIS_METHODS["power"]))
    if not has_basis:
        method = jnp.full(batch, EIGENBASIS_METHODS["eigh"])
    iterations = jnp.where(skipped | zero, 0, steps) if has_basis else jnp.zeros(batch)

    failed_basis = jnp.where(finite_q[..., None, None], basis, eye) if has_basis else eye
    okb = ok[..., None, None]
    minus = -jnp.ones(batch, dt)
    return (jnp.where(okb, q_sorted, failed_basis).astype(dt),
            jnp.where(ok[..., None], eigvals, 0).astype(dt),
            jnp.where(ok[..., None], perm, jnp.arange(n, dtype=jnp.int32)),
            jnp.where(ok, off_in, minus).astype(dt),
            jnp.where(ok, rel, minus).astype(dt),
            jnp.where(ok, orth_max, minus).astype(dt),
            jnp.where(ok, iterations, 0).astype(jnp.int32),
            jnp.where(ok, method, EIGENBASIS_METHODS["input"]).astype(jnp.int32),
            status)
