"""Inverse p-th roots in plain JAX (the contract of ``linalg_core_inverse_root``; see
:func:`linalg_core.inverse_root` for the math). ``auto`` takes eigh up to n = 256 and the
third-order coupled iteration above, where an accelerator's GEMMs beat its eigensolver.
The chain is newton -> newton3 -> eigh -> previous root (no float64 link: accelerators may lack
it); the input checks, the power-of-two prescaling, the true-residual certificate of the
iterations and the statuses are those of cpp/roots.cc."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core.roots import _REQUEST, _RIDGES, ROOT_METHODS, ROOT_STATUS

_AUTO = _REQUEST["auto"]
_EIGH, _NEWTON, _NEWTON3, _PREVIOUS = (ROOT_METHODS[k] for k in ("eigh", "newton", "newton3", "previous"))
AUTO_EIGH_MAX_N = 256
# Outcomes of one method of the chain (cpp/roots.cc Solver::Outcome).
_DONE, _FAIL, _ILL, _INDEFINITE = 0, 1, 2, 3


def _finite(x):
    return jnp.all(jnp.isfinite(x), axis=(-2, -1))


def _pow2(x, k):
    """x * 2^k for integer arrays k (broadcast over x's trailing axes), in two exact halves so
    that no intermediate power of two overflows the dtype."""
    half = k // 2
    one = jnp.ones((), x.dtype)
    return x * jnp.ldexp(one, half) * jnp.ldexp(one, k - half)


def _batch(v, like):
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def _ridge(lmax, eps, eps_relative, pinv, k):
    """The ridge of the prescaled 2^k A (none in pseudo-inverse mode)."""
    if pinv > 0:
        return jnp.zeros_like(lmax)
    return eps * lmax if eps_relative else _pow2(jnp.full_like(lmax, eps), k)


def _eigh_root(a, p, eps, eps_relative, pinv, k, resolved, indefinite):
    """Root, lambda_max, ridge and the outcome per matrix (_DONE, _FAIL, _ILL, _INDEFINITE)."""
    w, v = jnp.linalg.eigh(a)
    lmax = jnp.maximum(w[..., -1], 0.0)
    ridge = _ridge(lmax, eps, eps_relative, pinv, k)
    lam = jnp.maximum(w, 0.0)
    if pinv > 0:
        keep = (lam > pinv * lmax[..., None]) & (lam > 0)
        f = jnp.where(keep, jnp.where(keep, lam, 1.0) ** (-1.0 / p), 0.0)
        lowest = jnp.min(jnp.where(keep, lam, jnp.inf), axis=-1)
        top = lmax
        is_resolved = ~jnp.any(keep, axis=-1) | (lowest > resolved * top)
    else:
        shifted = lam + ridge[..., None]
        f = jnp.where(shifted > 0, jnp.where(shifted > 0, shifted, 1.0) ** (-1.0 / p), 0.0)
        is_resolved = jnp.min(shifted, axis=-1) > resolved * (lmax + ridge)
    root = (v * f[..., None, :]) @ jnp.swapaxes(v, -1, -2)
    root = 0.5 * (root + jnp.swapaxes(root, -1, -2))
    finite = _finite(root) & jnp.all(jnp.isfinite(f), axis=-1)
    outcome = jnp.where(w[..., 0] < -indefinite * lmax, _INDEFINITE,
                        jnp.where(~finite, _FAIL, jnp.where(is_resolved, _DONE, _ILL)))
    return root, lmax, ridge, outcome


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


def _certify(a, ridge, x, p):
    """True residual ||X^p (A + ridge I) - I||_inf (max row sum) and mu, the power-step estimate
    of lambda_max(X^p) ~ 1 / lambda_min(A + ridge I)."""
    n = a.shape[-1]
    eye = jnp.eye(n, dtype=a.dtype)
    pw = jnp.linalg.matrix_power(x, int(p))
    r = pw @ (a + _batch(ridge, a) * eye) - eye
    residual = jnp.max(jnp.sum(jnp.abs(r), axis=-1), axis=-1)
    return jnp.where(jnp.isfinite(residual), residual, jnp.inf), _lambda_max(pw)


def _iterate(a, p, lmax, ridge, third_order, max_iters, tol):
    """Coupled iteration from the scaled start, per matrix of the batch; stops on tol, on
    Frobenius stagnation (keeping the better iterate) or at max_iters."""
    n = a.shape[-1]
    eye = jnp.eye(n, dtype=a.dtype)
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
    return x, jnp.full(inf.shape, k, jnp.int32)


def inverse_root(a, previous, *, p, eps, ridge, pinv_threshold, method, max_iters, tol, accept,
                 accumulate_float64, true_residual, has_previous):
    """The handler's contract: operands ``a`` and ``previous`` (``a`` itself when
    ``has_previous`` is 0) and every option of ``LC_ROOT_OPTIONS`` (cpp/roots.h) as a keyword,
    the dict :func:`linalg_core.roots._attrs` builds. ``accumulate_float64`` is accepted and
    ignored: float64 may be absent on accelerators, so eigh runs in the input dtype."""
    del accumulate_float64
    eps_relative = ridge == _RIDGES["relative"]
    n = a.shape[-1]
    batch = a.shape[:-2]
    eps_dt = float(np.finfo(np.dtype(a.dtype)).eps)
    tol = tol if tol > 0 else n * eps_dt
    resolved, indefinite = n * eps_dt, 16.0 * n * eps_dt  # as in cpp/roots.cc Solver()
    integer_p = float(p).is_integer() and 1 <= p <= 64
    step = int(p) if integer_p else 1

    def accept_for(kappa):
        if accept > 0:
            return jnp.full_like(kappa, accept)
        floor = max(eps_dt ** 0.5, 64 * n * eps_dt)
        return jnp.minimum(0.5, jnp.maximum(floor, 4.0 * n * eps_dt * kappa))

    # Input contract: finite a and prev, a symmetric to 8 n eps max|a|.
    finite_a = _finite(a)
    finite_prev = _finite(previous) if has_previous else jnp.ones(batch, bool)
    usable = finite_a & finite_prev
    safe = jnp.where(usable[..., None, None], a, 0.0)
    max_abs = jnp.max(jnp.abs(safe), axis=(-2, -1))
    symmetric = jnp.max(jnp.abs(safe - jnp.swapaxes(safe, -1, -2)), axis=(-2, -1)) <= 8 * n * eps_dt * max_abs
    # Power-of-two prescaling (k a multiple of p for integer p).
    top = max_abs if (eps_relative or pinv_threshold > 0) else jnp.maximum(max_abs, eps)
    k = jnp.where(top > 0, step * jnp.round(-jnp.log2(jnp.where(top > 0, top, 1.0)) / step), 0.0)
    k = k.astype(jnp.int32)
    scaled = _pow2(safe, k[..., None, None])

    if method == _AUTO:
        requested = _EIGH if n <= AUTO_EIGH_MAX_N or pinv_threshold > 0 else _NEWTON3
    else:
        requested = method
    order = [_NEWTON, _NEWTON3, _EIGH]
    chain = order[order.index(requested):]

    zeros_b = jnp.zeros(batch, a.dtype)
    minus_one = jnp.full(batch, -1.0, a.dtype)
    iter_lmax = _lambda_max(scaled) if chain[0] != _EIGH else zeros_b
    iter_ridge = _ridge(iter_lmax, eps, eps_relative, pinv_threshold, k)

    def run(m):
        """One method for every matrix: root, residual, lmax, ridge, iterations, outcome."""
        if m == _EIGH:
            root, lmax, ridge, outcome = _eigh_root(scaled, p, eps, eps_relative, pinv_threshold, k,
                                                    resolved, indefinite)
            residual = minus_one
            if true_residual and float(p).is_integer():
                residual = jnp.where(outcome == _FAIL, minus_one, _certify(scaled, ridge, root, p)[0])
            return root, residual, lmax, ridge, jnp.zeros(batch, jnp.int32), outcome
        x, iters = _iterate(scaled, p, iter_lmax, iter_ridge, m == _NEWTON3, max_iters, tol)
        residual, mu = _certify(scaled, iter_ridge, x, p)
        kappa = (iter_lmax + iter_ridge) * mu
        good = _finite(x) & (residual <= accept_for(kappa))
        negative = (mu > 0) & (1.0 / jnp.where(mu > 0, mu, 1.0) - iter_ridge < -indefinite * iter_lmax)
        # An unresolved condition is the matrix's property: the iterate is kept, flagged (roots.cc).
        done = jnp.where(resolved * kappa < 1.0, _DONE, _ILL)
        outcome = jnp.where(good, jnp.where(negative, _INDEFINITE, done), _FAIL)
        return x, residual, iter_lmax, iter_ridge, iters, outcome

    def skipped():
        return (jnp.zeros_like(a), minus_one, zeros_b, zeros_b, jnp.zeros(batch, jnp.int32),
                jnp.full(batch, _FAIL))

    root, residual, lmax, ridge = jnp.zeros_like(a), minus_one, zeros_b, zeros_b
    iters = jnp.zeros(batch, jnp.int32)
    used = jnp.full(batch, requested)
    outcome = jnp.full(batch, _FAIL)
    stage = jnp.zeros(batch, jnp.int32)  # index in the chain of the method that decided
    for i, m in enumerate(chain):
        pending = outcome == _FAIL
        # A later method only when some matrix is still pending (under vmap both branches run).
        out = run(m) if i == 0 else jax.lax.cond(jnp.any(pending), lambda m=m: run(m), skipped)
        take = pending
        sel = take[..., None, None]
        root = jnp.where(sel, out[0], root)
        residual = jnp.where(take, out[1], residual)
        lmax = jnp.where(take, out[2], lmax)
        ridge = jnp.where(take, out[3], ridge)
        iters = iters + jnp.where(take, out[4], 0)
        used = jnp.where(take, m, used)
        stage = jnp.where(take, i, stage)
        outcome = jnp.where(take, out[5], outcome)

    # Undo the prescaling: X(A) = 2^(k/p) X(2^k A), exact when p divides k.
    if integer_p:
        root = _pow2(root, (k // step)[..., None, None])
    else:
        root = root * jnp.exp2(k.astype(a.dtype) / p)[..., None, None]
    lmax, ridge = _pow2(lmax, -k), _pow2(ridge, -k)
    produced = (outcome == _DONE) | (outcome == _ILL)
    overflowed = produced & ~_finite(root)
    outcome = jnp.where(overflowed, _FAIL, outcome)
    produced = produced & ~overflowed

    status = jnp.where(outcome == _ILL, ROOT_STATUS["ill_conditioned"],
                       jnp.where(outcome == _INDEFINITE, ROOT_STATUS["indefinite"],
                                 jnp.where(outcome == _FAIL, ROOT_STATUS["failed"],
                                           jnp.where(stage == 0, ROOT_STATUS["ok"], ROOT_STATUS["fell_back"]))))
    status = jnp.where(symmetric, status, ROOT_STATUS["not_symmetric"])
    status = jnp.where(usable, status, ROOT_STATUS["non_finite_input"])
    give_up = ~(usable & symmetric & produced)
    prev_ok = finite_prev if has_previous else jnp.zeros(batch, bool)
    fallback = jnp.where(prev_ok[..., None, None], previous if has_previous else 0.0, 0.0)
    root = jnp.where(give_up[..., None, None], fallback, root)
    used = jnp.where(give_up, jnp.where(prev_ok, _PREVIOUS, requested), used)
    checked = usable & symmetric
    return (root, jnp.where(give_up, minus_one, residual), jnp.where(checked, lmax, zeros_b),
            jnp.where(checked, ridge, zeros_b), jnp.where(checked, iters, 0), used.astype(jnp.int32),
            status.astype(jnp.int32))
