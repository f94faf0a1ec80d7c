"""Power-of-two scaling of operands, so that kernels never see magnitudes near overflow/underflow.

Multiplying by a power of two is exact (no rounding) unless a result leaves the normal range, so
a kernel run on ``c A`` with ``max|c A|`` in ``[1/2, 1)`` gives exactly ``c`` times its answer on
``A`` wherever the answer is homogeneous in ``A``, while squares, Gram matrices and norms inside the
kernel stay far from ``float32``'s 3.4e38 and 1.2e-38 (or ``float64``'s 1.8e308 and 2.2e-308).
"""

from __future__ import annotations

from typing import Any


def power_of_two_scale(x: Any, xp: Any, axes: tuple[int, ...] = (-2, -1)) -> Any:
    """``c = 2^-e`` per batch element with ``max|x| = f 2^e``, ``f`` in ``[1/2, 1)`` (1 for a
    zero or non-finite slice; ``e`` clipped so that ``c`` is a finite normal number); shape:
    ``x.shape`` without ``axes``. One pass over ``x``."""
    import numpy as np

    big = xp.max(xp.abs(x), axis=axes) if x.size else xp.zeros(x.shape[: x.ndim - len(axes)], x.dtype)
    usable = (big > 0) & xp.isfinite(big)
    _, e = xp.frexp(xp.where(usable, big, 1.0))
    # c itself must be a normal number (XLA flushes subnormals to zero) and finite: for
    # subnormal input the scaling is partial, for input near overflow max|c x| <= 4.
    info = np.finfo(np.dtype(x.dtype))
    e = xp.clip(-e, info.minexp, info.maxexp - 1)
    return xp.where(usable, xp.ldexp(xp.ones_like(big), e), 1.0).astype(x.dtype)
