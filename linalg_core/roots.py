"""Inverse p-th roots of symmetric positive (semi)definite matrices, with a fallback chain.

Shampoo-family optimizers spend their time and their numerical failures here: the preconditioner
is ``(L + eps I)^(-1/p)``. An inverse p-th root loses about ``log2(kappa / p)`` bits to rounding
(Anil et al., scalable Shampoo), so in float32 a ridge relative to ``lambda_max`` bounds the
condition number, and every failure is caught and handled instead of returning NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _native
from linalg_core import _validation as check
from linalg_core._torch import accepts_torch

__all__ = ["ROOT_METHODS", "ROOT_STATUS", "RootInfo", "inverse_root"]

#: Codes of ``RootInfo.method``. ``eigh_float64`` and ``previous`` are fallbacks only.
#: (The codes are cpp/roots.h's, read from the compiled module.)
ROOT_METHODS: dict[str, int] = {k: v for k, v in _native.cpu.root_methods.items() if v >= 0}
#: Codes of ``RootInfo.status`` (see :class:`RootInfo`).
ROOT_STATUS: dict[str, int] = dict(_native.cpu.root_status)
_REQUEST = {name: _native.cpu.root_methods[name] for name in ("auto", "eigh", "newton", "newton3")}
_RIDGES: dict[str, int] = dict(_native.cpu.root_ridges)
_INT32_MAX = int(np.iinfo(np.int32).max)


class RootInfo(NamedTuple):
    """Diagnostics of :func:`inverse_root`, arrays of the batch shape (no host sync on JAX).

    Attributes
    ----------
    residual : array
        The true residual ``||X^p (A + eps I) - I||_inf`` of the returned root, evaluated in the
        compute dtype, for ``newton``/``newton3`` (and for every method with
        ``true_residual=True``); otherwise ``-1`` for the eigh methods (exact up to the
        eigensolver's backward error, nothing iterated to measure), and ``-1`` whenever the root
        is ``prev`` or zeros.
    iterations : array of int32
        Iterations spent, failed attempts of the chain included.
    converged : array of bool
        ``status`` is ``ok`` or ``fell_back``: a method of the chain produced the root and it
        meets the documented accuracy (Notes). False for every other status.
    method : array of int32
        The :data:`ROOT_METHODS` code of the method that produced the root.
    status : array of int32
        A :data:`ROOT_STATUS` code: ``ok`` (the requested method), ``fell_back`` (a later method
        of the chain); ``ill_conditioned``: ``lambda_min + ridge <= n eps (lambda_max + ridge)``
        with ``eps`` that of the input dtype, so the dtype does not resolve the smallest
        eigenvalues and the returned (finite) root is not certified; ``non_finite_input``
        (NaN/Inf in ``a`` or ``prev``), ``not_symmetric`` (``max|A - A^T| > 8 n eps max|A|``),
        ``indefinite`` (an eigenvalue below ``-16 n eps lambda_max``) and ``failed`` (every
        method of the chain failed) return ``prev`` (``method = previous``) or zeros when
        ``prev`` is absent or not finite. On the NumPy path non-finite and non-symmetric input
        raise instead.
    lambda_max : array
        ``lambda_max(A)`` as used for the ridge and the scaling (see ``eps``).
    ridge : array
        The ``eps`` actually added to the diagonal.
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    lambda_max: Any
    ridge: Any


@accepts_torch
def inverse_root(
    a: Any,
    p: float,
    *,
    eps: float = 1e-6,
    ridge: str = "relative",
    method: str = "auto",
    prev: Any = None,
    pinv_threshold: float | None = None,
    max_iters: int = 100,
    tol: float | None = None,
    accept: float | None = None,
    accumulate_float64: bool = False,
    true_residual: bool = False,
) -> tuple[Any, RootInfo]:
    r"""Inverse p-th root ``X = (A + eps I)^(-1/p)`` of symmetric PSD matrices.

    Methods:

    ``eigh`` (exact): ``A = V diag(lambda) V^T`` by syevd's algorithm (LAPACK sytrd
    tridiagonalisation, stedc divide and conquer) with the back-transformation done in blocks of
    128 Householder reflectors (the UT transform; LAPACK's ormtr uses 32, and spends half of
    syevd's time there at n = 1024), then ``X = (V f^(1/2)) (V f^(1/2))^T`` by SYRK with
    ``f = (lambda + eps)^(-1/p)``; about ``(4/3 + 2 + 1) n^3`` flops plus the tridiagonal solve.

    ``newton``: the coupled Newton iteration (Iannazzo 2006; Guo & Higham 2006)

    .. math::
        X_0 = z^{1/p} I,\; M_0 = z (A + \epsilon I),\; z = \frac{1 + p}{2 \lambda_{max}},\quad
        T_k = \frac{(p+1) I - M_k}{p},\; X_{k+1} = X_k T_k,\; M_{k+1} = T_k^p M_k,

    quadratically convergent once ``||M_k - I|| < 1`` (the scaled start puts the spectrum of
    ``M_0`` in ``(0, (p+1)/2]``, inside the convergence region ``(0, p+1)``). After the first
    step every eigenvalue of ``M_k`` lies in ``[mu_min, 1]``; the C++ kernel then scales
    ``M_k <- c M_k`` (``X_k <- c^{1/p} X_k``) by the minimax ``c`` for ``[lo, 1]``
    (``f(c lo) = f(c)``, ``f(mu) = mu ((p+1-mu)/p)^p``, ``c < p + 1``), with ``lo`` an upper bound
    on ``mu_min`` from 20 Lanczos steps on ``A`` carried through the same maps: 10 instead of 13
    iterations at ``kappa = 1e4``, never more than unscaled. Only GEMMs (``X_k T_k`` as its lower
    triangle): about ``(3 + log2 p) n^3`` flops per iteration.

    ``newton3``: the third-order coupled variant with ``T_k = I + E/p + (p+1) E^2 / (2 p^2)``,
    ``E = I - M_k`` (the second-order Taylor polynomial of ``M^(-1/p)`` at ``I``), cubically
    convergent: fewer iterations, one more GEMM each.

    ``auto``: ``eigh`` on the CPU, where the decomposition costs a few GEMMs and the iterations
    10-30 iterations of several; on other backends (the portable JAX path,
    :mod:`linalg_core.portable.roots`) ``eigh`` up to ``n = 256`` and ``newton3`` above, whose
    fallback chain skips the float64 link.

    The iterations stop on ``||M_k - I||_inf <= tol`` or when ``||M_k - I||_F`` stops
    decreasing (the rounding floor), keeping the better iterate. ``M_k`` drifts from
    ``X_k^p (A + eps I)`` in low precision, so the returned root is then checked on its true
    residual ``||X^p (A + eps I) - I||_inf`` (``log2 p + 2`` GEMMs, a few percent of the
    iteration). A root whose true residual exceeds ``accept``, that is not finite, or whose
    condition estimate (``(lambda_max + eps) lambda_max(X^p)``) exceeds ``1 / (n eps)`` sends the
    computation down the fallback chain ``newton -> newton3 -> eigh -> eigh in float64 -> prev``;
    ``info.method`` and ``info.status`` say which produced the root. NaN is never returned.

    Scale: ``a`` (and an absolute ridge) is multiplied by a power of two bringing its largest
    entry near 1 (a multiple of ``p`` in the exponent for integer ``p``) and the root by the
    matching power: ``X(c A) = c^(-1/p) X(A)`` without overflow or underflow inside, for any
    finite ``a`` whose root is representable.

    Parameters
    ----------
    a : array, shape (..., n, n)
        Symmetric PSD matrices (float32 or float64; bfloat16/float16 are computed in float32):
        symmetric to ``max|A - A^T| <= 8 n eps max|A|``
        (:func:`linalg_core._validation.symmetry_tolerance`), eigenvalues at least
        ``-16 n eps lambda_max`` (rounding of a PSD matrix formed in the dtype, clipped to 0).
    p : float
        Root order ``> 0`` (an integer ``<= 64`` for the iterations; 1 gives the inverse).
    eps : float
        Ridge. With ``ridge="relative"`` the added ridge is ``eps * lambda_max``, so it scales
        with ``A``: ``lambda_max`` is the largest eigenvalue for the eigh methods and a power
        iteration estimate (a Rayleigh quotient: at most ``lambda_max``; relative change 1e-3
        between steps, at most 50 steps) for the iterations.
    ridge : {"relative", "absolute"}
    method : {"auto", "eigh", "newton", "newton3"}
    prev : array, shape (..., n, n), optional
        A previous root: returned (``method = previous``) when every method fails or ``a`` is
        not finite on the JAX path. It is not a starting point for the iterations: the coupled
        form needs a start that commutes with ``A``, and the uncoupled Newton iteration is
        unstable for ``p > 1`` (Higham, Functions of Matrices, Sec. 7.3).
    pinv_threshold : float, optional
        Pseudo-inverse mode (eigh methods): eigenvalues below ``pinv_threshold * lambda_max``
        are dropped (their root set to 0) and no ridge is added.
    max_iters, tol, accept : optional
        Iteration limit (an integer); stopping tolerance on ``||M - I||_inf`` (default
        ``n eps``); true residual above which an iteration falls back, default
        ``min(0.5, max(sqrt(eps), 64 n eps, 4 n eps kappa))`` with ``kappa`` the condition
        estimate above: ``X^p S`` evaluated in the dtype carries ``~ n eps kappa`` of rounding
        (measured 0.1-1.1 times that for float32 roots), so no smaller residual is attainable.
        Whatever ``tol``, the iteration also stops when ``||M_k - I||_F`` stops decreasing (it
        decreases monotonically in exact arithmetic: the rounding floor is reached).
    accumulate_float64 : bool
        float32 input: run eigh in float64 from the start (the result is float32).
    true_residual : bool
        Also compute ``||X^p (A + eps I) - I||_inf`` (integer ``p``; ``log2 p + 2`` GEMMs).

    Returns
    -------
    root : array, shape (..., n, n)
        float32 or float64 (float32 for lower-precision input).
    info : RootInfo

    Raises
    ------
    ValueError
        Bad shapes, dtypes or options (NumPy path and JAX trace time); on the NumPy path also
        non-finite ``a`` or ``prev`` and non-symmetric ``a`` (on the JAX path these are the
        statuses ``non_finite_input`` and ``not_symmetric``).

    Notes
    -----
    Accuracy (what ``converged`` promises): relative error in the 2-norm at most
    ``8 n eps kappa / p + residual / p`` (plus the ``~2 n eps`` rounding of forming ``X``),
    ``kappa`` the condition number of ``A + eps I`` and
    ``residual`` the reported one (0 for eigh): the eigh root is exact for a perturbation of
    ``A`` by ``c n eps ||A||`` (backward stability), which moves ``(lambda + eps)^(-1/p)`` by at
    most ``1/p`` of its relative size times ``kappa`` (Daleckii-Krein); an iterate with
    ``X^p (A + eps I) = I + R`` is the root times ``(I + R)^(1/p)`` to first order. Conditions
    with ``n eps kappa >= 1`` make the bound vacuous: status ``ill_conditioned``.

    References
    ----------
    B. Iannazzo, "On the Newton method for the matrix p-th root", SIMAX 28 (2006).
    C.-H. Guo, N. J. Higham, "A Schur-Newton method for the matrix p-th root and its inverse",
    SIMAX 28 (2006).
    R. Anil et al., "Scalable second order optimization for deep learning", arXiv:2002.09018.

    Examples
    --------
    >>> import numpy as np, linalg_core as lc
    >>> a = np.diag([4.0, 1.0])
    >>> x, info = lc.inverse_root(a, 2, eps=0.0, ridge="absolute")
    >>> np.round(x, 6).tolist()
    [[0.5, 0.0], [0.0, 1.0]]
    """
    attrs = _attrs(p, eps=eps, ridge=ridge, method=method, pinv_threshold=pinv_threshold, max_iters=max_iters,
                   tol=tol, accept=accept, accumulate_float64=accumulate_float64, true_residual=true_residual,
                   has_previous=prev is not None)
    jax_path = _jax.any_jax(a, prev)
    if not jax_path:
        a = np.asarray(a)
    check.require_floating(a, "a")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"a must have shape (..., n, n), got {tuple(a.shape)}")
    if a.shape[-1] < 1:
        raise ValueError("a must have n >= 1")
    dt = np.dtype(np.float64) if np.dtype(a.dtype) == np.float64 else np.dtype(np.float32)
    if prev is not None:
        if not jax_path:
            prev = np.asarray(prev)
        check.require_floating(prev, "prev")
        if tuple(prev.shape) != tuple(a.shape):
            raise ValueError(f"prev must have the shape of a {tuple(a.shape)}, got {tuple(prev.shape)}")
    batch = tuple(a.shape[:-2])
    if jax_path:
        import jax.numpy as jnp

        a = jnp.asarray(a, dt)
        previous = a if prev is None else jnp.asarray(prev, dt)
        results = [(a.shape, dt), (batch, dt), (batch, dt), (batch, dt),
                   (batch, np.int32), (batch, np.int32), (batch, np.int32)]
        from linalg_core.portable import roots as portable

        root, residual, lmax, added, iters, used, status = _jax.call(
            "linalg_core_inverse_root", results, a, previous, portable=portable.inverse_root, **attrs)
    else:
        a = np.ascontiguousarray(a, dtype=dt)
        previous = None if prev is None else np.ascontiguousarray(prev, dtype=dt)
        from linalg_core._native import cpu

        root, residual, lmax, added, iters, used, status = cpu.inverse_root(a, previous, attrs)
        # The kernel checked finiteness and symmetry (the same rules as _validation's).
        check.raise_if_reported(status, ROOT_STATUS["non_finite_input"], lambda: check.require_finite(a, "a"),
                                lambda: previous is None or check.require_finite(previous, "prev"),
                                message="a or prev contains NaN or Inf")
        check.raise_if_reported(status, ROOT_STATUS["not_symmetric"], lambda: check.require_symmetric(a, "a"),
                                message=f"a must be symmetric (to {check.symmetry_tolerance(dt, a.shape[-1]):.3g} relative)")
    converged = (status == ROOT_STATUS["ok"]) | (status == ROOT_STATUS["fell_back"])
    return root, RootInfo(status=status, converged=converged, iterations=iters, residual=residual, method=used,
                          lambda_max=lmax, ridge=added)


def _attrs(p: float, *, eps: float, ridge: str, method: str, pinv_threshold: float | None, max_iters: int,
           tol: float | None, accept: float | None, accumulate_float64: bool, true_residual: bool,
           has_previous: bool) -> dict[str, Any]:
    """:func:`inverse_root`'s options, validated, as the one attribute dict (the keys are
    ``LC_ROOT_OPTIONS`` of cpp/roots.h, exported as ``root_options``) that the FFI handler, the
    binding and the portable kernel each receive."""
    if method not in _REQUEST:
        raise ValueError(f"method must be one of {sorted(_REQUEST)}, got {method!r}")
    if ridge not in _RIDGES:
        raise ValueError(f"ridge must be 'relative' or 'absolute', got {ridge!r}")
    p = check.positive_number(p, "p")
    if method in ("newton", "newton3") and (p != int(p) or p > 64):
        raise ValueError(f"method={method!r} needs an integer p <= 64, got {p}")
    eps = float(eps)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    pinv = 0.0 if pinv_threshold is None else check.positive_number(pinv_threshold, "pinv_threshold")
    if isinstance(max_iters, bool) or int(max_iters) != max_iters or not 1 <= int(max_iters) <= _INT32_MAX:
        raise ValueError(f"max_iters must be an integer in [1, {_INT32_MAX}], got {max_iters!r}")
    tol = 0.0 if tol is None else check.positive_number(tol, "tol")
    accept = 0.0 if accept is None else check.positive_number(accept, "accept")
    return dict(
        p=np.float64(p), eps=np.float64(eps), ridge=np.int32(_RIDGES[ridge]), pinv_threshold=np.float64(pinv),
        method=np.int32(_REQUEST[method]), max_iters=np.int32(max_iters), tol=np.float64(tol),
        accept=np.float64(accept), accumulate_float64=np.int32(bool(accumulate_float64)),
        true_residual=np.int32(bool(true_residual)), has_previous=np.int32(bool(has_previous)),
    )
