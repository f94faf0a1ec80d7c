"""Argument checks shared by the public functions: errors name the argument, expected and got."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def state_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """The compute dtype for a state: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"{name} must be float32 or float64, got {dtype!r}") from err
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {dt}")
    return dt


def require_floating(x: Any, name: str) -> None:
    dt = np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype
    if not (np.issubdtype(dt, np.floating) or dt.name == "bfloat16"):
        raise ValueError(f"{name} must be a floating-point array, got dtype {dt}")


def at_least_float32(x: Any) -> Any:
    """bfloat16/float16 arrays (NumPy or JAX) as float32, others unchanged: low-precision inputs
    are computed, and returned, in float32 (DESIGN.md: they accumulate in float32)."""
    return x.astype(np.float32) if np.dtype(x.dtype).itemsize < 4 else x


def require_ndim(x: Any, at_least: int, name: str, layout: str) -> None:
    if np.ndim(x) < at_least:
        raise ValueError(f"{name} must have shape {layout}, got shape {np.shape(x)}")


def broadcast_batch(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Broadcasts the batch shapes of several arguments, naming them on failure."""
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError as err:
        described = ", ".join(f"{k} batch shape {v}" for k, v in shapes.items())
        raise ValueError(f"batch shapes do not broadcast: {described}") from err


def raise_if_reported(status: Any, code: int, *checks: Callable[[], None], message: str) -> None:
    """NumPy path: where a kernel checked an input contract itself (finiteness, symmetry) and
    reported ``code`` for some batch element, the Python checks run only then, to raise the
    ``ValueError`` that names the argument, with ``message`` as the last resort. The kernels' scans
    are single vectorised passes inside the call; the same checks in NumPy on every call would
    add several passes and input-sized temporaries (``abs(x - x^T)`` over every slice)."""
    if np.any(np.asarray(status) == code):
        for run in checks:
            run()
        raise ValueError(message)


def require_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")


def positive_number(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}") from err
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def symmetry_tolerance(dtype: Any, n: int) -> float:
    """Relative tolerance on ``max|A - A^T| / max|A|`` below which ``A`` counts as symmetric.

    A matrix formed symmetrically in exact arithmetic (``G G^T``, ``Q diag(l) Q^T``) but evaluated
    in floating point differs from its transpose by at most ``~n eps max|A|`` (each entry is an
    inner product of length ``n``); ``8 n eps`` leaves a margin for sums of several such terms.
    """
    return 8.0 * max(int(n), 1) * float(np.finfo(np.dtype(dtype)).eps)


def require_symmetric(x: np.ndarray, name: str) -> None:
    """``ValueError`` naming ``x`` unless every ``(..., n, n)`` slice is symmetric to
    :func:`symmetry_tolerance` (relative to its largest entry). ``x`` must be finite."""
    n = x.shape[-1]
    if n < 2 or x.size == 0:
        return
    scale = np.max(np.abs(x), axis=(-2, -1))
    # Inf - Inf is NaN, which passes the test below: non-finite input is the kernel's to report,
    # without NumPy's warning on the way.
    with np.errstate(invalid="ignore"):
        asym = np.max(np.abs(x - np.swapaxes(x, -1, -2)), axis=(-2, -1))
    tol = symmetry_tolerance(x.dtype, n)
    bad = asym > tol * scale
    if np.any(bad):
        worst = float(np.max(np.where(scale > 0, asym / np.where(scale > 0, scale, 1), 0)))
        raise ValueError(
            f"{name} must be symmetric: max|{name} - {name}^T| / max|{name}| = {worst:.3g} exceeds "
            f"{tol:.3g} (8 n eps for n={n}, dtype {np.dtype(x.dtype)})")


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int`` when it is one (Python or NumPy integer, not ``bool``); otherwise a
    ``ValueError`` naming ``name``: a float such as 2.7 is never silently truncated."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"'{name}' must be an integer, got {value!r} ({type(value).__name__})")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"'{name}' must be >= {minimum}, got {v}")
    return v
