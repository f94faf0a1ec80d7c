"""Kronecker power iteration and the cosine similarity in plain JAX (the contracts of
``linalg_core_kron_approx`` and ``linalg_core_kron_cosine``; see :func:`linalg_core.kron_approx`).
The products ``(1/N) sum_i G_i R G_i^T`` are einsums over the sample axis, which XLA lowers to
batched GEMMs."""

from __future__ import annotations

import jax.numpy as jnp


def _fro(x):
    return jnp.sqrt(jnp.sum(x * x, axis=(-2, -1)))


def _unit(x, norm):
    return x / jnp.where(norm > 0, norm, 1.0)[..., None, None]


def approx(samples, *, steps):
    g = samples
    count, m, n = g.shape[-3:]
    left = jnp.einsum("...imk,...ilk->...ml", g, g) / count      # E[G G^T]
    right = jnp.einsum("...imk,...iml->...kl", g, g) / count     # E[G^T G]
    norm_l, norm_r = _fro(left), _fro(right)
    sigma = jnp.sqrt((norm_l / n ** 0.5) * (norm_r / m ** 0.5))
    left, right = _unit(left, norm_l), _unit(right, norm_r)
    change = _fro(right - jnp.eye(n, dtype=g.dtype) / n ** 0.5)
    for _ in range(int(steps) - 1):
        previous = right
        left = jnp.einsum("...imk,...kl,...ijl->...mj", g, right, g) / count
        left = _unit(left, _fro(left))
        right = jnp.einsum("...imk,...ml,...ilj->...kj", g, left, g) / count
        sigma = _fro(right)
        right = _unit(right, sigma)
        change = _fro(right - previous)
    sigma = jnp.where(jnp.isfinite(sigma), sigma, 0.0)
    root = jnp.sqrt(sigma)[..., None, None]
    return root * left, root * right, sigma, change


def cosine(samples, left, right):
    g = samples
    count = g.shape[-3]
    num = jnp.einsum("...imk,...ml,...ilj,...kj->...", g, left, g, right) / count
    flat = g.reshape(g.shape[:-2] + (-1,))
    gram = flat @ jnp.swapaxes(flat, -1, -2)
    norm_h = _fro(gram) / count
    norm_k = _fro(left) * _fro(right)
    ok = (norm_h > 0) & (norm_k > 0)
    return (jnp.where(ok, num / jnp.where(ok, norm_h * norm_k, 1.0), 0.0),)
