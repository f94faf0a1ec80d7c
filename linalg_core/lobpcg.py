"""LOBPCG for the largest eigenpairs of a symmetric matrix, warm-started, never falsely converged."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from linalg_core import _jax, _native
from linalg_core import _validation as check
from linalg_core._torch import accepts_torch

__all__ = ["LOBPCG_STATUS", "LobpcgInfo", "lobpcg"]

#: SVQB drops directions with squared length below ``SVQB_DROP * eps`` relative to unit columns,
#: and ``tol`` is raised to ``TOL_FLOOR * n * eps``: the C++ kernel's constants (cpp/lobpcg.h),
#: read here so the portable kernel uses the same.
SVQB_DROP = float(_native.cpu.lobpcg_svqb_drop)
TOL_FLOOR = float(_native.cpu.lobpcg_tol_floor)

#: Codes of ``LobpcgInfo.status`` (cpp/lobpcg.h ``Status``). ``non_finite`` (NaN/Inf in ``a``,
#: ``x0`` or a product) and ``non_symmetric`` (JAX path; the NumPy path raises) return zeros.
LOBPCG_STATUS: dict[str, int] = dict(_native.cpu.lobpcg_status)


class LobpcgInfo(NamedTuple):
    """Diagnostics of :func:`lobpcg` (arrays of the batch shape; no host sync on the JAX path).

    Attributes
    ----------
    residual : array, shape (..., k)
        ``||A x_j - theta_j x_j|| / ||A||_est`` per pair, from an explicit product ``A X``
        (``||A||_est``: the largest ``||A s|| / ||s||`` over the columns of every explicit product,
        a lower bound of ``||A||_2``; the dense path uses ``||A||_2`` from its full spectrum).
    iterations : array of int32
        LOBPCG iterations (one product with at most k columns each).
    converged : array of bool
        Every residual ``<= tol`` (and the a-posteriori checks of :func:`lobpcg` passed);
        ``False`` otherwise (the best pairs found are returned, or zeros for ``non_finite`` and
        ``non_symmetric``).
    method : array of int32
        0 LOBPCG, 1 the dense eigensolver (``5 k >= n``).
    status : array of int32
        A :data:`LOBPCG_STATUS` code.
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any


@accepts_torch
def lobpcg(
    a: Any | Callable[[np.ndarray], np.ndarray],
    x0: Any,
    *,
    k: int | None = None,
    tol: float | None = None,
    max_iters: int = 500,
    guard: int | None = None,
) -> tuple[Any, Any, LobpcgInfo]:
    r"""The ``k`` largest eigenpairs of a symmetric matrix by LOBPCG (Knyazev 2001).

    Each iteration multiplies ``A`` with the residuals of the unconverged pairs only (at most
    ``k`` columns: soft locking), orthogonalises them against ``X``, and solves the Rayleigh-Ritz
    problem on ``S = [X, W, P]`` made orthonormal by SVQB (an eigendecomposition of ``S^T S``;
    directions that lost their length to rounding are dropped instead of breaking the
    Cholesky factorisation). ``A X`` and ``A P`` are updated implicitly through the Ritz
    rotations and recomputed explicitly before convergence is declared, and every 10 iterations
    once the residuals approach ``sqrt(eps)`` (where the implicit update's drift could matter).

    Convergence: ``||A x_j - theta_j x_j|| <= tol * ||A||_est`` for every pair, ``||A||_est``
    the largest ``||A s|| / ||s||`` over the columns ``s`` of every explicit product (a lower
    bound of ``||A||_2`` that a diverged Ritz value cannot inflate), so the test depends neither
    on ``n`` nor on the scale of ``A``, and zero eigenvalues (rank-deficient ``A`` with
    ``k > rank``) converge. It is declared only on an explicit ``A X``, with ``X`` orthonormal to
    ``tol`` and every Ritz value equal to its Rayleigh quotient to ``tol ||A||_est``; then each
    returned eigenvalue is within ``sqrt(k) tol ||A||_2`` of one of ``A``'s. Default
    ``tol = 10 sqrt(eps)``; any ``tol`` is raised to the attainable floor
    ``8 n eps`` (:data:`TOL_FLOOR` ``n eps``: a computed product ``A x`` carries an error up to
    ``~n eps ||A||``, so residuals below it are rounding noise). The operator is scaled by a
    power of two (exactly) from its first product, so any finite scale of ``A`` gives the same
    answer up to that scale. For ``5 k >= n`` the dense eigensolver answers, checked by its
    explicit residuals against the same tolerance.

    Parameters
    ----------
    a : array, shape (..., n, n), or callable
        Symmetric matrix (only symmetric input is meaningful), or a function
        ``X (n, c) -> A X (n, c)`` (no batch): a NumPy function with a NumPy ``x0`` (the C++
        kernel calls it), a JAX function with a JAX ``x0`` (then the same algorithm runs in JAX,
        `lax.while_loop` with static shapes, traceable under ``jit``).
    x0 : array, shape (..., n, m), m >= k
        Starting block (warm start: the previous answer).
    k : int, optional
        Number of pairs (default ``m``).
    tol : float, optional
    max_iters : int
    guard : int, optional
        Extra block columns iterated but not required to converge (default ``max(2, k // 2)``,
        capped at ``n/3 - k``): convergence then depends on ``lambda_{k+guard+1} / lambda_k``
        rather than ``lambda_{k+1} / lambda_k``, at ``(k + guard) / k`` times the work per
        iteration. The columns of ``x0`` beyond ``k`` seed them.

    Returns
    -------
    eigvals : (..., k) descending, eigvecs : (..., n, k) orthonormal, info : LobpcgInfo

    Raises
    ------
    ValueError
        (NumPy path) NaN/Inf in ``a`` or ``x0``, a non-symmetric ``a`` (beyond
        :func:`linalg_core._validation.symmetry_tolerance`), a matvec ``a`` returning NaN/Inf or
        the wrong shape; wrong shapes or dtypes on either path. The JAX path reports
        value-dependent problems in ``info.status`` instead (outputs zero).

    References
    ----------
    A. V. Knyazev, "Toward the optimal preconditioned eigensolver: LOBPCG", SISC 23 (2001).
    J. A. Duersch, M. Shao, C. Yang, M. Gu, "A robust and efficient implementation of LOBPCG",
    SISC 40 (2018).
    """
    callable_a = callable(a) and not hasattr(a, "shape")
    jax_path = (not callable_a and _jax.any_jax(a)) or _jax.any_jax(x0)
    if not jax_path:
        x0 = np.asarray(x0)
    check.require_floating(x0, "x0")
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (..., n, m), got {tuple(x0.shape)}")
    n, m = x0.shape[-2:]
    k = m if k is None else int(k)
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k must satisfy 1 <= k <= min(m, n) = {min(m, n)} (x0 has m = {m} columns), got {k}")
    tol = 0.0 if tol is None else check.positive_number(tol, "tol")
    if int(max_iters) < 0:
        raise ValueError(f"max_iters must be >= 0, got {max_iters}")
    guard = max(2, k // 2) if guard is None else int(guard)
    if guard < 0:
        raise ValueError(f"guard must be >= 0, got {guard}")
    dt = np.dtype(np.float64) if np.dtype(x0.dtype) == np.float64 else np.dtype(np.float32)
    batch = tuple(x0.shape[:-2])
    if callable_a:
        if batch:
            raise ValueError(f"a callable a takes an unbatched x0 (n, m), got {tuple(x0.shape)}")
        if jax_path:
            # A JAX function cannot cross the FFI boundary: the same algorithm runs in JAX.
            import jax.numpy as jnp

            from linalg_core._lobpcg_jax import lobpcg_matvec

            w, v, res, iters, status = lobpcg_matvec(a, jnp.asarray(x0, dt), k, tol, int(max_iters), guard)
            return w, v, LobpcgInfo(status, status == 0, iters, res, jnp.zeros((), jnp.int32))
    else:
        if not jax_path:
            a = np.asarray(a)
        check.require_floating(a, "a")
        if tuple(a.shape) != batch + (n, n):
            raise ValueError(f"a must have shape {batch + (n, n)} to match x0 {tuple(x0.shape)}, got {tuple(a.shape)}")
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import lobpcg as portable

        w, v, res, iters, status, dense = _jax.call(
            "linalg_core_lobpcg",
            [(batch + (k,), dt), (batch + (n, k), dt), (batch + (k,), dt),
             (batch, np.int32), (batch, np.int32), (batch, np.int32)],
            jnp.asarray(a, dt), jnp.asarray(x0, dt), portable=portable.lobpcg, k=np.int64(k),
            max_iters=np.int64(max_iters), tol=np.float64(tol), guard=np.int64(guard))
    else:
        from linalg_core._native import cpu

        x0 = np.ascontiguousarray(x0, dtype=dt)
        check.require_finite(x0, "x0")
        if not callable_a:
            a = np.ascontiguousarray(a, dtype=dt)
        w, v, res, iters, status, dense = cpu.lobpcg(a, x0, k, int(max_iters), tol, guard, callable_a)
        if callable_a:
            check.raise_if_reported(
                status, LOBPCG_STATUS["non_symmetric"],
                message="a (matvec) must be a symmetric operator: the matrix assembled from its "
                        f"products with the unit vectors is not symmetric to 8 n eps (n={n})")
        else:
            # The kernel checked finiteness and symmetry (cpp/symmetry.h, the rule of _validation).
            check.raise_if_reported(status, LOBPCG_STATUS["non_finite"], lambda: check.require_finite(a, "a"),
                                    message="a contains NaN or Inf")
            check.raise_if_reported(status, LOBPCG_STATUS["non_symmetric"], lambda: check.require_symmetric(a, "a"),
                                    message=f"a must be symmetric (to {check.symmetry_tolerance(dt, n):.3g} relative)")
    return w, v, LobpcgInfo(status, status == 0, iters, res, dense)
