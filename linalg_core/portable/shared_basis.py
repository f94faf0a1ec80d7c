"""The shared-basis block low-rank update in plain JAX (the contract of
``linalg_core_shared_basis_update``; see :func:`linalg_core.shared_basis_update` for the math).
Step for step the algorithm of cpp/shared_basis.cc: the expansion of ``A Y``, QR power steps,
Rayleigh-Ritz, the projected coefficients, the escaped mass by power iteration on the factored
difference (30 steps at most, 1e-3 relative), the factored direction; the same input checks,
power-of-two scaling and a-posteriori checks (cpp/shared_basis.h), the same status codes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from linalg_core._validation import symmetry_tolerance
from linalg_core.shared_basis import SHARED_BASIS_STATUS as STATUS

MASS_ITERS = 30


def _sym(x):
    return 0.5 * (x + jnp.swapaxes(x, -1, -2))


def _safe_exponent(size, dtype):
    """cpp/shared_basis.cc's safe_exponent: e with size 2^-e in [1/2, 1) outside [2^-lim, 2^lim]."""
    lim = np.finfo(dtype).maxexp // 8
    e = jnp.frexp(size)[1]
    return jnp.where((size > 0) & ((e < -lim) | (e > lim)), e, 0)


def _update_one(basis, coeffs, escaped, grads, y0, eps, power_iters):
    """Input checks, scaling, the algorithm, the a-posteriori checks; the input state on failure."""
    dt = grads.dtype
    b, k = basis.shape
    s = y0.shape[1]
    finite = (jnp.all(jnp.isfinite(grads)) & jnp.all(jnp.isfinite(basis)) & jnp.all(jnp.isfinite(coeffs))
              & jnp.all(jnp.isfinite(escaped)) & jnp.all(jnp.isfinite(y0)))
    # cpp/symmetry.h per block: max|R_i - R_i^T| <= 8 k eps max|R_i|.
    asym = jnp.max(jnp.abs(coeffs - jnp.swapaxes(coeffs, -1, -2)), axis=(-2, -1))
    symmetric = jnp.all(asym <= symmetry_tolerance(dt, coeffs.shape[-1]) * jnp.max(jnp.abs(coeffs), axis=(-2, -1)))
    valid = jnp.all(escaped >= 0) & symmetric
    clean = lambda x: jnp.where(finite & valid, x, jnp.zeros_like(x))  # noqa: E731
    size = jnp.maximum(jnp.max(jnp.abs(clean(grads))),
                       jnp.sqrt(jnp.maximum(jnp.max(jnp.abs(clean(coeffs))), jnp.max(clean(escaped)))))
    e = _safe_exponent(size, dt)
    outs = _algorithm(clean(basis), jnp.ldexp(clean(coeffs), -2 * e), jnp.ldexp(clean(escaped), -2 * e),
                      jnp.ldexp(clean(grads), -e), jnp.where(finite & valid, y0, jnp.eye(b, s, dtype=dt)),
                      jnp.ldexp(jnp.asarray(eps, dt), -2 * e), power_iters)
    new_basis, new_coeffs, rho, direction, mass = outs
    eps_dt = np.finfo(dt).eps
    gram = new_basis.T @ new_basis
    computed = (jnp.all(jnp.array([jnp.all(jnp.isfinite(o)) for o in outs]))
                & (jnp.max(jnp.abs(gram - jnp.eye(k, dtype=dt))) <= 32.0 * (b + s) * eps_dt))
    # The new state's size scaled back must be a normal number (tested on the scaled size, so
    # that flushing subnormals to zero cannot hide an underflow).
    state_size = jnp.maximum(jnp.max(jnp.abs(new_coeffs)), jnp.max(rho))
    full_size = jnp.ldexp(state_size, 2 * e)
    new_coeffs, rho, mass = (jnp.ldexp(x, 2 * e) for x in (new_coeffs, rho, mass))
    in_range = (jnp.all(jnp.isfinite(new_coeffs)) & jnp.all(jnp.isfinite(rho)) & jnp.all(jnp.isfinite(mass))
                & ((state_size == 0) | (full_size >= np.finfo(dt).tiny)))
    grew = jnp.all(rho >= escaped * (1 - eps_dt))
    status = jnp.where(in_range, jnp.where(grew, STATUS["ok"], STATUS["failed"]), STATUS["out_of_range"])
    status = jnp.where(computed, status, STATUS["failed"])
    status = jnp.where(valid, status, STATUS["invalid_state"])
    status = jnp.where(finite, status, STATUS["non_finite_input"]).astype(jnp.int32)
    ok = status == STATUS["ok"]
    keep = (basis, coeffs, escaped, jnp.zeros_like(direction), jnp.zeros_like(mass))
    outs = tuple(jnp.where(ok, o, kept) for o, kept in zip((new_basis, new_coeffs, rho, direction, mass), keep))
    return outs + (status,)


def _algorithm(basis, coeffs, escaped, grads, y0, eps, power_iters):
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
    # The split form of cpp/shared_basis.cc: c0 (g - B h) + B V (f + c)^(-1/2) V^T h, the
    # residual g - B h accumulated in float64 when JAX has it (x64 enabled), so the part in
    # span(B) is not a difference of two terms ~c0 |g| (the one-GEMM form's cancellation).
    acc = jnp.float64 if jax.config.jax_enable_x64 else g.dtype
    b_acc, g_acc = new_basis.astype(acc), g.astype(acc)
    residual = g_acc - (g_acc @ b_acc) @ b_acc.T
    z = jnp.einsum("mji,mj->mi", vecs, h) * (shifted + c[:, None]) ** -0.5
    inside = jnp.einsum("mij,mj->mi", vecs, z) @ new_basis.T
    direction = (c0[:, None].astype(acc) * residual + inside.astype(acc)).astype(g.dtype)
    return new_basis, new_coeffs, rho, direction, mass


def update(basis, coeffs, escaped, grads, y0, *, eps, power_iters):
    """Leading batch axes (from vmap) are mapped over; one layer per element."""
    batch = basis.shape[:-2]
    fn = lambda *xs: _update_one(*xs, eps, int(power_iters))  # noqa: E731
    for _ in batch:
        fn = jax.vmap(fn)
    return fn(basis, coeffs, escaped, grads, y0)
