"""The shared-basis block low-rank update in plain JAX (the contract of
``linalg_core_shared_basis_update``; see :func:`linalg_core.shared_basis_update` for the math).
Step for step the algorithm of cpp/shared_basis.cc: the expansion of ``A Y``, QR power steps,
Rayleigh-Ritz, the projected coefficients, the escaped mass by power iteration on the factored
difference (30 steps at most, 1e-3 relative), the factored direction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASS_ITERS = 30


def _sym(x):
    return 0.5 * (x + jnp.swapaxes(x, -1, -2))


def _update_one(basis, coeffs, escaped, grads, y0, eps, power_iters):
    b, k = basis.shape
    g = grads
    p = jnp.einsum("mij,mj->mi", coeffs, g @ basis) @ basis.T      # p_i = B R_i B^T g_i
    s = jnp.einsum("mij,mkj->ik", coeffs, coeffs)                  # sum_i R_i R_i^T
    gsq = jnp.sum(g * g, axis=1)

    def apply_a(y):  # sum_i M_i M_i^T y with M_i = B R_i B^T + g_i g_i^T, never formed
        gy = g @ y
        return basis @ (s @ (basis.T @ y)) + p.T @ gy + g.T @ (p @ y) + g.T @ (gsq[:, None] * gy)

    y = jnp.linalg.qr(y0)[0]
    for _ in range(power_iters):
        y = jnp.linalg.qr(apply_a(y))[0]
    w, v = jnp.linalg.eigh(_sym(y.T @ apply_a(y)))
    new_basis = y @ v[:, ::-1][:, :k]
    e = new_basis.T @ basis
    h = g @ new_basis                                              # (m, k): B^T g_i
    projected = _sym(jnp.einsum("ij,mjl,kl->mik", e, coeffs, e) + h[:, :, None] * h[:, None, :])
    lam, vecs = jnp.linalg.eigh(projected)
    shifted = jnp.maximum(lam - lam[:, :1], 0.0)
    new_coeffs = _sym(jnp.einsum("mij,mj,mkj->mik", vecs, shifted, vecs))

    def mass_step(state):
        it, x, prev, _ = state
        x = x / jnp.where((n := jnp.linalg.norm(x, axis=1, keepdims=True)) > 0, n, 1.0)
        y2 = (jnp.einsum("mij,mj->mi", coeffs, x @ basis) @ basis.T
              - jnp.einsum("mij,mj->mi", new_coeffs, x @ new_basis) @ new_basis.T
              + jnp.sum(g * x, axis=1, keepdims=True) * g)
        mass = jnp.linalg.norm(y2, axis=1)
        settled = jnp.all(jnp.abs(mass - prev) <= 1e-3 * mass)
        return it + 1, y2, mass, settled

    x0 = g + 1.0 / jnp.arange(2, b + 2, dtype=g.dtype)
    init = (0, x0, jnp.full(g.shape[:1], -1.0, g.dtype), False)
    _, _, mass, _ = jax.lax.while_loop(lambda st: (st[0] < MASS_ITERS) & ~st[3], mass_step, init)
    rho = escaped + mass
    c = rho + eps
    c0 = c ** -0.5
    z = jnp.einsum("mji,mj->mi", vecs, h) * ((shifted + c[:, None]) ** -0.5 - c0[:, None])
    direction = -(c0[:, None] * g + jnp.einsum("mij,mj->mi", vecs, z) @ new_basis.T)
    outs = (new_basis, new_coeffs, rho, direction, mass)
    ok = jnp.all(jnp.array([jnp.all(jnp.isfinite(o)) for o in outs]))
    keep = (basis, coeffs, escaped, jnp.zeros_like(direction), jnp.zeros_like(mass))
    outs = tuple(jnp.where(ok, o, kept) for o, kept in zip(outs, keep))
    return outs + (jnp.where(ok, 0, 1).astype(jnp.int32),)


def update(basis, coeffs, escaped, grads, y0, *, eps, power_iters):
    """Leading batch axes (from vmap) are mapped over; one layer per element."""
    batch = basis.shape[:-2]
    fn = lambda *xs: _update_one(*xs, eps, int(power_iters))  # noqa: E731
    for _ in batch:
        fn = jax.vmap(fn)
    return fn(basis, coeffs, escaped, grads, y0)
