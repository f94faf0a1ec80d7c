"""Frequent Directions in plain JAX (the contract of ``linalg_core_fd_update`` and
``linalg_core_fd_apply_inverse_root``; see :func:`linalg_core.fd_update` for the math).

The same phases as ``cpp/fd.cc``: the input contract, power-of-two prescaling, the update by the
projected thin stack (Householder thin stack as its fallback) or a dense eigh, then unscaling and
the a-posteriori check before a status of ok.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core.fd import FD_METHODS, FD_STATUS

_THIN_STACK = FD_METHODS["thin_stack"]
_DENSE = FD_METHODS["dense_eigh"]
_HOUSEHOLDER = FD_METHODS["thin_stack_householder"]
_OK = FD_STATUS["ok"]


def _swap(a: Any) -> Any:
    return jnp.swapaxes(a, -1, -2)


def _indefinite_tolerance(dtype: Any, dim: int) -> float:
    """cpp/fd.cc indefinite_tolerance: sqrt(eps) + 16 d eps."""
    eps = float(np.finfo(dtype).eps)
    return float(np.sqrt(eps)) + 16 * dim * eps


def state_status(basis: Any, eigvals: Any, escaped: Any, *others: Any) -> Any:
    """Per batch element: ``non_finite_input`` for NaN/Inf in the state or ``others`` (arrays
    ``(..., rows, cols)``), ``invalid_state`` for lambda negative or not descending or rho < 0."""
    finite = (jnp.all(jnp.isfinite(basis), axis=(-2, -1)) & jnp.all(jnp.isfinite(eigvals), axis=-1)
              & jnp.isfinite(escaped))
    for a in others:
        finite = finite & jnp.all(jnp.isfinite(a), axis=(-2, -1))
    valid = (escaped >= 0) & (eigvals[..., -1] >= 0)
    if eigvals.shape[-1] > 1:
        valid = valid & jnp.all(eigvals[..., :-1] >= eigvals[..., 1:], axis=-1)
    return jnp.where(~finite, FD_STATUS["non_finite_input"],
                     jnp.where(~valid, FD_STATUS["invalid_state"], _OK)).astype(jnp.int32)


def _term_status(term: Any, dim: int) -> Any:
    """cpp/fd.cc check_input for a matrix term: symmetric to 8 d eps, no clearly negative diagonal."""
    eps = float(np.finfo(term.dtype).eps)
    largest = jnp.max(jnp.abs(term), axis=(-2, -1))
    asymmetry = jnp.max(jnp.abs(0.5 * term - 0.5 * _swap(term)), axis=(-2, -1))
    lowest = jnp.minimum(jnp.min(jnp.diagonal(term, axis1=-2, axis2=-1), axis=-1), 0)
    return jnp.where(asymmetry > 4 * dim * eps * largest, FD_STATUS["non_symmetric_term"],
                     jnp.where(lowest < -_indefinite_tolerance(term.dtype, dim) * largest,
                               FD_STATUS["indefinite_term"], _OK))


def _scale_exponent(eigvals: Any, term: Any, beta: Any, term_is_matrix: bool) -> Any:
    """cpp/fd.cc scale_exponent: E even, max magnitude 2^-E in [0.25, 1), |E| <= maxexp - 4."""
    low = np.iinfo(np.int32).min
    largest = jnp.max(jnp.abs(term), axis=(-2, -1))
    e_term = jnp.frexp(largest)[1].astype(jnp.int32) * (1 if term_is_matrix else 2)
    e_term = jnp.where(largest > 0, e_term, low)
    top = beta * eigvals[..., 0]
    e_state = jnp.where(top > 0, jnp.frexp(top)[1].astype(jnp.int32), low)
    e = jnp.maximum(e_term, e_state)
    e = jnp.where(e == low, 0, e)
    e = e + (e % 2)
    limit = int(np.finfo(term.dtype).maxexp) - 4
    return jnp.clip(e, -limit, limit)


def _top_of_gram(f: Any, count: int) -> tuple[Any, Any]:
    """Top ``count`` eigenvectors W (descending) of F F^T and their Rayleigh quotients
    ``||F^T w_j||^2`` (as cpp/fd.cc rayleigh_quotients: accurate small eigenvalues, kept
    descending through rounding)."""
    _, v = jnp.linalg.eigh(f @ _swap(f))
    w = v[..., ::-1][..., :count]
    y = _swap(f) @ w
    acc = jnp.float64 if jax.config.jax_enable_x64 else y.dtype
    mu = jnp.sum(jnp.square(y.astype(acc)), axis=-2)
    mu = jax.lax.cummin(mu, axis=mu.ndim - 1).astype(f.dtype)
    return w, mu


def _householder(scaled, g):
    """Z = [sqrt(beta) U Lambda^(1/2), G] = Q R: C = Z Z^T has the eigenvectors Q V of R R^T."""
    rank = scaled.shape[-1]
    q, r = jnp.linalg.qr(jnp.concatenate([scaled, g], axis=-1))
    count = min(rank + 1, r.shape[-2])
    w, mu = _top_of_gram(r, count)
    return q @ w[..., :rank], mu


def _projected(basis, lam, g, beta):
    """cpp/fd.cc projected: Z = [U, Q2] F with Q2 G's part orthogonal to U. Returns the basis,
    the top l+1 eigenvalues and whether the Cholesky-QR check asks for the Householder form."""
    dim, rank = basis.shape[-2:]
    r = g.shape[-1]
    ut = _swap(basis)
    c = ut @ g
    g1 = g - basis @ c
    c2 = ut @ g1
    g1 = g1 - basis @ c2
    c = c + c2
    q2, _ = jnp.linalg.qr(g1)
    q2, _ = jnp.linalg.qr(q2 - basis @ (ut @ q2))
    r2 = _swap(q2) @ g1
    diag = jnp.sqrt(beta[..., None] * lam)[..., :, None] * jnp.eye(rank, dtype=g.dtype)
    top = jnp.concatenate([diag, c], axis=-1)
    bottom = jnp.concatenate([jnp.zeros(r2.shape[:-2] + (r, rank), g.dtype), r2], axis=-1)
    f = jnp.concatenate([top, bottom], axis=-2)
    w, mu = _top_of_gram(f, rank + 1)
    new = basis @ w[..., :rank, :rank] + q2 @ w[..., rank:, :rank]
    gram = _swap(new) @ new
    departure = jnp.max(jnp.abs(gram - jnp.eye(rank, dtype=g.dtype)), axis=(-2, -1))
    chol = jnp.linalg.cholesky(gram)
    pivots_ok = jnp.all(jnp.diagonal(chol, axis1=-2, axis2=-1) >= 0.5, axis=-1)
    corrected = _swap(jax.scipy.linalg.solve_triangular(chol, _swap(new), lower=True))
    small = departure <= 16 * float(np.finfo(g.dtype).eps)
    new = jnp.where(small[..., None, None], new, corrected)
    return new, mu, ~(small | pivots_ok)


def update(basis, eigvals, escaped, term, beta, *, term_is_matrix, method):
    dtype = basis.dtype
    dim, rank = basis.shape[-2:]
    term_is_matrix = bool(term_is_matrix)
    n = rank + (0 if term_is_matrix else term.shape[-1])
    dense = term_is_matrix or method == _DENSE or (method < 0 and 4 * n > 3 * dim)

    # Input contract (cpp/fd.cc check_input), then sanitised operands for the computation.
    status = jnp.where((beta > 0) & (beta <= 1), state_status(basis, eigvals, escaped, term),
                       FD_STATUS["bad_beta"])
    if term_is_matrix:
        status = jnp.where(status == _OK, _term_status(term, dim), status)
    fine = status == _OK
    safe_lam = jnp.where(fine[..., None], eigvals, 0)
    safe_term = jnp.where(fine[..., None, None], term, 0)
    safe_basis = jnp.where(fine[..., None, None], basis, jnp.eye(dim, rank, dtype=dtype))
    safe_beta = jnp.where(fine, beta, 1)

    # Power-of-two prescaling: lambda and M by 2^-E, G by 2^-(E/2).
    e = _scale_exponent(safe_lam, safe_term, safe_beta, term_is_matrix)
    lam = jnp.ldexp(safe_lam, -e[..., None])
    g = jnp.ldexp(safe_term, -(e if term_is_matrix else e // 2)[..., None, None])
    scaled = safe_basis * jnp.sqrt(safe_beta[..., None, None] * lam[..., None, :])
    smallest = jnp.zeros(e.shape, dtype)
    if dense:
        if term_is_matrix:
            c = 0.5 * g + 0.5 * _swap(g)
        else:
            c = g @ _swap(g)
        c = c + scaled @ _swap(scaled)
        w, v = jnp.linalg.eigh(c)
        count = min(rank + 1, dim)
        new_basis, mu = v[..., ::-1][..., :rank], w[..., ::-1][..., :count]
        smallest = w[..., 0]
        used = jnp.full(e.shape, _DENSE, jnp.int32)
    elif method == _HOUSEHOLDER or n > dim:
        new_basis, mu = _householder(scaled, g)
        used = jnp.full(e.shape, _HOUSEHOLDER, jnp.int32)
    else:
        new_basis, mu, fallback = _projected(safe_basis, lam, g, safe_beta)
        new_basis, mu = jax.lax.cond(
            jnp.any(fallback),
            lambda: tuple(jnp.where(fallback[(...,) + (None,) * (a.ndim - fallback.ndim)], b, a)
                          for a, b in zip((new_basis, mu), _householder(scaled, g))),
            lambda: (new_basis, mu))
        used = jnp.where(fallback, _HOUSEHOLDER, _THIN_STACK).astype(jnp.int32)
    mu = jnp.maximum(mu, 0)
    top = mu[..., 0]
    rho_t = mu[..., rank] if mu.shape[-1] > rank else jnp.zeros(top.shape, dtype)
    new_lam = jnp.maximum(mu[..., :rank] - rho_t[..., None], 0)

    # Unscale and check (cpp/fd.cc finish).
    if term_is_matrix:
        indefinite = smallest < -_indefinite_tolerance(dtype, dim) * top
        status = jnp.where(fine & indefinite, FD_STATUS["indefinite_term"], status)
    big_top = jnp.ldexp(top, e)
    big_rho_t = jnp.ldexp(rho_t, e)
    new_escaped = safe_beta * jnp.where(fine, escaped, 0) + big_rho_t
    underflow = (top > 0) & (big_top < float(np.finfo(dtype).tiny / np.finfo(dtype).eps))
    unrepresentable = ~jnp.isfinite(big_top) | ~jnp.isfinite(new_escaped) | underflow
    status = jnp.where((status == _OK) & unrepresentable, FD_STATUS["not_representable"], status)
    new_lam = jnp.ldexp(new_lam, e[..., None])
    valid = (jnp.all(jnp.isfinite(new_basis), axis=(-2, -1)) & jnp.all(jnp.isfinite(new_lam), axis=-1)
             & (new_lam[..., -1] >= 0) & (big_rho_t >= 0) & (new_escaped >= 0))
    if rank > 1:
        valid = valid & jnp.all(new_lam[..., :-1] >= new_lam[..., 1:], axis=-1)
    status = jnp.where((status == _OK) & ~valid, FD_STATUS["eigensolver_failure"], status)

    ok = status == _OK
    residual = jnp.where(ok & (top > 0), rho_t / jnp.where(top > 0, top, 1), 0)
    return (jnp.where(ok[..., None, None], new_basis, basis), jnp.where(ok[..., None], new_lam, eigvals),
            jnp.where(ok, new_escaped, escaped), jnp.where(ok, big_rho_t, 0).astype(dtype),
            residual.astype(dtype), used, status.astype(jnp.int32))


def apply_inverse_root(basis, eigvals, escaped, x, *, p, eps):
    """cpp/fd.cc apply_inverse_root: y = c0 x + U (delta .* U^T x) with the coefficient
    delta = c0 expm1(-log1p(lambda / f) / p) free of cancellation, accumulated in float64 when
    JAX has it (x64 enabled): the sum cancels when lambda >> f and x lies in span(U)."""
    acc = jnp.float64 if jax.config.jax_enable_x64 else x.dtype
    u = basis.astype(acc)
    f = escaped.astype(acc) + eps
    c0 = f ** (-1.0 / p)
    delta = c0[..., None] * jnp.expm1(-jnp.log1p(jnp.maximum(eigvals.astype(acc), 0) / f[..., None]) / p)
    xa = x.astype(acc)
    y = c0[..., None, None] * xa + u @ (delta[..., :, None] * (_swap(u) @ xa))
    return (y.astype(x.dtype),)
