"""LOBPCG for a JAX matvec function, in JAX (the operator cannot cross the FFI boundary).

The same algorithm as cpp/lobpcg.cc, in static shapes for `lax.while_loop`: converged wanted
columns of W are zeroed instead of removed (soft locking), and SVQB marks directions it drops
instead of removing them; dropped directions are pushed below every Ritz value of the
Rayleigh-Ritz matrix so they never rank among the top pairs. One matvec of the block per
iteration; A X recomputed before convergence is declared and every 10 iterations once the
residuals approach sqrt(eps).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax


def _svqb(s, a_s, drop):
    """S <- S V D^-1/2 over the kept eigenpairs of S^T S (dropped: zero columns, mask False)."""
    g = s.T @ s
    g = (g + g.T) / 2
    d, v = jnp.linalg.eigh(g)
    keep = d > drop * jnp.maximum(d[-1], 0)
    scale = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, d, 1.0)), 0.0).astype(s.dtype)
    rot = v * scale
    return s @ rot, (a_s @ rot if a_s is not None else None), keep


def _svqb2(s, a_s, drop):
    s, a_s, keep1 = _svqb(s, a_s, drop)
    s, a_s, keep2 = _svqb(s, a_s, drop)
    return s, a_s, keep2 & jnp.any(keep1)


def _rayleigh_ritz(s, a_s, keep, b, big):
    t = s.T @ a_s
    t = (t + t.T) / 2
    t = t - jnp.diag(jnp.where(keep, 0.0, big)).astype(t.dtype)
    w, c = jnp.linalg.eigh(t)
    w, c = w[::-1][:b], c[:, ::-1][:, :b]
    return w, s @ c, a_s @ c


def lobpcg_matvec(matvec: Callable, x0, k: int, tol: float, max_iters: int, guard: int):
    """Largest k eigenpairs of the operator `matvec` ((n, c) -> (n, c)) from x0 (n, m)."""
    n, m = x0.shape
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    tol = jnp.asarray(tol if tol > 0 else 10 * float(eps) ** 0.5, jnp.float32 if dtype == jnp.float32 else jnp.float64)
    b = max(k, min(k + guard, n // 3))
    drop = eps ** (2.0 / 3.0)

    # Start: x0's columns (padded with fixed pseudo-random ones up to b), orthonormalised.
    if m < b:
        fill = jax.random.normal(jax.random.key(0x9E37), (n, b - m), dtype)
        x0 = jnp.concatenate([x0, fill], axis=1)
    x, _, keep = _svqb2(x0[:, : max(m, b)], None, drop)
    ax = matvec(x)
    big0 = jnp.abs(x.T @ ax).max() * 1e3 + 1.0
    theta, x, ax = _rayleigh_ritz(x, ax, keep, b, big0)

    def residuals(x, ax, theta, anorm):
        anorm = jnp.maximum(anorm, jnp.abs(theta).max())
        r = jnp.linalg.norm(ax - x * theta, axis=0)
        return r / jnp.where(anorm > 0, anorm, 1.0), anorm

    res, anorm = residuals(x, ax, theta, 0.0)
    zeros = jnp.zeros_like(x)
    state = dict(x=x, ax=ax, p=zeros, ap=zeros, theta=theta, res=res, anorm=anorm,
                 it=jnp.int32(0), fresh=jnp.bool_(True), done=jnp.all(res[:k] <= tol))

    def cond(st):
        return (~st["done"]) & (st["it"] < max_iters)

    def body(st):
        x, ax, p, ap, theta, res = st["x"], st["ax"], st["p"], st["ap"], st["theta"], st["res"]
        wanted = jnp.arange(b) < k
        active = (~wanted) | (res > tol)
        w = jnp.where(active, ax - x * theta, 0.0)
        for _ in range(2):
            w = w - x @ (x.T @ w)
        w, _, wkeep = _svqb2(w, None, drop)
        s = jnp.concatenate([x, w, p], axis=1)
        a_s = jnp.concatenate([ax, matvec(w), ap], axis=1)
        s, a_s, keep = _svqb2(s, a_s, drop)
        big = st["anorm"] * 1e3 + 1.0
        theta_n, x_n, ax_n = _rayleigh_ritz(s, a_s, keep, b, big)
        z = x.T @ x_n
        p_n = x_n - x @ z
        ap_n = ax_n - ax @ z
        it = st["it"] + 1
        res_n, anorm = residuals(x_n, ax_n, theta_n, st["anorm"])
        implicit_done = jnp.all(res_n[:k] <= tol)
        # Explicit A X as in the kernel: to confirm convergence, every 10 iterations once an active
        # residual is below sqrt(eps) (where the implicit update's drift could matter), every 100.
        still = (~wanted) | (res_n > tol)
        near_floor = jnp.min(jnp.where(still, res_n, jnp.inf)) < float(eps) ** 0.5
        refresh = implicit_done | (it % 100 == 0) | ((it % 10 == 0) & near_floor)
        ax_n = lax.cond(refresh, lambda: matvec(x_n), lambda: ax_n)
        res_n, anorm = lax.cond(refresh, lambda: residuals(x_n, ax_n, theta_n, anorm), lambda: (res_n, anorm))
        done = refresh & jnp.all(res_n[:k] <= tol)
        return dict(x=x_n, ax=ax_n, p=p_n, ap=ap_n, theta=theta_n, res=res_n, anorm=anorm, it=it,
                    fresh=refresh, done=done)

    st = lax.while_loop(cond, body, state)
    status = jnp.where(st["done"], 0, 1).astype(jnp.int32)
    return st["theta"][:k], st["x"][:, :k], st["res"][:k].astype(dtype), st["it"], status
