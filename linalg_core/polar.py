r"""Polar factor: the orthogonal factor ``q = U V^T`` of ``a = U S V^T`` (Muon's kernel).

Odd-polynomial Newton-Schulz iterations ``X <- a X + (b G + c G^2) X`` (``G = X X^T`` on the
smaller Gram side) with a coefficient schedule, built here once and handed to whichever kernel
runs (C++ on the CPU, :mod:`linalg_core.portable.polar` elsewhere):

- ``"quintic"``: the classic fixed quintic ``(3.4445, -4.7750, 2.0315)`` used by Muon;
- ``"polar_express"``: per step the minimax odd quintic for the current interval of singular
  values (Amsel, Persson, Musco, Gower 2025), derived here by a Remez exchange in float64
  (:func:`minimax_odd_quintic`), with its safety factor;
- ``"table"``: a user-given ``(steps, 3)`` table.

Each fixed schedule has a *band*: the exact image of ``[lower_bound, 1]`` under the composite
polynomial (:func:`polar_schedule`), where the singular values of ``q`` land for every input
whose scaled singular values lie in ``[lower_bound, 1]`` (the start scaling divides by an upper
bound on ``||a||_2``, so this holds when ``cond(a) <= 1 / (lower_bound k^(1/8))``). The classic
quintic never drives them to 1 (its band after 5 steps is about ``[0.47, 1.20]``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _validation as check
from linalg_core._native import cpu
from linalg_core._torch import accepts_torch

__all__ = [
    "CLASSIC_QUINTIC",
    "POLAR_METHODS",
    "POLAR_STATUS",
    "PolarInfo",
    "PolarSchedule",
    "minimax_odd_quintic",
    "polar",
    "polar_schedule",
]

#: Status codes, defined once in cpp/polar.h (``LC_POLAR_STATUS``) and read from the module:
#: ``ok`` the check for the request passed (fixed schedule: every singular value of ``q``
#: certified inside the band; ``tol``: residual <= tol; ``svd``: residual <= tol);
#: ``non_finite_input`` NaN/Inf in ``a`` (JAX path; ``q = 0``); ``zero_input`` ``a = 0``
#: (``q = 0``, residual 1); ``not_converged`` the check failed and ``fallback=False``: ``q`` is
#: the finite last iterate with its certified bounds; ``fell_back`` the check failed and ``q`` is
#: the SVD polar factor; ``failed`` the SVD failed or the iterate left the convergence region
#: (``q = 0``).
POLAR_STATUS: dict[str, int] = dict(cpu.polar_status)
#: Which computation produced ``q`` (cpp/polar.h ``LC_POLAR_METHODS``).
POLAR_METHODS: dict[str, int] = dict(cpu.polar_methods)

#: (a, b, c) of the classic Muon quintic (Jordan et al. 2024).
CLASSIC_QUINTIC = (3.4445, -4.7750, 2.0315)
#: Newton-Schulz quintic with p(1) = 1, p'(1) = p''(1) = 0: the limit of the minimax quintic on an
#: interval shrinking to 1, used once the schedule's interval is too narrow for the Remez solve.
_NEWTON_QUINTIC = (15 / 8, -10 / 8, 3 / 8)
_DEFAULT_STEPS = 5
_DEFAULT_LOWER = 1e-3
_SAFETY = 1.01
# The band is widened by 1% on each side for the check: the iteration's own rounding
# (a few sqrt(K) eps per step) and the O(k eps) of the Cholesky certificate stay far inside it.
_BAND_MARGIN = 0.01
_METHOD_NAMES = ("auto", "quintic", "polar_express", "table", "svd")


class PolarInfo(NamedTuple):
    """Diagnostics of :func:`polar` (arrays of the batch shape).

    Attributes
    ----------
    status : array of int32
        A :data:`POLAR_STATUS` code.
    converged : array of bool
        ``residual <= tol`` (the given ``tol``, or the default ``16 (sqrt(m) + sqrt(n)) eps``, a
        few times the rounding floor of the check). The fixed quintic schedules are not meant to
        converge: there ``status == ok`` (band met) with ``converged == False`` is the normal
        outcome.
    iterations : array of int32
        Newton-Schulz steps run (schedule plus converging steps; 0 for ``svd``).
    residual : array
        Certified upper bound on ``max_i |sigma_i(q) - 1|``, from ``r >= ||q q^T - I||_2`` on the
        small side (``min(||E||_F, ||E^(2^j)||_F^(2^-j))`` plus a rounding allowance
        ``4 (sqrt(m) + sqrt(n)) eps`` for forming ``q q^T`` in the working precision, in the
        probabilistic rounding model) and, for fixed schedules, the certified band; 1 for ``q = 0``.
    method : array of int32
        :data:`POLAR_METHODS`: ``newton_schulz`` or ``svd`` (requested, or the fallback).
    sigma_lower, sigma_upper : array
        Certified bounds on the singular values of ``q``.
    norm_bound : array
        The upper bound on ``||a||_2`` used for the start scaling (``||a||_2`` itself for the SVD
        method; 0 for zero or non-finite input).
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    sigma_lower: Any
    sigma_upper: Any
    norm_bound: Any


class PolarSchedule(NamedTuple):
    """A Newton-Schulz coefficient schedule and its singular-value band.

    Attributes
    ----------
    coefficients : ndarray, shape (steps, 3), float64
        ``(a, b, c)`` per step: ``p_t(s) = a s + b s^3 + c s^5``.
    lower_bound : float
        The design lower bound ``l`` on the scaled singular values (upper bound 1).
    band : tuple of float
        ``(lo, hi)``: the exact image of ``[l, 1]`` under ``p_T o ... o p_1``.
    """

    coefficients: np.ndarray
    lower_bound: float
    band: tuple[float, float]


def _quintic(coef, x):
    a, b, c = coef
    return x * (a + x * x * (b + c * x * x))


def _critical_points(coef, lo, hi):
    """Positive critical points of ``p`` inside ``(lo, hi)``: ``p'(x) = a + 3 b y + 5 c y^2``, ``y = x^2``."""
    a, b, c = (float(v) for v in coef)
    if c == 0 and b == 0:
        return []
    ys = np.roots([5 * c, 3 * b, a]) if c != 0 else np.array([-a / (3 * b)])
    return sorted(float(np.sqrt(y.real)) for y in np.atleast_1d(ys)
                  if abs(y.imag) <= 1e-12 * max(abs(y), 1e-300) and lo * lo < y.real < hi * hi)


def _image(coef, lo, hi):
    """The exact image ``[min p, max p]`` of ``[lo, hi]`` (endpoints and critical points)."""
    values = [_quintic(coef, x) for x in [lo, hi, *_critical_points(coef, lo, hi)]]
    return min(values), max(values)


def minimax_odd_quintic(lower: float, upper: float = 1.0, *, max_exchanges: int = 60):
    r"""The odd quintic ``p(x) = a x + b x^3 + c x^5`` minimising ``max_{[lower, upper]} |1 - p|``.

    ``{x, x^3, x^5}`` is a Chebyshev system on ``(0, inf)``, so the optimum equioscillates: at
    ``lower < x_1 < x_2 < upper`` (``x_1, x_2`` the critical points of ``p``)
    ``1 - p = E, -E, E, -E``. Remez exchange in float64: solve the 4 x 4 system for ``(a, b, c, E)``
    on the reference, move the interior points to the critical points (closed form: ``p'`` is a
    quadratic in ``x^2``), repeat until the reference stops moving.

    Returns
    -------
    coefficients : ndarray (3,), error : float, reference : ndarray (4,)
    """
    lo, hi = float(lower), float(upper)
    if not (0 < lo < hi):
        raise ValueError(f"need 0 < lower < upper, got lower={lower!r}, upper={upper!r}")
    signs = (-1.0) ** np.arange(4)
    # Start from the Chebyshev extrema of degree 3 mapped to the interval.
    x = lo + (hi - lo) * (1 - np.cos(np.pi * np.arange(4) / 3)) / 2
    for _ in range(max_exchanges):
        system = np.stack([x, x ** 3, x ** 5, signs], axis=1)
        a, b, c, err = np.linalg.solve(system, np.ones(4))
        crit = _critical_points((a, b, c), lo, hi)
        if len(crit) != 2:
            raise ArithmeticError(f"Remez exchange on [{lo}, {hi}] lost its reference")
        new = np.array([lo, crit[0], crit[1], hi])
        moved = np.max(np.abs(new - x))
        x = new
        if moved <= 1e-13 * hi:
            break
    system = np.stack([x, x ** 3, x ** 5, signs], axis=1)
    a, b, c, err = np.linalg.solve(system, np.ones(4))
    return np.array([a, b, c]), float(abs(err)), x


def _polar_express(steps: int, lower: float) -> np.ndarray:
    """Per step the minimax quintic on the current interval ``[l_t, u_t]``, applied as
    ``p_t(x / 1.01)`` on all but the last step (the safety factor: singular values that rounding
    pushes up to 1% beyond ``u_t`` are still mapped into the next interval); the next interval is
    the exact image of the current one."""
    rows = []
    lo, hi = lower, 1.0
    for t in range(steps):
        if hi - lo > 1e-6 * hi:
            try:
                coef, _, _ = minimax_odd_quintic(lo, hi)
            except ArithmeticError:
                coef = np.array(_NEWTON_QUINTIC)
        else:
            coef = np.array(_NEWTON_QUINTIC)
        if t < steps - 1:
            coef = coef / np.array([_SAFETY, _SAFETY ** 3, _SAFETY ** 5])
        rows.append(coef)
        lo, hi = _image(coef, lo, hi)
    return np.array(rows, dtype=np.float64).reshape(steps, 3)


def polar_schedule(method: str = "polar_express", steps: int | None = None, *,
                   lower_bound: float = _DEFAULT_LOWER, coefficients: Any = None) -> PolarSchedule:
    """The coefficient table and band of a Newton-Schulz schedule (see the module docstring).

    Parameters
    ----------
    method : {"polar_express", "quintic", "table"}
    steps : int, optional
        Default 5 (``len(coefficients)`` for ``"table"``).
    lower_bound : float in (0, 1)
        The design lower bound on the scaled singular values (Polar Express optimises for it;
        every band is the image of ``[lower_bound, 1]``).
    coefficients : array (steps, 3), only for ``"table"``.
    """
    lower = float(lower_bound)
    if not (1e-12 <= lower < 1):
        raise ValueError(f"'lower_bound' must lie in [1e-12, 1), got {lower_bound!r}")
    if method == "table":
        if coefficients is None:
            raise ValueError("method='table' needs 'coefficients', an array of shape (steps, 3)")
        table = np.asarray(coefficients, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != 3 or not np.isfinite(table).all():
            raise ValueError(f"'coefficients' must be a finite array of shape (steps, 3), got shape {table.shape}")
        if steps is not None and check.integer(steps, "steps", minimum=0) != table.shape[0]:
            raise ValueError(f"'steps'={steps} does not match len(coefficients)={table.shape[0]}")
    else:
        if coefficients is not None:
            raise ValueError(f"'coefficients' is only for method='table', got method={method!r}")
        steps = _DEFAULT_STEPS if steps is None else check.integer(steps, "steps", minimum=0)
        if method == "quintic":
            table = np.tile(np.array(CLASSIC_QUINTIC), (steps, 1)).reshape(steps, 3)
        elif method == "polar_express":
            table = _polar_express(steps, lower)
        else:
            raise ValueError(f"schedule method must be 'polar_express', 'quintic' or 'table', got {method!r}")
    lo, hi = lower, 1.0
    for row in table:
        lo, hi = _image(row, lo, hi)
    return PolarSchedule(table, lower, (float(lo), float(hi)))


def _default_tol(dtype, m, n) -> float:
    """A few times the rounding floor of the residual check: 16 (sqrt(m) + sqrt(n)) eps."""
    return min(16.0 * (np.sqrt(float(m)) + np.sqrt(float(n))) * float(np.finfo(dtype).eps), 0.5)


@accepts_torch
def polar(a: Any, *, method: str = "auto", steps: int | None = None, coefficients: Any = None,
          lower_bound: float = _DEFAULT_LOWER, tol: float | None = None, max_iters: int = 30,
          fallback: bool = True) -> tuple[Any, PolarInfo]:
    r"""The orthogonal polar factor ``q = U V^T`` of ``a = U S V^T``, batched.

    Newton-Schulz with a coefficient schedule on the smaller Gram side: for ``k = min(m, n)``
    the iterate ``X`` is ``k x K`` (``a`` or its transpose) and each step is

    .. math:: G = X X^\top,\quad X \leftarrow a_t X + (b_t G + c_t G^2) X,

    which maps every singular value ``s`` to ``p_t(s) = a_t s + b_t s^3 + c_t s^5``. ``X_0 = a /
    bound`` with ``bound >= ||a||_2`` the smaller of ``||G_0^2||_F^{1/4}`` (from the first step's
    own products) and ``sqrt(||a||_1 ||a||_inf)``, so the scaled singular values lie in ``(0, 1]``
    where every schedule converges (after an exact power-of-two prescaling, so that inputs near
    the dtype's range limits work). With ``tol`` a converging phase follows: cubic steps
    ``X <- 1.5 X - 0.5 G X`` (convergent for ``s`` in ``(0, sqrt 3)``) until the certified
    residual is at most ``tol``.

    The status is earned by an a-posteriori check on ``q`` (:class:`PolarInfo`): fixed schedules
    need every singular value certified (two Cholesky factorisations of ``q q^T`` shifted) inside
    the schedule's band (:func:`polar_schedule`, widened by 1%); ``tol`` needs the residual bound
    ``<= tol``. When the check fails, ``fallback=True`` returns the SVD polar factor (status
    ``fell_back``), ``fallback=False`` the finite last iterate (``not_converged``).

    Parameters
    ----------
    a : array, shape (..., m, n)
        float32 or float64 (bfloat16/float16 computed in float32, ``q`` returned in their dtype).
        Finite: ``ValueError`` on the NumPy path, status ``non_finite_input`` on the JAX path.
    method : {"auto", "quintic", "polar_express", "table", "svd"}
        ``"auto"`` is ``"polar_express"``; ``"svd"`` the exact factor from a thin SVD (the
        oracle).
    steps : int, optional
        Schedule steps (default 5; for ``"table"`` the table's length). 0 is allowed with ``tol``
        (cubic steps from the scaled input only).
    coefficients : array (steps, 3), only for ``method="table"``.
    lower_bound : float
        The design lower bound on the scaled singular values (default 1e-3): Polar Express is
        optimised for ``[lower_bound, 1]`` and every band is the image of that interval.
    tol : float in (0, 1), optional
        Converging mode: drive every singular value to 1 within ``tol``. Values below the
        check's rounding floor (about ``2 (sqrt(m) + sqrt(n)) eps``) cannot be certified: the
        iteration stops when the bound stops halving and the check fails.
    max_iters : int
        Converging steps at most.
    fallback : bool
        The SVD polar factor when the check fails.

    Returns
    -------
    q : array, shape (..., m, n)
        ``q = 0`` for zero input (status ``zero_input``) and, on the JAX path, for non-finite
        input.
    info : PolarInfo

    Raises
    ------
    ValueError
        ``a`` not floating, fewer than 2 dimensions, an empty matrix axis, NaN/Inf (NumPy path);
        an unknown method, bad ``steps``/``coefficients``/``tol``/``lower_bound``/``max_iters``.

    Notes
    -----
    Cost per step ``k^2 K`` (SYRK) ``+ k^3`` (SYRK for ``G^2``) ``+ 2 k^2 K`` (GEMM) flops, against
    ``4 k^2 K + 2 k^3`` for the same step written with general matrix products. The check costs
    one SYRK ``k^2 K`` and two Cholesky factorisations ``k^3 / 3`` (the residual's repeated
    squarings, ``~6 k^3``, run only when ``||E||_F`` cannot decide the tolerance).

    References
    ----------
    K. Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024.
    N. Amsel, D. Persson, C. Musco, R. M. Gower, "The Polar Express: optimal matrix sign methods
    and their application to the Muon algorithm", arXiv:2505.16932, 2025.
    N. J. Higham, "Functions of Matrices", SIAM 2008, Ch. 8 (Newton-Schulz, the polar factor).

    Examples
    --------
    >>> import numpy as np, linalg_core as lc
    >>> a = np.random.default_rng(0).standard_normal((64, 32))
    >>> q, info = lc.polar(a, tol=1e-10)
    >>> bool(info.converged), np.allclose(q.T @ q, np.eye(32))
    (True, True)
    """
    jax_path = _jax.is_jax_array(a)
    if not jax_path:
        a = np.asarray(a)
    check.require_floating(a, "a")
    if a.ndim < 2:
        raise ValueError(f"a must have shape (..., m, n), got shape {tuple(a.shape)}")
    m, n = int(a.shape[-2]), int(a.shape[-1])
    if m < 1 or n < 1:
        raise ValueError(f"a must have non-empty matrix axes, got shape {tuple(a.shape)}")
    if method not in _METHOD_NAMES:
        raise ValueError(f"'method' must be one of {_METHOD_NAMES}, got {method!r}")
    max_iters = check.integer(max_iters, "max_iters", minimum=0)
    if tol is not None:
        tol = float(check.positive_number(tol, "tol"))
        if tol >= 1:
            raise ValueError(f"'tol' must lie in (0, 1), got {tol!r}")
    in_dtype = np.dtype(a.dtype)
    dt = np.dtype(np.float64) if in_dtype == np.float64 else np.dtype(np.float32)
    report_tol = tol if tol is not None else _default_tol(dt, m, n)
    if method == "svd":
        if steps is not None or coefficients is not None:
            raise ValueError("method='svd' takes no 'steps' or 'coefficients'")
        table, band = np.zeros((0, 3)), (0.0, 1.0)
    else:
        schedule = polar_schedule("polar_express" if method == "auto" else method, steps,
                                  lower_bound=lower_bound, coefficients=coefficients)
        table, band = schedule.coefficients, schedule.band
        if table.shape[0] == 0 and tol is None:
            raise ValueError("'steps' must be >= 1 without 'tol' (a fixed schedule of no steps)")
    attrs = dict(
        schedule=np.ascontiguousarray(table.reshape(-1), dtype=np.float64),
        svd=np.int32(method == "svd"), converge=np.int32(tol is not None), tol=np.float64(report_tol),
        max_iters=np.int32(max_iters), fallback=np.int32(bool(fallback)),
        band_lower=np.float64(band[0] * (1 - _BAND_MARGIN)), band_upper=np.float64(band[1] * (1 + _BAND_MARGIN)),
    )
    batch = tuple(a.shape[:-2])
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import polar as portable

        results = [((*batch, m, n), dt)] + [(batch, dt)] * 4 + [(batch, np.int32)] * 3
        q, residual, lower, upper, norm, iterations, used, status = _jax.call(
            "linalg_core_polar", results, jnp.asarray(a, dt), portable=portable.polar, **attrs)
        q = q.astype(in_dtype)
    else:
        a = np.ascontiguousarray(a, dtype=dt)
        check.require_finite(a, "a")
        q, residual, lower, upper, norm, iterations, used, status = cpu.polar(a, attrs)
        q = q.astype(in_dtype, copy=False)
    return q, PolarInfo(status, residual <= report_tol, iterations, residual, used, lower, upper, norm)
