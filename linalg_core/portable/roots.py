"""Inverse p-th roots in plain JAX (the contract of ``linalg_core_inverse_root``; see
:func:`linalg_core.inverse_root` for the math). ``auto`` takes eigh up to n = 256 and the
third-order coupled iteration above, where an accelerator's GEMMs beat its eigensolver.
The chain is iteration -> eigh -> previous root (no float64 link: accelerators may lack it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Codes shared with cpp/roots.h (ROOT_METHODS, ROOT_STATUS in linalg_core/roots.py).
_AUTO, _EIGH, _NEWTON, _NEWTON3, _PREVIOUS = -1, 0, 1, 2, 4
_OK, _NON_FINITE, _FELL_BACK, _FAILED = 0, 1, 2, 3
AUTO_EIGH_MAX_N = 256


def _finite(x):
    return jnp.all(jnp.isfinite(x), axis=(-2, -1))


def _ridge(lmax, eps, eps_relative, pinv):
    if pinv > 0:
        return jnp.zeros_like(lmax)
    return eps * lmax if eps_relative else jnp.full_like(lmax, eps)


def _eigh_root(a, p, eps, eps_relative, pinv):
    w, v = jnp.linalg.eigh(a)
    lmax = jnp.maximum(w[..., -1], 0.0)
    ridge = _ridge(lmax, eps, eps_relative, pinv)
    lam = jnp.maximum(w, 0.0)
    if pinv > 0:
        keep = (lam > pinv * lmax[..., None]) & (lam > 0)
        f = jnp.where(keep, jnp.where(keep, lam, 1.0) ** (-1.0 / p), 0.0)
    else:
        shifted = lam + ridge[..., None]
        f = jnp.where(shifted > 0, jnp.where(shifted > 0, shifted, 1.0) ** (-1.0 / p), 0.0)
    root = (v * f[..., None, :]) @ jnp.swapaxes(v, -1, -2)
    return root, lmax, ridge, _finite(root)


def _lambda_max(a):
    """Power steps from A 1 (relative change 1e-3, at most 50): a Rayleigh quotient <= lambda_max."""
    v0 = jnp.ones(a.shape[:-1], a.dtype)

    def body(state):
        k, v, est, _ = state
        av = jnp.einsum("...ij,...j->...i", a, v)
        rayleigh = jnp.sum(v * av, -1) / jnp.sum(v * v, -1)
        norm = jnp.linalg.norm(av, axis=-1, keepdims=True)
        v = av / jnp.where(norm > 0, norm, 1.0)
        settled = (k > 0) & jnp.all(jnp.abs(rayleigh - est) <= 1e-3 * jnp.abs(rayleigh))
        return k + 1, v, rayleigh, settled

    def cond(state):
        return (state[0] < 50) & ~state[3]

    _, _, est, _ = jax.lax.while_loop(cond, body, (0, v0, jnp.zeros(a.shape[:-2], a.dtype), False))
    return jnp.maximum(jnp.where(jnp.isfinite(est), est, 0.0), 0.0)


def _distance(m):
    e = m - jnp.eye(m.shape[-1], dtype=m.dtype)
    return jnp.max(jnp.sum(jnp.abs(e), axis=-2), axis=-1), jnp.sqrt(jnp.sum(e * e, axis=(-2, -1)))


def _iterate(a, p, eps, eps_relative, pinv, third_order, max_iters, tol, accept):
    """Coupled iteration from the scaled start, per matrix of the batch; stops on tol, on
    Frobenius stagnation (keeping the better iterate) or at max_iters."""
    n = a.shape[-1]
    eye = jnp.eye(n, dtype=a.dtype)
    lmax = _lambda_max(a)
    ridge = _ridge(lmax, eps, eps_relative, pinv)  # pinv mode: no ridge (as on the CPU)
    z = (1.0 + p) / (2.0 * (lmax + ridge))
    z = jnp.where(jnp.isfinite(z) & (z > 0), z, 1.0)
    x = z[..., None, None] ** (1.0 / p) * eye
    m = z[..., None, None] * (a + ridge[..., None, None] * eye)
    inf, fro = _distance(m)
    c2 = (p + 1.0) / (2.0 * p * p)

    def body(state):
        k, x, m, inf, fro, active = state
        e = eye - m
        t = eye + e / p + c2 * (e @ e) if third_order else ((p + 1.0) * eye - m) / p
        x_new = x @ t
        m_new = jnp.linalg.matrix_power(t, int(p)) @ m
        m_new = 0.5 * (m_new + jnp.swapaxes(m_new, -1, -2))
        inf_new, fro_new = _distance(m_new)
        take = active & jnp.isfinite(fro_new) & (fro_new < fro)
        sel = take[..., None, None]
        active = take & (inf_new > tol)
        return (k + 1, jnp.where(sel, x_new, x), jnp.where(sel, m_new, m), jnp.where(take, inf_new, inf),
                jnp.where(take, fro_new, fro), active)

    def cond(state):
        return (state[0] < max_iters) & jnp.any(state[5])

    k, x, m, inf, fro, _ = jax.lax.while_loop(cond, body, (0, x, m, inf, fro, inf > tol))
    x = 0.5 * (x + jnp.swapaxes(x, -1, -2))
    ok = (inf <= accept) & _finite(x)
    return x, inf, lmax, ridge, jnp.full(inf.shape, k, jnp.int32), ok


def inverse_root(a, previous, *, p, eps, eps_relative, pinv_threshold, method, max_iters, tol, accept,
                 double_accumulate, true_residual, has_previous):
    del double_accumulate  # float64 may be absent on accelerators; eigh runs in the input dtype
    n = a.shape[-1]
    batch = a.shape[:-2]
    eps_dt = float(np.finfo(np.dtype(a.dtype)).eps)
    tol = tol if tol > 0 else n * eps_dt
    accept = accept if accept > 0 else max(eps_dt ** 0.5, 64 * n * eps_dt)
    finite_in = _finite(a)
    safe = jnp.where(finite_in[..., None, None], a, 0.0)
    if method == _AUTO:
        requested = _EIGH if n <= AUTO_EIGH_MAX_N or pinv_threshold > 0 else _NEWTON3
    else:
        requested = method
    minus_one = jnp.full(batch, -1.0, a.dtype)

    def eigh_root():
        return _eigh_root(safe, p, eps, eps_relative, pinv_threshold)

    if requested in (_NEWTON, _NEWTON3):
        i_root, i_res, i_lmax, i_ridge, iters, i_ok = _iterate(
            safe, p, eps, eps_relative, pinv_threshold, requested == _NEWTON3, max_iters, tol, accept)
        # The eigh fallback only when some iteration failed (under vmap both branches run).
        skipped = (jnp.zeros_like(a), jnp.zeros(batch, a.dtype), jnp.zeros(batch, a.dtype),
                   jnp.zeros(batch, bool))
        e_root, e_lmax, e_ridge, e_ok = jax.lax.cond(jnp.all(i_ok), lambda: skipped, eigh_root)
        use_iter = i_ok[..., None, None]
        root = jnp.where(use_iter, i_root, e_root)
        residual = jnp.where(i_ok, i_res, minus_one)
        lmax = jnp.where(i_ok, i_lmax, e_lmax)
        ridge = jnp.where(i_ok, i_ridge, e_ridge)
        used = jnp.where(i_ok, requested, _EIGH)
        ok = i_ok | e_ok
        status = jnp.where(i_ok, _OK, _FELL_BACK)
    else:
        e_root, e_lmax, e_ridge, e_ok = eigh_root()
        root, residual, lmax, ridge = e_root, minus_one, e_lmax, e_ridge
        iters = jnp.zeros(batch, jnp.int32)
        used = jnp.full(batch, _EIGH)
        ok = e_ok
        status = jnp.full(batch, _OK)
    if true_residual and float(p).is_integer():
        shifted = safe + ridge[..., None, None] * jnp.eye(n, dtype=a.dtype)
        residual = jnp.where(ok, _distance(jnp.linalg.matrix_power(root, int(p)) @ shifted)[0], residual)
    fallback = previous if has_previous else jnp.zeros_like(a)
    good = finite_in & ok
    root = jnp.where(good[..., None, None], root, fallback)
    failed_method = _PREVIOUS if has_previous else requested
    used = jnp.where(good, used, failed_method)
    status = jnp.where(~finite_in, _NON_FINITE, jnp.where(ok, status, _FAILED))
    zero = jnp.zeros(batch, a.dtype)
    return (root, jnp.where(good, residual, minus_one), jnp.where(finite_in, lmax, zero),
            jnp.where(finite_in, ridge, zero), iters, used.astype(jnp.int32), status.astype(jnp.int32))
