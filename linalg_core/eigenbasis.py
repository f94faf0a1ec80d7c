r"""Eigenbasis refresh: keep an orthonormal eigenbasis of a slowly changing symmetric matrix.

SOAP and eigenvalue-corrected Shampoo run Adam in the eigenbasis of Shampoo's factor statistics
and refresh that basis every few steps. A full eigendecomposition each time is the expensive
way; the cheap way is a few steps of subspace (power) iteration from the previous basis,
``Q <- qr(A Q)``, with the eigenvalue estimates ``diag(Q^T A Q)`` and the permutation that sorts
them returned so that the optimizer's moments follow the basis columns (Vyas et al. 2024).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _validation as check
from linalg_core._native import cpu
from linalg_core._torch import accepts_torch

__all__ = ["EIGENBASIS_METHODS", "EIGENBASIS_STATUS", "EigenbasisInfo", "eigenbasis_refresh",
           "orthonormality_tol"]

#: Codes of :attr:`EigenbasisInfo.status`, defined once in cpp/eigenbasis.h and read from the
#: compiled module: ``ok`` (passed the a-posteriori check), ``non_finite_input`` (NaN/Inf in ``a``
#: or ``basis``), ``not_symmetric`` (``max|A - A^T| > 8 n eps max|A|``), ``invalid_basis``
#: (``||(Q^T Q - I) X||_max > 16 n eps`` on 4 sign probes ``X``), ``failed`` (LAPACK failed or the check did not hold).
EIGENBASIS_STATUS: dict[str, int] = dict(cpu.eigenbasis_status)
#: Codes of :attr:`EigenbasisInfo.method`: ``power`` (``steps`` power steps), ``skipped`` (the
#: incoming basis passed the skip test), ``eigh`` (full eigendecomposition: no basis given, or the
#: fallback), ``input`` (status not ok: the incoming basis, or the identity, returned).
EIGENBASIS_METHODS: dict[str, int] = dict(cpu.eigenbasis_methods)


def orthonormality_tol(dtype: Any, n: int) -> float:
    """``16 n eps``: the bound on the orthonormality probe ``||(Q^T Q - I) X||_max`` for an
    incoming and a returned basis (Householder QR loses ``O(n eps)`` orthogonality; 16 is the
    margin)."""
    return float(cpu.eigenbasis_orthonormality_tol(np.dtype(check.state_dtype(dtype)), int(n)))


class EigenbasisInfo(NamedTuple):
    """Diagnostics of :func:`eigenbasis_refresh`, arrays of the batch shape (no host sync on JAX).

    Attributes
    ----------
    status : array of int32
        An :data:`EIGENBASIS_STATUS` code.
    converged : array of bool
        Status ``ok`` and, when ``fallback_tol`` is given, ``residual <= fallback_tol``.
    iterations : array of int32
        Power steps taken (0 when skipped, without a basis, or on failure).
    residual : array
        Relative off-diagonal mass ``||B - diag(B)||_F / ||B||_F`` of ``B = Q^T A Q`` for the
        returned ``Q`` (what the next skip test would measure on an unchanged ``A``); -1 unless
        status ``ok``. After power steps or ``eigh`` it is computed as
        ``sqrt(||A Q||_F^2 - sum d^2) / ||A Q||_F`` (one product fewer; equal for orthonormal
        ``Q``), which resolves masses down to about ``sqrt(||Q^T Q - I||)``: ~1e-3 in float32,
        ~1e-7 in float64. For ``skipped`` it is ``off_diagonal``.
    method : array of int32
        An :data:`EIGENBASIS_METHODS` code.
    off_diagonal : array
        The same mass for the incoming basis, from the explicit ``B = Q^T (A Q)`` (accurate to the
        rounding of two products), computed when ``skip_tol`` is given, else -1.
    skipped : array of bool
        ``method == skipped``.
    orthogonality : array
        ``||(Q^T Q - I) X||_max`` of the returned basis for 4 fixed sign vectors ``X`` (an
        ``O(n^2)`` probe: ``E ||(Q^T Q - I) x||^2 = ||Q^T Q - I||_F^2`` for random signs); -1
        unless status ``ok``.
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    off_diagonal: Any
    skipped: Any
    orthogonality: Any


def _tolerance(value: Any, name: str) -> float:
    """``None`` -> 0 (off); otherwise a positive finite number."""
    return 0.0 if value is None else check.positive_number(value, name)


@accepts_torch
def eigenbasis_refresh(
    a: Any,
    basis: Any,
    *,
    steps: int = 1,
    skip_tol: float | None = None,
    fallback_tol: float | None = None,
) -> tuple[Any, Any, Any, EigenbasisInfo]:
    r"""Refresh an orthonormal eigenbasis of a symmetric matrix by power steps from the previous one.

    For each matrix of the batch, with ``Q`` the incoming ``basis``:

    1. skip test (``skip_tol`` given): with ``B = Q^T A Q``,
       ``off(Q) = ||B - diag(B)||_F / ||B||_F``; when ``off(Q) <= skip_tol`` no power step is
       taken (method ``skipped``): the incoming columns are returned, only reordered by ``perm``
       (bit for bit: no arithmetic touches them), with fresh eigenvalue estimates;
    2. ``steps`` power steps ``Q <- qr(A Q)`` (Cholesky QR twice, Yamamoto et al. 2015, checked
       by the orthonormality probes below; Householder QR, LAPACK ``geqrf`` + ``orgqr``, where it
       fails them), each column's sign chosen so that ``diag(R) >= 0``. QR determines ``Q`` only up to column signs;
       with this choice an exact eigenbasis of a positive definite ``A`` is a fixed point
       (``A Q = Q diag(lambda)`` is already a QR factorisation with ``R >= 0``), so refreshing an
       unchanged basis returns it up to rounding instead of flipping columns at random;
    3. fallback (``fallback_tol`` given): when ``off(Q) > fallback_tol`` after the steps, the basis
       has drifted too far for power steps and a full ``eigh`` (LAPACK ``syevd``) replaces it
       (method ``eigh``, ``iterations = steps``). ``basis=None`` always takes this path (to
       initialise an optimizer). Eigenvector signs: each column's largest-magnitude entry is
       positive;
    4. eigenvalue estimates ``d = diag(Q^T A Q)`` sorted descending (stable), the columns with them:

       .. math:: \mathrm{basis}[..., :, i] = Q[..., :, \mathrm{perm}[i]],\qquad
                 \mathrm{eigvals}[..., i] = d[\mathrm{perm}[i]],

       i.e. ``new[..., i] = old[..., perm[i]]`` where "old" is the column order before sorting:
       the incoming order for ``power`` and ``skipped`` (a QR step keeps column ``j`` the
       refinement of column ``j``), so moments kept per basis column are permuted the same way
       (``v_new = v_old[..., perm]`` along the basis axis); for ``eigh`` it is ``syevd``'s
       ascending order, unrelated to the incoming columns.

    Status ``ok`` is earned a posteriori, in ``O(n^2)`` beyond the products already formed:
    finite outputs, orthonormality ``||(Q^T Q - I) X||_max <= 16 n eps`` on 4 fixed sign probes
    ``X`` (the bound on Householder QR's loss of orthogonality with a margin; the same test
    validates the incoming basis), and the invariants of an orthogonal congruence
    ``|sum d - tr A|``, ``| ||A Q||_F - ||A||_F |`` within ``(e + 16 n eps) ||A||_F`` (``e``
    the probes' estimate of ``||Q^T Q - I||_F``). Otherwise the
    incoming basis (the identity without one, or where it is not finite) is returned with zero
    eigenvalues and the identity permutation (method ``input``). ``A`` is scaled by a power of two
    to ``max|A|`` in ``[1/2, 1)`` first (exact) and the eigenvalues scaled back, so ``c A`` gives
    eigenvalues ``c`` times those of ``A`` for any ``c`` the dtype holds (1e+-30 in float32,
    1e+-200 in float64). ``A = 0``: the incoming basis (or the identity) is returned, eigenvalues 0.

    Cost per matrix: one ``n x n`` GEMM ``A Q`` and one QR per step (Cholesky QR twice: two
    SYRKs, two Cholesky factorisations and two triangular solves, ``10/3 n^3`` flops in level-3
    BLAS, the first Gram matrix in double for float32; Householder ``geqrf`` + ``orgqr`` where
    ``A Q`` is too ill-conditioned for it, about ``kappa > 1e7``), one GEMM ``A Q`` for the estimates of the returned basis, ``O(n^2)``
    checks; the skip test adds ``Q^T (A Q)`` (its ``A Q`` is reused by the first step). A full
    ``eigh`` is ``O(n^3)`` too, with a memory-bound tridiagonal reduction; which is faster depends
    on the machine (bench/bench_eigenbasis.py measures both).

    Parameters
    ----------
    a : array, shape (..., n, n)
        Symmetric (to ``8 n eps max|a|``; it is symmetrised), float32 or float64 (bfloat16 and
        float16 are computed in float32). NumPy or JAX.
    basis : array, shape (..., n, n), or None
        Orthonormal columns (``||(Q^T Q - I) X||_max <= 16 n eps``). ``None``: a full ``eigh``.
    steps : int >= 0
        Power steps (0: only re-estimate, sort, and test the fallback).
    skip_tol : float > 0 or None
        Skip the power steps when the incoming basis's relative off-diagonal mass is at most it.
    fallback_tol : float > 0 or None
        Full ``eigh`` when the relative off-diagonal mass after the steps exceeds it.

    Returns
    -------
    basis : (..., n, n)
    eigvals : (..., n), descending
    perm : (..., n) int32
    info : EigenbasisInfo

    Raises
    ------
    ValueError
        Wrong shape/dtype, a bad option; on the NumPy path also NaN/Inf in ``a`` or ``basis``,
        a non-symmetric ``a`` and a basis that is not orthonormal (status ``invalid_basis`` on the
        JAX path, where value-dependent problems are status codes).

    References
    ----------
    N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson, S. Kakade, "SOAP:
    Improving and stabilizing Shampoo using Adam", arXiv:2409.11321, 2024 (Algorithm 4).
    G. H. Golub, C. F. Van Loan, "Matrix Computations", 4th ed., Sec. 8.2.4 (orthogonal iteration).
    Y. Yamamoto, Y. Nakatsukasa, Y. Yanagisawa, T. Fukaya, "Roundoff error analysis of the
    CholeskyQR2 algorithm", Electron. Trans. Numer. Anal. 44, 2015.

    Examples
    --------
    >>> import numpy as np, linalg_core as lc
    >>> g = np.random.default_rng(0).standard_normal((6, 6))
    >>> a = g @ g.T
    >>> q, lam, perm, info = lc.eigenbasis_refresh(a, None)
    >>> a2 = 0.9 * a + 0.1 * np.outer(g[0], g[0])
    >>> q2, lam2, perm2, info2 = lc.eigenbasis_refresh(a2, q, steps=2)
    >>> bool(np.all(np.diff(lam2) <= 0))
    True
    """
    jax_path = _jax.any_jax(a, basis)
    if not jax_path:
        a = np.asarray(a)
        basis = None if basis is None else np.asarray(basis)
    check.require_floating(a, "a")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"Expected 'a' array with square slices (..., n, n), got a.shape={tuple(a.shape)}")
    n = int(a.shape[-1])
    if n < 1:
        raise ValueError(f"'a' must have n >= 1, got a.shape={tuple(a.shape)}")
    if basis is not None:
        check.require_floating(basis, "basis")
        if tuple(basis.shape) != tuple(a.shape):
            raise ValueError(f"'basis' must have the shape of 'a', {tuple(a.shape)}, got {tuple(basis.shape)}")
    steps = check.integer(steps, "steps", minimum=0)
    attrs = {"steps": np.int64(steps), "skip_tol": np.float64(_tolerance(skip_tol, "skip_tol")),
             "fallback_tol": np.float64(_tolerance(fallback_tol, "fallback_tol")),
             "has_basis": np.int64(basis is not None)}
    dt = np.dtype(np.float64) if np.dtype(a.dtype) == np.float64 else np.dtype(np.float32)
    batch = tuple(a.shape[:-2])
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import eigenbasis as portable

        a = jnp.asarray(a, dt)
        q = jnp.zeros_like(a) if basis is None else jnp.asarray(basis, dt)
        outs = _jax.call(
            "linalg_core_eigenbasis_refresh",
            [(batch + (n, n), dt), (batch + (n,), dt), (batch + (n,), np.int32), (batch, dt), (batch, dt),
             (batch, dt), (batch, np.int32), (batch, np.int32), (batch, np.int32)],
            a, q, portable=portable.refresh, **attrs)
    else:
        a = np.ascontiguousarray(a, dtype=dt)
        if basis is not None:
            basis = np.ascontiguousarray(basis, dtype=dt)
        outs = cpu.eigenbasis_refresh(a, basis, attrs)
        # The kernel scans finiteness and symmetry itself; NumPy scans only to name the argument.
        check.raise_if_reported(outs[-1], EIGENBASIS_STATUS["non_finite_input"], lambda: check.require_finite(a, "a"),
                                lambda: basis is None or check.require_finite(basis, "basis"),
                                message="'a' or 'basis' contains NaN or Inf")
        check.raise_if_reported(outs[-1], EIGENBASIS_STATUS["not_symmetric"], lambda: check.require_symmetric(a, "a"),
                                message="'a' is not symmetric")
        if np.any(outs[-1] == EIGENBASIS_STATUS["invalid_basis"]):
            raise ValueError(f"'basis' must have orthonormal columns: ||(basis^T basis - I) X||_max exceeds "
                             f"{orthonormality_tol(dt, n):.3g} (16 n eps for n={n}, dtype {dt})")
    q, eigvals, perm, off, residual, orth, iterations, method, status = outs
    ok = status == EIGENBASIS_STATUS["ok"]
    converged = ok & (residual <= attrs["fallback_tol"]) if fallback_tol is not None else ok
    info = EigenbasisInfo(status, converged, iterations, residual, method, off,
                          method == EIGENBASIS_METHODS["skipped"], orth)
    return q, eigvals, perm, info
