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
from linalg_core._torch import accepts_torch
from linalg_core.fd import FD_STATUS, FDState, fd_apply_inverse_root

__all__ = ["root_times"]


def _working(factor: Any) -> Any:
    """A dense side in the precision it is computed in (bfloat16/float16 in float32)."""
    if factor is None or isinstance(factor, FDState):
        return factor
    return check.at_least_float32(factor if _jax.is_jax_array(factor) else np.asarray(factor))


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


@accepts_torch
def root_times(g: Any, left: Any = None, right: Any = None, *, p: float | None = None,
               eps: float | None = None, return_status: bool = False) -> Any:
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
        float32 or float64 (bfloat16/float16, here and in a dense side, are computed and
        returned in float32).
    left : array (..., m, m), FDState of dimension m, or None
    right : array (..., n, n), FDState of dimension n, or None
    p, eps : float
        Root order and ridge of the sketched sides (required when a side is an FDState).
    return_status : bool
        Also return an :data:`~linalg_core.FD_STATUS` code per batch element: ``non_finite_input``
        (NaN/Inf in ``g`` or a dense side; the JAX path), a sketched side's own status, or
        ``not_representable`` when the product overflows. Such an element's output is zero.

    Returns
    -------
    y : array, shape (..., m, n): batch axes broadcast with those of the factors.
    status : array of int32, shape (...), only with ``return_status=True``.

    Raises
    ------
    ValueError
        Bad shapes or dtypes; NaN/Inf in ``g`` or a dense side (NumPy path); a product that
        overflows the dtype (NumPy path, unless ``return_status``).

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
    g = check.at_least_float32(g)
    m, n = g.shape[-2:]
    _check_side(left, "left", m, p, eps)
    _check_side(right, "right", n, p, eps)
    left, right = _working(left), _working(right)
    if jax_path or any(_jax.any_jax(*(f if isinstance(f, FDState) else (f,))) for f in (left, right)
                       if f is not None):
        import jax.numpy as xp
    else:
        xp = np
        check.require_finite(g, "g")
        for name, f in (("left", left), ("right", right)):
            if f is not None and not isinstance(f, FDState):
                check.require_finite(np.asarray(f), name)
    ok_code, bad_input = FD_STATUS["ok"], FD_STATUS["non_finite_input"]
    status = xp.where(xp.all(xp.isfinite(g), axis=(-2, -1)), ok_code, bad_input)
    y = g
    # An overflowing product is reported as not_representable below, not as NumPy's warning.
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(left, FDState):
            y, st = fd_apply_inverse_root(left, y, p=p, eps=eps, return_status=True)
            status = xp.where(status == ok_code, st, status)
        elif left is not None:
            status = xp.where(xp.all(xp.isfinite(left), axis=(-2, -1)) | (status != ok_code), status, bad_input)
            y = xp.matmul(left, y)
        if isinstance(right, FDState):
            yt, st = fd_apply_inverse_root(right, xp.swapaxes(y, -1, -2), p=p, eps=eps, return_status=True)
            y = xp.swapaxes(yt, -1, -2)
            status = xp.where(status == ok_code, st, status)
        elif right is not None:
            status = xp.where(xp.all(xp.isfinite(right), axis=(-2, -1)) | (status != ok_code), status, bad_input)
            y = xp.matmul(y, right)
    # Finite inputs can still give a product beyond the dtype's range.
    status = xp.broadcast_to(status, y.shape[:-2])
    overflow = (status == ok_code) & ~xp.all(xp.isfinite(y), axis=(-2, -1))
    status = xp.where(overflow, FD_STATUS["not_representable"], status).astype(xp.int32)
    if xp is np and np.any(status != ok_code) and not return_status:
        raise ValueError("root_times: the result is not representable in the dtype (overflow); "
                         "pass return_status=True for a status instead")
    y = xp.where((status == ok_code)[..., None, None], y, xp.zeros((), y.dtype))
    return (y, status) if return_status else y
