"""LOBPCG for explicit (batched) matrices in plain JAX (the contract of ``linalg_core_lobpcg``;
see :func:`linalg_core.lobpcg`): the JAX port of the iteration (``linalg_core._lobpcg_jax``, also
the matvec path) with ``A X`` as a matmul, and the dense eigensolver for ``5 k >= n`` checked by
its explicit residuals. NaN/Inf in ``a`` or ``x0`` gives ``non_finite``, a non-symmetric ``a``
``non_symmetric`` (the kernel's test, ``8 n eps max|A|``); both return zeros."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from linalg_core._lobpcg_jax import column_norms, effective_tol, lobpcg_matvec
from linalg_core._validation import symmetry_tolerance
from linalg_core.lobpcg import LOBPCG_STATUS

_CONVERGED = LOBPCG_STATUS["converged"]
_BREAKDOWN = LOBPCG_STATUS["breakdown"]
_NON_FINITE = LOBPCG_STATUS["non_finite"]
_NON_SYMMETRIC = LOBPCG_STATUS["non_symmetric"]


def _dense(a, k, tol):
    """Top k pairs of one symmetric matrix by eigh, scaled by a power of two into range, with the
    residuals ||A v_j - w_j v_j|| / ||A||_2 checked against tol."""
    top = jnp.max(jnp.abs(a))
    _, exponent = jnp.frexp(jnp.where(top > 0, top, 1.0))
    scale = jnp.ldexp(jnp.ones((), a.dtype), -exponent).astype(a.dtype)
    a = a * scale
    w, v = jnp.linalg.eigh(a)
    vals, vecs = w[::-1][:k], v[:, ::-1][:, :k]
    anorm = jnp.maximum(jnp.abs(w[0]), jnp.abs(w[-1]))
    res = column_norms(a @ vecs - vecs * vals) / jnp.where(anorm > 0, anorm, 1.0)
    status = jnp.where(jnp.all(res <= tol), _CONVERGED, _BREAKDOWN).astype(jnp.int32)
    return vals / scale, vecs, res, jnp.zeros((), jnp.int32), status


def lobpcg(a, x0, *, k, max_iters, tol, guard):
    n = a.shape[-1]
    batch = a.shape[:-2]
    finite = jnp.all(jnp.isfinite(a), axis=(-2, -1)) & jnp.all(jnp.isfinite(x0), axis=(-2, -1))
    a = jnp.where(finite[..., None, None], a, 0.0)
    x0 = jnp.where(finite[..., None, None], x0, 1.0)
    amax = jnp.max(jnp.abs(a), axis=(-2, -1))
    asym = jnp.max(jnp.abs(a - jnp.swapaxes(a, -1, -2)), axis=(-2, -1))
    symmetric = asym <= symmetry_tolerance(a.dtype, n) * amax  # cpp/symmetry.h
    a = jnp.where(symmetric[..., None, None], a, 0.0)
    if 5 * k >= n:
        tol_eff = effective_tol(float(tol), n, a.dtype)

        def one(a1, x1):
            return _dense(a1, int(k), tol_eff)
    else:
        def one(a1, x1):
            return lobpcg_matvec(lambda x: a1 @ x, x1, int(k), float(tol), int(max_iters), int(guard))

    fn = one
    for _ in batch:
        fn = jax.vmap(fn)
    vals, vecs, res, iters, status = fn(a, x0)
    dense = jnp.full(batch, int(5 * k >= n), jnp.int32)
    status = jnp.where(finite, jnp.where(symmetric, status, _NON_SYMMETRIC), _NON_FINITE).astype(jnp.int32)
    keep = finite & symmetric
    kv = keep[..., None]
    return (jnp.where(kv, vals, 0.0), jnp.where(kv[..., None], vecs, 0.0), jnp.where(kv, res, 0.0),
            jnp.where(keep, iters, 0).astype(jnp.int32), status, dense)
