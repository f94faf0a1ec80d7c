r"""Grafting: borrow the per-block step size of a simple method, keep the matrix method's direction.

With ``P`` the preconditioned block and ``D`` the same block of the graft method's direction, the
grafted block is ``P * ||D||_F / ||P||_F`` (Agarwal et al. 2020; Anil et al. 2020, Sec. 4.2). The
graft methods, elementwise on the whole parameter:

- ``"none"``: no grafting (the matrix method's own scale; vectors get the plain gradient);
- ``"sgd"``: ``D = g``;
- ``"adagrad"``: ``v += g^2``, ``D = g / (sqrt(v) + eps)``;
- ``"rmsprop_normalized"``: ``n = g / ||g||_F``, ``v = beta2 v + (1 - beta2) n^2``,
  ``D = n / (sqrt(v / (1 - beta2^t)) + eps)`` (bias corrected).

Vectors and scalars, which the matrix preconditioners do not cover, take ``D`` as their update.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRAFTS", "graft_direction", "graft_init", "graft_scale"]

GRAFTS = ("none", "sgd", "adagrad", "rmsprop_normalized")


def check_graft(kind: str, beta2: float = 0.5) -> None:
    if kind not in GRAFTS:
        raise ValueError(f"graft must be one of {GRAFTS}, got {kind!r}")
    if kind == "rmsprop_normalized" and not 0.0 < float(beta2) < 1.0:
        raise ValueError(f"graft_beta2 must be in (0, 1) for rmsprop_normalized, got {beta2}")


def graft_init(kind: str, param: Any, dtype: Any) -> Any:
    """The graft's accumulator: the parameter's shape for the diagonal methods, else empty."""
    import jax.numpy as jnp

    if kind in ("adagrad", "rmsprop_normalized"):
        return jnp.zeros(param.shape, dtype)
    return jnp.zeros((0,), dtype)


def graft_direction(kind: str, g: Any, acc: Any, *, beta2: float, eps: float, count: Any) -> tuple[Any, Any]:
    """``(D, new_acc)`` for gradient ``g`` (float32) at accepted step ``count`` (1-based)."""
    import jax.numpy as jnp

    if kind in ("none", "sgd"):
        return g, acc
    if kind == "adagrad":
        acc = acc + g * g
        return g / (jnp.sqrt(acc) + eps), acc
    norm = jnp.linalg.norm(g)
    n = jnp.where(norm > 0, g / jnp.where(norm > 0, norm, 1.0), 0.0)
    acc = beta2 * acc + (1.0 - beta2) * n * n
    corrected = acc / (1.0 - beta2 ** count.astype(g.dtype)) if beta2 < 1.0 else acc
    return n / (jnp.sqrt(corrected) + eps), acc


def graft_scale(preconditioned: Any, graft: Any) -> Any:
    """``preconditioned`` per block (leading axis) rescaled to the Frobenius norm of ``graft``."""
    import jax.numpy as jnp

    axes = tuple(range(1, preconditioned.ndim))

    def norm(x):
        # Scaled by the largest entry first: the squares of a finite 1e20 overflow float32.
        big = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
        safe = jnp.where(big > 0, big, 1.0)
        return big * jnp.sqrt(jnp.sum((x / safe) ** 2, axis=axes, keepdims=True))

    p_norm, g_norm = norm(preconditioned), norm(graft)
    return preconditioned * jnp.where(p_norm > 0, g_norm / jnp.where(p_norm > 0, p_norm, 1.0), 0.0)
