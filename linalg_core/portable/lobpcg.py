"""LOBPCG for explicit (batched) matrices in plain JAX (the contract of ``linalg_core_lobpcg``;
see :func:`linalg_core.lobpcg`): the JAX port of the iteration (``linalg_core._lobpcg_jax``, also
the matvec path) with ``A X`` as a matmul, and the dense eigensolver for ``5 k >= n``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from linalg_core._lobpcg_jax import lobpcg_matvec

_CONVERGED, _NON_FINITE = 0, 3


def lobpcg(a, x0, *, k, max_iters, tol, guard):
    n = a.shape[-1]
    batch = a.shape[:-2]
    finite = jnp.all(jnp.isfinite(a), axis=(-2, -1)) & jnp.all(jnp.isfinite(x0), axis=(-2, -1))
    a = jnp.where(finite[..., None, None], a, 0.0)
    x0 = jnp.where(finite[..., None, None], x0, 1.0)
    if 5 * k >= n:
        w, v = jnp.linalg.eigh(0.5 * (a + jnp.swapaxes(a, -1, -2)))
        vals, vecs = w[..., ::-1][..., :k], v[..., :, ::-1][..., :, :k]
        res = jnp.zeros(batch + (k,), a.dtype)
        iters = jnp.zeros(batch, jnp.int32)
        status = jnp.zeros(batch, jnp.int32)
        dense = jnp.ones(batch, jnp.int32)
    else:
        def one(a1, x1):
            return lobpcg_matvec(lambda x: a1 @ x, x1, int(k), float(tol), int(max_iters), int(guard))

        fn = one
        for _ in batch:
            fn = jax.vmap(fn)
        vals, vecs, res, iters, status = fn(a, x0)
        dense = jnp.zeros(batch, jnp.int32)
    status = jnp.where(finite, status, _NON_FINITE).astype(jnp.int32)
    keep = finite[..., None]
    return (jnp.where(keep, vals, 0.0), jnp.where(keep[..., None], vecs, 0.0), jnp.where(keep, res, 0.0),
            iters.astype(jnp.int32), status, dense)
