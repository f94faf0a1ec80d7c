"""Frequent Directions in plain JAX (the contract of ``linalg_core_fd_update`` and
``linalg_core_fd_apply_inverse_root``; see :func:`linalg_core.fd_update` for the math)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

# Codes shared with cpp/fd.h (FD_METHODS, FD_STATUS in linalg_core/fd.py).
_THIN_STACK, _DENSE, _HOUSEHOLDER = 0, 1, 2
_OK, _NON_FINITE, _BAD_BETA, _EIGEN_FAILURE = 0, 1, 2, 3


def _top(w: Any, v: Any, rank: int) -> tuple[Any, Any, Any, Any]:
    """Top ``rank`` pairs of ascending ``(w, v)``, the next eigenvalue and the largest."""
    size = w.shape[-1]
    w = jnp.maximum(w[..., ::-1], 0.0)
    v = v[..., ::-1]
    rho = w[..., rank] if size > rank else jnp.zeros(w.shape[:-1], w.dtype)
    lam = jnp.maximum(w[..., :rank] - rho[..., None], 0.0)
    return v[..., :rank], lam, rho, w[..., 0]


def update(basis, eigvals, escaped, term, beta, *, term_is_matrix, method):
    dim, rank = basis.shape[-2:]
    b = beta[..., None, None]
    scaled = basis * jnp.sqrt(b * jnp.maximum(eigvals, 0.0)[..., None, :])
    n = rank + (0 if term_is_matrix else term.shape[-1])
    dense = bool(term_is_matrix) or method == _DENSE or n > dim or (method < 0 and 4 * n > 3 * dim)
    if dense:
        c = scaled @ jnp.swapaxes(scaled, -1, -2)
        if term_is_matrix:
            c = c + 0.5 * (term + jnp.swapaxes(term, -1, -2))
        else:
            c = c + term @ jnp.swapaxes(term, -1, -2)
        w, v = jnp.linalg.eigh(c)
        new_basis, lam, rho, top = _top(w, v, rank)
        used = _DENSE
    else:
        # Thin stack Z = [sqrt(beta) U Lambda^(1/2), G] = Q R (Householder): C = Z Z^T has the
        # eigenvectors Q V of R R^T = V diag(mu) V^T.
        q, r = jnp.linalg.qr(jnp.concatenate([scaled, term], axis=-1))
        w, v = jnp.linalg.eigh(r @ jnp.swapaxes(r, -1, -2))
        vecs, lam, rho, top = _top(w, v, rank)
        new_basis = q @ vecs
        used = _HOUSEHOLDER
    finite_in = (jnp.all(jnp.isfinite(term), axis=(-2, -1)) & jnp.all(jnp.isfinite(basis), axis=(-2, -1))
                 & jnp.all(jnp.isfinite(eigvals), axis=-1) & jnp.isfinite(escaped))
    finite_out = jnp.all(jnp.isfinite(new_basis), axis=(-2, -1)) & jnp.all(jnp.isfinite(lam), axis=-1)
    good_beta = (beta > 0) & (beta <= 1)
    status = jnp.where(~good_beta, _BAD_BETA, jnp.where(~finite_in, _NON_FINITE,
                                                        jnp.where(~finite_out, _EIGEN_FAILURE, _OK)))
    ok = status == _OK
    rho = jnp.where(ok, rho, 0.0)
    residual = jnp.where(ok & (top > 0), rho / jnp.where(top > 0, top, 1.0), 0.0)
    return (jnp.where(ok[..., None, None], new_basis, basis), jnp.where(ok[..., None], lam, eigvals),
            jnp.where(ok, beta * escaped + rho, escaped), rho.astype(basis.dtype),
            residual.astype(basis.dtype), jnp.full(status.shape, used, jnp.int32), status.astype(jnp.int32))


def apply_inverse_root(basis, eigvals, escaped, x, *, p, eps):
    base = escaped + eps
    coeff = (jnp.maximum(eigvals, 0.0) + base[..., None]) ** (-1.0 / p) - base[..., None] ** (-1.0 / p)
    projected = jnp.swapaxes(basis, -1, -2) @ x
    y = basis @ (coeff[..., :, None] * projected) + base[..., None, None] ** (-1.0 / p) * x
    return (y.astype(x.dtype),)
