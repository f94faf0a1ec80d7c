"""Kronecker power iteration and the cosine similarity in plain JAX (the contracts of
``linalg_core_kron_approx`` and ``linalg_core_kron_cosine``; see :func:`linalg_core.kron_approx`).
The products ``(1/N) sum_i G_i R G_i^T`` are einsums over the sample axis, which XLA lowers to
batched GEMMs. As in cpp/kron.cc: samples outside a safe range are scaled by a power of two
first, and the status is ``ok`` only for finite outputs with ``sigma`` inside the bounds every
step obeys, ``tr(H) / sqrt(m n) <= sigma <= tr(H)``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from linalg_core.kron import KRON_STATUS


def _fro(x):
    return jnp.sqrt(jnp.sum(x * x, axis=(-2, -1)))


def _unit(x, norm):
    return x / jnp.where(norm > 0, norm, 1.0)[..., None, None]


def _safe_exponent(amax, dtype):
    """cpp/kron.cc's safe_exponent: e with amax 2^-e in [1/2, 1) outside [2^-lim, 2^lim], else 0."""
    lim = np.finfo(dtype).maxexp // 8
    e = jnp.frexp(amax)[1]
    return jnp.where((amax > 0) & ((e < -lim) | (e > lim)), e, 0)


def _amax(x, axes):
    return jnp.max(jnp.abs(x), axis=axes)


def approx(samples, *, steps):
    dt = samples.dtype
    count, m, n = samples.shape[-3:]
    finite = jnp.all(jnp.isfinite(samples), axis=(-3, -2, -1))
    g = jnp.where(finite[..., None, None, None], samples, 0)
    amax = _amax(g, (-3, -2, -1))
    e = _safe_exponent(amax, dt)
    g = jnp.ldexp(g, -e[..., None, None, None])
    left = jnp.einsum("...imk,...ilk->...ml", g, g) / count      # E[G G^T]
    right = jnp.einsum("...imk,...iml->...kl", g, g) / count     # E[G^T G]
    trace_h = jnp.trace(left, axis1=-2, axis2=-1)
    norm_l, norm_r = _fro(left), _fro(right)
    sigma = jnp.sqrt((norm_l / n ** 0.5) * (norm_r / m ** 0.5))
    left, right = _unit(left, norm_l), _unit(right, norm_r)
    change = _fro(right - jnp.eye(n, dtype=dt) / n ** 0.5)
    for _ in range(int(steps) - 1):
        previous = right
        left = jnp.einsum("...imk,...kl,...ijl->...mj", g, right, g) / count
        left = _unit(left, _fro(left))
        right = jnp.einsum("...imk,...ml,...ilj->...kj", g, left, g) / count
        sigma = _fro(right)
        right = _unit(right, sigma)
        change = _fro(right - previous)
    # The a-posteriori bounds with cpp/kron.cc's rounding allowance 32 (N + m + n) eps.
    tol = 32.0 * (count + m + n) * np.finfo(dt).eps
    checked = (jnp.isfinite(change) & (sigma >= trace_h / np.sqrt(m * n) * (1 - tol))
               & (sigma <= trace_h * (1 + tol)))
    zero = amax == 0  # H = 0: the zero factors are exact
    root = jnp.ldexp(jnp.sqrt(sigma), e)[..., None, None]
    left, right = root * left, root * right
    factors_finite = jnp.all(jnp.isfinite(left), axis=(-2, -1)) & jnp.all(jnp.isfinite(right), axis=(-2, -1))
    # sigma 2^(2e) in two factors of 2^e: 2^(2e) alone can leave the exponent range.
    full = jnp.ldexp(jnp.ldexp(sigma, e), e)
    tiny, big = np.finfo(dt).tiny, np.finfo(dt).max
    in_range = (full >= tiny) & (full <= big)
    status = jnp.where(checked & factors_finite & in_range, KRON_STATUS["ok"], KRON_STATUS["out_of_range"])
    status = jnp.where(checked, status, KRON_STATUS["failed"])
    status = jnp.where(zero, KRON_STATUS["ok"], status)
    status = jnp.where(finite, status, KRON_STATUS["non_finite_input"]).astype(jnp.int32)
    keep_factors = ((status == KRON_STATUS["ok"]) | (status == KRON_STATUS["out_of_range"])) & factors_finite & ~zero
    left = jnp.where(keep_factors[..., None, None], left, 0)
    right = jnp.where(keep_factors[..., None, None], right, 0)
    keep = (status == KRON_STATUS["ok"]) | (status == KRON_STATUS["out_of_range"])
    sigma = jnp.where(keep & ~zero, jnp.clip(full, tiny, big), 0).astype(dt)
    change = jnp.where(keep & ~zero, change, 0).astype(dt)
    return left, right, sigma, change, status


def _normalised(x, axes):
    """x 2^-e with its largest entry in [1/2, 1) (x itself when zero)."""
    e = jnp.frexp(_amax(x, axes))[1]
    return jnp.ldexp(x, -jnp.expand_dims(e, axes))


def cosine(samples, left, right):
    dt = samples.dtype
    count = samples.shape[-3]
    finite = (jnp.all(jnp.isfinite(samples), axis=(-3, -2, -1)) & jnp.all(jnp.isfinite(left), axis=(-2, -1))
              & jnp.all(jnp.isfinite(right), axis=(-2, -1)))
    g = _normalised(jnp.where(jnp.isfinite(samples), samples, 0), (-3, -2, -1))
    left = _normalised(jnp.where(jnp.isfinite(left), left, 0), (-2, -1))
    right = _normalised(jnp.where(jnp.isfinite(right), right, 0), (-2, -1))
    num = jnp.einsum("...imk,...ml,...ilj,...kj->...", g, left, g, right) / count
    flat = g.reshape(g.shape[:-2] + (-1,))
    gram = flat @ jnp.swapaxes(flat, -1, -2)
    norm_h = _fro(gram) / count
    norm_k = _fro(left) * _fro(right)
    ok = (norm_h > 0) & (norm_k > 0)
    out = jnp.where(ok, num / jnp.where(ok, norm_h * norm_k, 1.0), 0.0)
    return (jnp.where(finite, out, jnp.nan).astype(dt),)
