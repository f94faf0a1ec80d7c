"""LOBPCG for a JAX matvec function, in JAX (the operator cannot cross the FFI boundary).

The same algorithm and constants as cpp/lobpcg.cc, in static shapes for `lax.while_loop`:
converged wanted columns of W are zeroed instead of removed (soft locking), and SVQB zeroes and
masks the directions it drops instead of removing them; dropped directions are pushed below every
Ritz value of the Rayleigh-Ritz matrix so they never rank among the top pairs. W and P are
normalised column by column before they are orthogonalised, P is formed from the Ritz
coefficients of [W, P], the operator is scaled by a power of two from its first product, and
convergence is measured against ``||A||_est`` (the largest ``||A s|| / ||s||`` of the explicit
products), with ``tol`` raised to ``TOL_FLOOR n eps`` and confirmed by the a-posteriori test
(explicit A X, X orthonormal, Ritz values = Rayleigh quotients). A Ritz vector that lost its
unit length restarts from the previous X.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from linalg_core.lobpcg import LOBPCG_STATUS, SVQB_DROP, TOL_FLOOR

_CONVERGED = LOBPCG_STATUS["converged"]
_MAX_ITERS = LOBPCG_STATUS["max_iters"]
_BREAKDOWN = LOBPCG_STATUS["breakdown"]
_NON_FINITE = LOBPCG_STATUS["non_finite"]
# Restarts (lost orthonormality, a failed a-posteriori test) before giving up with breakdown.
_MAX_RESTARTS = 8


def column_norms(x):
    """Euclidean norms of the columns, free of overflow and underflow (scaled by max|x|)."""
    top = jnp.max(jnp.abs(x), axis=0)
    safe = jnp.where(top > 0, top, 1.0)
    return top * jnp.linalg.norm(x / safe, axis=0)


def _normalize(x, ax=None):
    length = column_norms(x)
    inv = jnp.where(length > 0, 1.0 / jnp.where(length > 0, length, 1.0), 0.0).astype(x.dtype)
    return x * inv, (ax * inv if ax is not None else None)


def _svqb(s, a_s, reference, smallest=False):
    """S <- S V D^-1/2 over the kept eigenpairs of S^T S (dropped: zero columns, mask False);
    with `smallest`, also the smallest kept eigenvalue (1 when none is kept)."""
    eps = jnp.finfo(s.dtype).eps
    g = s.T @ s
    g = (g + g.T) / 2
    d, v = jnp.linalg.eigh(g)
    top = jnp.maximum(jnp.maximum(d[-1], 0), reference)
    keep = d > SVQB_DROP * eps * top
    scale = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, d, 1.0)), 0.0).astype(s.dtype)
    rot = v * scale
    out = s @ rot, (a_s @ rot if a_s is not None else None), keep
    if smallest:
        return out + (jnp.min(jnp.where(keep, d, jnp.inf)).clip(max=1.0),)
    return out


def _svqb2(s, a_s, reference):
    s, a_s, _ = _svqb(s, a_s, reference)
    return _svqb(s, a_s, reference)


def _project(q, a_q, s, a_s):
    """Two block Gram-Schmidt passes of s against the orthonormal q (the same on a_s)."""
    for _ in range(2):
        c = q.T @ s
        s = s - q @ c
        if a_s is not None:
            a_s = a_s - a_q @ c
    return s, a_s


def _rayleigh_ritz(s, a_s, keep, b, big):
    t = s.T @ a_s
    t = (t + t.T) / 2
    t = t - jnp.diag(jnp.where(keep, 0.0, big)).astype(t.dtype)
    w, c = jnp.linalg.eigh(t)
    w, c = w[::-1][:b], c[:, ::-1][:, :b]
    return w, s @ c, a_s @ c, c


def effective_tol(tol: float, n: int, dtype) -> float:
    """The tolerance applied: ``tol`` (default 10 sqrt(eps)) raised to ``TOL_FLOOR n eps``."""
    eps = float(jnp.finfo(dtype).eps)
    return max(tol if tol > 0 else 10 * eps ** 0.5, TOL_FLOOR * n * eps)


def lobpcg_matvec(matvec: Callable, x0, k: int, tol: float, max_iters: int, guard: int):
    """Largest k eigenpairs of the operator `matvec` ((n, c) -> (n, c)) from x0 (n, m).

    Returns ``(eigvals, eigvecs, residuals, iterations, status)``; every output is finite, and
    zero for ``non_finite``."""
    n, m = x0.shape
    dtype = x0.dtype
    eps = float(jnp.finfo(dtype).eps)
    tol = effective_tol(tol, n, dtype)
    b = max(k, min(k + guard, n // 3))
    wanted = jnp.arange(b) < k
    fill = jax.random.normal(jax.random.key(0x9E37), (n, b), dtype)

    def product(y, scale, anorm, raw=None):
        """scale * A y (A y given as `raw` when already computed), its finiteness, and
        ||A||_est grown by ||A y_j|| / ||y_j||."""
        ay = (matvec(y) if raw is None else raw) * scale
        finite = jnp.all(jnp.isfinite(ay))
        ly = column_norms(y)
        ratio = jnp.max(jnp.where(ly > 0, column_norms(ay) / jnp.where(ly > 0, ly, 1.0), 0.0))
        return jnp.where(finite, ay, 0.0), finite, jnp.maximum(anorm, jnp.where(finite, ratio, 0.0))

    def residuals(x, ax, theta, anorm):
        r = column_norms(ax - x * theta)
        return r / jnp.where(anorm > 0, anorm, 1.0)

    def orthonormal_block(s):
        """Unit columns, SVQB twice; dropped columns replaced by fixed pseudo-random ones and the
        block SVQB'd again (the kernel's fill). Returns the block and its kept mask."""
        s, _ = _normalize(s)
        s, _, keep = _svqb2(s, None, 1.0)
        c = s.shape[1]
        s = jnp.where(keep, s, _normalize(fill[:, :c] if c <= b else jnp.tile(fill, (1, -(-c // b)))[:, :c])[0])
        s, _, keep = _svqb2(s, None, 1.0)
        return s, keep

    def start(s, scale, anorm, first=None):
        """Rayleigh-Ritz on the orthonormalised s; `first`: (block, keep, A block) already known."""
        if first is None:
            s, keep = orthonormal_block(s)
            ax, finite, anorm = product(s, scale, anorm)
        else:
            s, keep, raw = first
            ax, finite, anorm = product(s, scale, anorm, raw)
        big = anorm * 1e3 + 1.0
        theta, x, ax, _ = _rayleigh_ritz(s, ax, keep, b, big)
        return x, ax, theta, residuals(x, ax, theta, anorm), anorm, finite

    x0_finite = jnp.all(jnp.isfinite(x0))
    x0 = jnp.where(x0_finite, x0, 1.0)
    # Start: x0's columns (up to 3b; padded with fixed pseudo-random ones up to b).
    s0 = x0[:, : min(m, 3 * b)]
    if s0.shape[1] < b:
        s0 = jnp.concatenate([s0, fill[:, : b - s0.shape[1]]], axis=1)
    # The power-of-two scale of the operator, from its first product.
    q0, keep0 = orthonormal_block(s0)
    raw = matvec(q0)
    top = jnp.max(jnp.where(jnp.isfinite(raw), column_norms(raw), 0.0))
    _, exponent = jnp.frexp(jnp.where(top > 0, top, 1.0))
    scale = jnp.ldexp(jnp.ones((), dtype), -exponent).astype(dtype)
    x, ax, theta, res, anorm, finite = start(s0, scale, jnp.zeros((), dtype), first=(q0, keep0, raw))
    zeros = jnp.zeros((n, b), dtype)
    state = dict(x=x, ax=ax, p=zeros, ap=zeros, theta=theta, res=res, anorm=anorm,
                 it=jnp.int32(0), explicit=jnp.int32(0), restarts=jnp.int32(0), ap_err=jnp.zeros((), dtype),
                 status=jnp.where(finite & x0_finite, _MAX_ITERS, _NON_FINITE).astype(jnp.int32))

    def honest(x, ax, theta, anorm):
        unit = jnp.where(anorm > 0, anorm, 1.0)
        ortho = jnp.max(jnp.abs(x.T @ x - jnp.eye(b, dtype=dtype))) <= tol
        rq = jnp.sum(x * ax, axis=0)
        return ortho & jnp.all(jnp.abs(rq - theta) <= tol * unit)

    def converged(res):
        return jnp.all(jnp.where(wanted, res <= tol, True))

    def restart(st, x_from):
        x, ax, theta, res, anorm, finite = start(x_from, scale, st["anorm"])
        restarts = st["restarts"] + 1
        status = jnp.where(~finite, _NON_FINITE, jnp.where(restarts > _MAX_RESTARTS, _BREAKDOWN, _MAX_ITERS))
        return dict(st, x=x, ax=ax, p=zeros, ap=zeros, theta=theta, res=res, anorm=anorm,
                    explicit=jnp.int32(0), ap_err=jnp.zeros((), dtype), restarts=restarts, status=status.astype(jnp.int32))

    def confirm(st):
        """Explicit A X and the a-posteriori test; converged, or a restart from X."""
        ax, finite, anorm = product(st["x"], scale, st["anorm"])
        res = residuals(st["x"], ax, st["theta"], anorm)
        ok = finite & converged(res) & honest(st["x"], ax, st["theta"], anorm)
        st = dict(st, ax=ax, res=res, anorm=anorm, explicit=jnp.int32(0),
                  status=jnp.where(finite, jnp.where(ok, _CONVERGED, _MAX_ITERS), _NON_FINITE).astype(jnp.int32))
        need = finite & converged(res) & ~ok
        return lax.cond(need, lambda: restart(st, st["x"]), lambda: st)

    def step(st):
        x, ax, p, ap, theta, res, anorm = (st[f] for f in ("x", "ax", "p", "ap", "theta", "res", "anorm"))
        active = (~wanted) | (res > tol)
        w, _ = _normalize(jnp.where(active, ax - x * theta, 0.0))
        w, _ = _project(x, None, w, None)
        w, _, wkeep = _svqb2(w, None, 1.0)
        aw, fin_w, anorm = product(w, scale, anorm)
        q = jnp.concatenate([x, w], axis=1)
        a_q = jnp.concatenate([ax, aw], axis=1)
        p, ap = _normalize(p, ap)
        p, ap = _project(q, a_q, p, ap)
        p, ap, pkeep, smallest = _svqb(p, ap, 1.0, smallest=True)
        # AP is implicit: its error relative to P is divided by the length P kept in the
        # projection and compounds; once it could move the Rayleigh-Ritz matrix by a tenth of
        # tol, AP is recomputed explicitly (as in the kernel).
        any_p = jnp.any(pkeep)
        ap_err = jnp.where(any_p, (st["ap_err"] + eps) / jnp.sqrt(smallest), 0.0)
        p, ap, pkeep = _svqb(p, ap, 1.0)
        explicit_ap = any_p & (ap_err > 0.1 * tol)
        ap_x, fin_p, anorm = lax.cond(explicit_ap, lambda: product(p, scale, anorm),
                                      lambda: (ap, jnp.bool_(True), anorm))
        ap = ap_x
        ap_err = jnp.where(explicit_ap, eps, ap_err)
        s = jnp.concatenate([q, p], axis=1)
        a_s = jnp.concatenate([a_q, ap], axis=1)
        keep = jnp.concatenate([jnp.ones(b, bool), wkeep, pkeep])
        theta_n, x_n, ax_n, c = _rayleigh_ritz(s, a_s, keep, b, anorm * 1e3 + 1.0)
        p_n = s[:, b:] @ c[b:]
        ap_n = a_s[:, b:] @ c[b:]
        it = st["it"] + 1
        explicit = st["explicit"] + 1
        res_n = residuals(x_n, ax_n, theta_n, anorm)
        # AX drifts through the implicit updates: recomputed as in the kernel every 10 iterations
        # once an active residual is below sqrt(eps), and every 100 regardless.
        still = (~wanted) | (res_n > tol)
        near_floor = jnp.min(jnp.where(still, res_n, jnp.inf)) < eps ** 0.5
        refresh = (explicit >= 100) | ((explicit >= 10) & near_floor)
        ax_r, fin_r, anorm_r = lax.cond(refresh, lambda: product(x_n, scale, anorm),
                                        lambda: (ax_n, jnp.bool_(True), anorm))
        res_n = jnp.where(refresh, residuals(x_n, ax_r, theta_n, anorm_r), res_n)
        finite = fin_w & fin_p & fin_r & jnp.all(jnp.isfinite(x_n))
        new = dict(st, x=x_n, ax=ax_r, p=p_n, ap=ap_n, theta=theta_n, res=res_n, anorm=anorm_r, it=it, ap_err=ap_err,
                   explicit=jnp.where(refresh, 0, explicit).astype(jnp.int32),
                   status=jnp.where(finite, _MAX_ITERS, _NON_FINITE).astype(jnp.int32))
        # Ritz vectors of an orthonormal basis have unit length: one that lost it (beyond
        # sqrt(eps)) shows S was not orthonormal; go back to the previous X and drop P.
        unit = jnp.all(jnp.abs(column_norms(x_n) - 1) <= eps ** 0.5)
        return lax.cond(finite & ~unit, lambda: restart(dict(new, x=x), x), lambda: new)

    def cond(st):
        return (st["status"] == _MAX_ITERS) & ((st["it"] < max_iters) | converged(st["res"]))

    def body(st):
        return lax.cond(converged(st["res"]), confirm, step, st)

    st = lax.while_loop(cond, body, state)
    status = st["status"]
    ok = status != _NON_FINITE
    theta = jnp.where(ok, st["theta"][:k] / scale, 0.0)
    x = jnp.where(ok, st["x"][:, :k], 0.0)
    res = jnp.where(ok, st["res"][:k], 0.0)
    return theta.astype(dtype), x, res.astype(dtype), st["it"], status
