"""The polar factor in plain JAX: the contract of ``linalg_core_polar`` (cpp/polar.h; see
:func:`linalg_core.polar`). The same phases as the C++ kernel: power-of-two prescaling, the start
scaling by ``min(||G0^2||_F^(1/4), sqrt(||a||_1 ||a||_inf))`` with the same rounding allowances,
the schedule on the wide orientation, the converging cubic phase as a ``while_loop``, the band
certified by two Cholesky factorisations (NaN factors mean "not definite"), the residual bound by
normalised repeated squaring, the schedule on the Gram side for wide iterates, and the SVD
fallback under a ``cond`` (run only when some batch element needs it). Products are matmuls (XLA
has no SYRK)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core.polar import POLAR_METHODS, POLAR_STATUS


def _fro(x):
    return jnp.sqrt(jnp.sum(x * x, axis=(-2, -1)))


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _squarings(k: int) -> int:
    """cpp/polar.cc squarings_for: the j with k^(2^-(j+1)) <= 1.1."""
    j = 0
    while math.log(k) / 2.0 ** (j + 1) > math.log(1.1):
        j += 1
    return j


def _spectral_bound(e, threshold):
    """cpp/polar.cc spectral_bound: ||E||_F where it decides ``threshold``, else the smaller of
    ||E||_F and ||E^(2^j)||_F^(2^-j)."""
    k = e.shape[-1]
    f = _fro(e)
    if k == 1:
        return f
    usable = (f > 0) & jnp.isfinite(f)
    safe = jnp.where(usable, f, 1.0)
    cur = e / safe[..., None, None]
    log_bound = jnp.log(safe)
    for i in range(1, _squarings(k) + 1):
        nxt = cur @ cur
        fi = _fro(nxt)
        fi = jnp.where((fi > 0) & jnp.isfinite(fi), fi, 1.0)
        cur = nxt / fi[..., None, None]
        log_bound = log_bound + jnp.log(fi) * 2.0 ** -i
    decided = (f <= threshold) | (f / math.sqrt(k) > threshold) | ~usable
    return jnp.where(decided, f, jnp.minimum(f, jnp.exp(log_bound)))


def _symmetric(x):
    return 0.5 * (x + _t(x))


def _definite(m):
    """Cholesky succeeds (XLA returns NaN factors otherwise)."""
    return jnp.all(jnp.isfinite(jnp.linalg.cholesky(m)), axis=(-2, -1))


def _bounds(r):
    return jnp.sqrt(jnp.maximum(1.0 - r, 0.0)), jnp.sqrt(1.0 + r)


def polar(a, *, schedule, svd, converge, tol, max_iters, fallback, band_lower, band_upper):
    dt = a.dtype
    m, n = a.shape[-2:]
    k, big_k = min(m, n), max(m, n)
    tall = m > n
    eps = float(np.finfo(dt).eps)
    delta = 4.0 * (math.sqrt(big_k) + math.sqrt(k)) * eps
    r_tol = 1.0 - (1.0 - float(tol)) ** 2
    threshold = max(r_tol - delta, 0.0)
    table = np.asarray(schedule, dtype=np.float64).reshape(-1, 3)
    eye = jnp.eye(k, dtype=dt)

    x_in = _t(a) if tall else a  # the wide orientation, k x K
    finite = jnp.all(jnp.isfinite(x_in), axis=(-2, -1))
    x_in = jnp.where(finite[..., None, None], x_in, 0)
    amax = jnp.max(jnp.abs(x_in), axis=(-2, -1))
    zero = amax == 0
    e = jnp.frexp(jnp.where(zero, 1.0, amax).astype(dt))[1]
    scaled = jnp.ldexp(x_in, -e[..., None, None])

    def gram(x):
        return x @ _t(x)

    def residual_bound(g):
        return _spectral_bound(g - eye, threshold) + delta

    def svd_polar(xs):
        u, s, vt = jnp.linalg.svd(xs, full_matrices=False)
        q = u @ vt
        ok = jnp.all(jnp.isfinite(q), axis=(-2, -1))
        q = jnp.where(ok[..., None, None], q, 0)
        return q, residual_bound(gram(q)), s[..., 0], ok

    batch = scaled.shape[:-2]
    ns, sv = POLAR_METHODS["newton_schulz"], POLAR_METHODS["svd"]
    if svd:
        q, r, s0, ok = svd_polar(scaled)
        lower, upper = _bounds(r)
        status = jnp.where(ok, jnp.where(r <= r_tol, POLAR_STATUS["ok"], POLAR_STATUS["not_converged"]),
                           POLAR_STATUS["failed"])
        method = jnp.full(batch, sv, jnp.int32)
        iterations = jnp.zeros(batch, jnp.int32)
        norm = jnp.ldexp(s0, e)
    else:
        rows = jnp.sum(jnp.abs(scaled), axis=-1).max(axis=-1)
        cols = jnp.sum(jnp.abs(scaled), axis=-2).max(axis=-1)
        cheap = jnp.sqrt(rows * cols) * (1.0 + 4.0 * big_k * eps)
        g = gram(scaled)
        g2 = g @ g
        root4 = jnp.sqrt(jnp.sqrt(_fro(g2))) * (1.0 + 4.0 * math.sqrt(k) * (k + big_k) * eps)
        bound = jnp.minimum(cheap, root4)
        inv = 1.0 / jnp.where(bound > 0, bound, 1.0)
        x = scaled * inv[..., None, None]
        g = g * (inv * inv)[..., None, None]
        g2 = g2 * ((inv * inv) * (inv * inv))[..., None, None]
        if table.shape[0] >= 2 and big_k >= 2 * k:
            # cpp/polar.cc schedule_on_gram: G_(t+1) = P_t G_t P_t, X_T = (P_(T-1) ... P_0) X_0.
            prod = None
            for t, (ca, cb, cc) in enumerate(table):
                if t > 0:
                    g2 = g @ g
                p = ca * eye + cb * g + cc * g2
                prod = p if prod is None else _symmetric(p @ prod)
                if t + 1 < table.shape[0]:
                    g = _symmetric((p @ g) @ p)
            x = prod @ x
        else:
            for t, (ca, cb, cc) in enumerate(table):
                if t > 0:
                    g = gram(x)
                    g2 = g @ g
                x = ca * x + (cb * g + cc * g2) @ x
        iterations = jnp.full(batch, table.shape[0], jnp.int32)
        ns_finite = jnp.all(jnp.isfinite(x), axis=(-2, -1))
        x = jnp.where(ns_finite[..., None, None], x, 0)
        if converge:
            def cond(state):
                return ~jnp.all(state[4])

            def body(state):
                x, it, r, passed, done = state
                g = gram(x)
                r_new = residual_bound(g).astype(dt)
                ok = r_new <= r_tol
                region = (r_new < 2.0) | _definite(2.9 * eye - g)
                stalled = (it > 0) & (r_new < 0.1) & (r_new > 0.5 * r)  # cpp/polar.cc: the rounding floor
                stop = ok | (it >= max_iters) | stalled | ~region
                active = ~done
                step = active & ~stop
                x_next = 1.5 * x - 0.5 * (g @ x)
                x = jnp.where(step[..., None, None], x_next, x)
                r = jnp.where(active, r_new, r)
                passed = jnp.where(active, ok, passed)
                return x, it + step.astype(jnp.int32), r, passed, done | stop

            init = (x, jnp.zeros(batch, jnp.int32), jnp.zeros(batch, dt), jnp.zeros(batch, bool), ~ns_finite)
            x, extra, r, passed, _ = jax.lax.while_loop(cond, body, init)
            iterations = iterations + extra
            lower, upper = _bounds(r)
        else:
            g = gram(x)
            lo2, hi2 = float(band_lower) ** 2, float(band_upper) ** 2
            passed = _definite(g - lo2 * eye) & _definite(hi2 * eye - g)
            lower, upper = _bounds(_fro(g - eye) + delta)
            lower = jnp.where(passed, jnp.maximum(lower, band_lower), lower)
            upper = jnp.where(passed, jnp.minimum(upper, band_upper), upper)
        passed = passed & ns_finite
        status = jnp.where(passed, POLAR_STATUS["ok"],
                           jnp.where(ns_finite, POLAR_STATUS["not_converged"], POLAR_STATUS["failed"]))
        method = jnp.full(batch, ns, jnp.int32)
        norm = jnp.ldexp(bound, e)
        q = x
        if fallback:
            need = ~passed & finite & ~zero

            def run_svd(xs):
                return svd_polar(xs)

            def skip(xs):
                return (jnp.zeros_like(xs), jnp.zeros(batch, dt), jnp.zeros(batch, dt), jnp.zeros(batch, bool))

            q_s, r_s, s0, ok_s = jax.lax.cond(jnp.any(need), run_svd, skip, scaled)
            lower_s, upper_s = _bounds(r_s)
            q = jnp.where(need[..., None, None], q_s, q)
            lower = jnp.where(need, lower_s, lower)
            upper = jnp.where(need, upper_s, upper)
            norm = jnp.where(need, jnp.ldexp(s0, e), norm)
            method = jnp.where(need, sv, method)
            status = jnp.where(need, jnp.where(ok_s, POLAR_STATUS["fell_back"], POLAR_STATUS["failed"]), status)
    status = jnp.where(zero, POLAR_STATUS["zero_input"], status)
    status = jnp.where(finite, status, POLAR_STATUS["non_finite_input"]).astype(jnp.int32)
    no_answer = (status == POLAR_STATUS["zero_input"]) | (status == POLAR_STATUS["non_finite_input"]) | (
        status == POLAR_STATUS["failed"])
    q = jnp.where(no_answer[..., None, None], 0, q)
    lower = jnp.where(no_answer, 0, lower)
    upper = jnp.where(no_answer, 0, jnp.minimum(upper, np.finfo(dt).max))
    residual = jnp.maximum(1.0 - lower, upper - 1.0)
    norm = jnp.where(zero | ~finite, 0, jnp.minimum(norm, np.finfo(dt).max))
    iterations = jnp.where(zero | ~finite, 0, iterations)
    method = jnp.where(zero | ~finite, POLAR_METHODS["svd"] if svd else ns, method)
    if tall:
        q = _t(q)
    return (q.astype(dt), residual.astype(dt), lower.astype(dt), upper.astype(dt), norm.astype(dt),
            iterations.astype(jnp.int32), method.astype(jnp.int32), status)
