r"""Two-sided preconditioning ``L^(-1/p) G R^(-1/p)`` from whatever form the factors' roots take.

Shampoo-type optimizers hold each Kronecker factor's root either as a dense inverse root (from
:func:`linalg_core.inverse_root`) or as an FD sketch whose escaped-mass compensated root is never
formed (:func:`linalg_core.fd_apply_inverse_root`). :func:`root_times` applies any combination to
``G`` without materialising a ``d x d`` matrix for a sketch and without forming ``G``'s transpose
product twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linalg_core import _jax
from linalg_core import _validation as check
from linalg_core.fd import FDState, fd_apply_inverse_root

__all__ = ["root_times"]


def _check_side(factor: Any, name: str, dim: int, p: Any, eps: Any) -> None:
    if factor is None:
        return
    if isinstance(factor, FDState):
        if p is None or eps is None:
            raise ValueError(f"{name} is an FD sketch: pass p= and eps= for its compensated root")
        if factor.basis.shape[-2] != dim:
            raise ValueError(f"{name} sketches d = {factor.basis.shape[-2]}, G needs {dim}")
        return
    check.require_floating(factor, name)
    if np.ndim(factor) < 2 or tuple(np.shape(factor)[-2:]) != (dim, dim):
        raise ValueError(f"{name} must have shape (..., {dim}, {dim}), got {tuple(np.shape(factor))}")


def root_times(g: Any, left: Any = None, right: Any = None, *, p: float | None = None,
               eps: float | None = None) -> Any:
    r"""``left_root @ G @ right_root`` for roots given densely, as FD sketches, or not at all.

    .. math:: Y = \mathcal{L}(G)\,,\quad \mathcal{L}(X) = X_L X,\quad
              Y \leftarrow \mathcal{R}(Y) = Y X_R

    where a dense ``left``/``right`` is the inverse root itself (``X_L = L^(-1/p)``, e.g. from
    :func:`~linalg_core.inverse_root`), an :class:`~linalg_core.FDState` stands for its
    escaped-mass compensated root ``(U diag(lambda) U^T + (rho + eps) I)^(-1/p)`` applied in
    factored form (Feinberg et al. 2023, their Alg. 3), and ``None`` is the identity.

    Parameters
    ----------
    g : array, shape (..., m, n)
    left : array (..., m, m), FDState of dimension m, or None
    right : array (..., n, n), FDState of dimension n, or None
    p, eps : float
        Root order and ridge of the sketched sides (required when a side is an FDState).

    Returns
    -------
    array, shape (..., m, n): batch axes broadcast with those of the factors.

    Notes
    -----
    Cost: a dense side ``2 m^2 n`` (left) or ``2 m n^2`` (right) flops; a sketched side
    ``4 d l k`` with ``k`` the other dimension; no ``d x d`` matrix is formed for a sketch.
    """
    jax_path = _jax.is_jax_array(g)
    if not jax_path:
        g = np.asarray(g)
    check.require_floating(g, "g")
    check.require_ndim(g, 2, "g", "(..., m, n)")
    m, n = g.shape[-2:]
    _check_side(left, "left", m, p, eps)
    _check_side(right, "right", n, p, eps)
    if jax_path or any(_jax.any_jax(*(f if isinstance(f, FDState) else (f,))) for f in (left, right)
                       if f is not None):
        import jax.numpy as xp
    else:
        xp = np
    y = g
    if isinstance(left, FDState):
        y = fd_apply_inverse_root(left, y, p=p, eps=eps)
    elif left is not None:
        y = xp.matmul(left, y)
    if isinstance(right, FDState):
        y = xp.swapaxes(fd_apply_inverse_root(right, xp.swapaxes(y, -1, -2), p=p, eps=eps), -1, -2)
    elif right is not None:
        y = xp.matmul(y, right)
    return y
