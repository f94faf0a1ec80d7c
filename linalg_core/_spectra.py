"""Matrices with a prescribed spectrum, in plain NumPy.

The building blocks of :mod:`linalg_core.testing`'s hypothesis strategies and of
:mod:`linalg_core.stability`'s sweeps, kept free of hypothesis so a sweep runs where only the
library is installed. Public through both modules (``spectrum_values``,
``matrix_with_spectrum``, ``haar_orthogonal``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Spectral profiles of :func:`spectrum_values` (and of ``linalg_core.testing.spectra``).
SPECTRUM_KINDS = ("geometric", "linear", "clustered", "rank_deficient", "outlier", "flat")


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def spectrum_values(kind: str, n: int, condition: float, *, rank: int | None = None,
                    seed: int | np.random.Generator = 0) -> np.ndarray:
    r"""Eigenvalues in ``[1/condition, 1]``, descending (float64, shape ``(n,)``).

    Parameters
    ----------
    kind : one of :data:`SPECTRUM_KINDS`
        ``geometric`` (``lambda_i = kappa^(-(i-1)/(n-1))``), ``linear``, ``clustered`` (1-4
        clusters of relative width 1e-3 at geometric centres, the count drawn from ``seed``),
        ``outlier`` (1, then a rest decaying from ``2/kappa`` to ``1/kappa``), ``rank_deficient``
        (``rank`` nonzero geometric values, zeros after), ``flat`` (all 1).
    n : int
    condition : float
        ``kappa = lambda_max / lambda_min`` over the nonzero values, ``>= 1``.
    rank : int, optional
        Nonzero values for ``rank_deficient`` (default ``n``).
    seed : int or numpy.random.Generator
        Only ``clustered`` draws.
    """
    if condition < 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    if n == 1:
        return np.ones(1)
    lo = 1.0 / condition
    if kind == "flat":
        return np.ones(n)
    if kind == "geometric":
        return np.geomspace(1.0, lo, n)
    if kind == "linear":
        return np.linspace(1.0, lo, n)
    if kind == "clustered":
        rng = _generator(seed)
        clusters = int(rng.integers(1, min(4, n) + 1))
        centres = np.geomspace(1.0, lo, clusters)
        sizes = np.diff(np.linspace(0, n, clusters + 1).astype(int))
        values = np.concatenate([c * (1 + 1e-3 * rng.uniform(-1, 1, size=s)) for c, s in zip(centres, sizes)])
        return np.sort(np.clip(values, lo, 1.0))[::-1]
    if kind == "outlier":
        rest = np.geomspace(min(2.0, condition), 1.0, n)[1:] / condition
        return np.concatenate([[1.0], rest])
    if kind == "rank_deficient":
        rank = n if rank is None else rank
        values = np.zeros(n)
        values[:rank] = np.geomspace(1.0, lo, rank) if rank > 1 else 1.0
        return values
    raise ValueError(f"kind must be one of {SPECTRUM_KINDS}, got {kind!r}")


def haar_orthogonal(n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A Haar-distributed orthogonal ``n x n`` matrix (float64): QR of a Gaussian, the signs
    fixed by ``diag(R)`` so the distribution is exactly Haar (Mezzadri 2007)."""
    q, r = np.linalg.qr(_generator(seed).standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def symmetric_from(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``Q diag(values) Q^T`` in float64, symmetrised exactly."""
    a = (q * values) @ q.T
    return (a + a.T) / 2


def matrix_with_spectrum(values: Sequence[float] | np.ndarray, seed: int | np.random.Generator = 0,
                         dtype=np.float64) -> np.ndarray:
    """``Q diag(values) Q^T`` with a Haar ``Q`` from ``seed``, formed and symmetrised in float64,
    then cast once to ``dtype``: its float64 spectrum is ``values`` to within ``n eps64``."""
    values = np.asarray(values, np.float64)
    return symmetric_from(values, haar_orthogonal(len(values), seed)).astype(dtype)
