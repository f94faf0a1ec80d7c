"""Hypothesis strategies for property-testing linear algebra: PSD/SPD matrices with prescribed
spectra, orthogonal matrices, and Frequent-Directions-style streams.

Every random draw goes through hypothesis (a drawn integer seeds a local NumPy generator), so
examples shrink, replay and derandomize. Matrices are built in float64 as ``Q diag(lambda) Q^T``
with a Haar-distributed ``Q`` and cast once to the requested dtype, and the exact spectrum is
available for oracles (``*_with_spectrum``).

Import only NumPy and hypothesis: usable without JAX or the compiled kernels. The plain-NumPy
builders underneath (:func:`spectrum_values`, :func:`haar_orthogonal`,
:func:`matrix_with_spectrum`) are the ones ``linalg_core.stability`` sweeps with, for sweeps of
one's own code.

Examples
--------
>>> from hypothesis import given
>>> from linalg_core import testing as lct
>>> @given(lct.spd_matrices_with_spectrum(8, kind="geometric", condition=1e4))
... def test_solve(case):
...     a, eigenvalues = case
...     ...
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from linalg_core._spectra import (
    SPECTRUM_KINDS,
    haar_orthogonal,
    matrix_with_spectrum,
    spectrum_values,
    symmetric_from,
)

__all__ = [
    "SPECTRUM_KINDS",
    "FDStream",
    "batch_shapes",
    "dtypes",
    "eigen_tolerance",
    "fd_streams",
    "haar_orthogonal",
    "matrix_with_spectrum",
    "orthogonal_matrices",
    "psd_matrices",
    "psd_matrices_with_spectrum",
    "register_profiles",
    "spd_matrices",
    "spd_matrices_with_spectrum",
    "spectra",
    "spectrum_values",
]

_FULL_RANK_KINDS = tuple(k for k in SPECTRUM_KINDS if k != "rank_deficient")
# Largest condition number drawn by default: float32 keeps ~1 significant digit of the smallest
# eigenvalue at kappa = 1e6 (eps32 ~ 6e-8).
_DEFAULT_MAX_CONDITION = {np.dtype(np.float32): 1e6, np.dtype(np.float64): 1e12}


def _as_strategy(value: Any) -> st.SearchStrategy:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


def register_profiles() -> None:
    """Registers hypothesis profiles ``ci`` (25 derandomized examples), ``dev`` (50) and
    ``thorough`` (300). Load one with ``settings.load_profile(name)``."""
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                              suppress_health_check=quiet, print_blob=True)
    settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=quiet)
    settings.register_profile("thorough", max_examples=300, deadline=None,
                              suppress_health_check=quiet)


def dtypes() -> st.SearchStrategy[type]:
    """float32 or float64."""
    return st.sampled_from([np.float32, np.float64])


def batch_shapes(max_dims: int = 2, max_side: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    """Batch shapes with up to ``max_dims`` axes of length 1..``max_side``, ``()`` included."""
    return st.lists(st.integers(1, max_side), max_size=max_dims).map(tuple)


def eigen_tolerance(dtype: Any, n: int, norm: float, c: float = 10.0) -> float:
    r"""Backward-error bound ``c n eps(dtype) ||A||`` for symmetric eigensolvers.

    Householder tridiagonalisation and QR-type eigensolvers are backward stable: the computed
    eigenvalues are exact for ``A + E`` with ``||E||_2 <= p(n) eps ||A||_2``, ``p(n)`` a modest
    multiple of ``n`` (Higham, *Accuracy and Stability of Numerical Algorithms*, Sec. 19), so by
    Weyl's inequality every eigenvalue moves by at most that much. ``c = 10`` covers LAPACK's
    constants for the sizes tests use.
    """
    return float(c * n * np.finfo(dtype).eps * norm)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


@st.composite
def spectra(
    draw,
    n: int | st.SearchStrategy[int],
    *,
    kind: str | None = None,
    condition: float | None = None,
    scale: float | str | None = None,
    rank: int | None = None,
    dtype: Any = np.float64,
) -> np.ndarray:
    r"""Eigenvalues ``lambda_1 >= ... >= lambda_n >= 0`` (float64) with a prescribed profile.

    Parameters
    ----------
    n : int or strategy of int
        Number of eigenvalues.
    kind : one of :data:`SPECTRUM_KINDS`, optional
        ``geometric`` (``lambda_i = kappa^(-(i-1)/(n-1))``), ``linear``, ``clustered`` (1-4
        clusters of relative width 1e-3 at geometric centres), ``outlier`` (one eigenvalue
        1 above a rest decaying from ``2/kappa`` to ``1/kappa``), ``rank_deficient`` (``rank`` nonzero geometric
        values, zeros after), ``flat`` (all equal). Drawn when omitted.
    condition : float, optional
        ``kappa = lambda_max / lambda_min`` over the nonzero eigenvalues. Drawn log-uniformly in
        ``[1, 1e6]`` (float32) or ``[1, 1e12]`` (float64) when omitted.
    scale : float or "wide", optional
        Multiplies the spectrum (``lambda_max = scale``). ``"wide"`` draws it log-uniformly in
        ``[1e-12, 1e12]``; default 1.
    rank : int, optional
        Nonzero eigenvalues for ``rank_deficient`` (drawn in ``[1, n-1]`` when omitted).
    dtype : float32 or float64
        Caps the drawn condition number so the smallest eigenvalue stays meaningful in it.
    """
    n = draw(_as_strategy(n))
    kind = kind if kind is not None else draw(st.sampled_from(SPECTRUM_KINDS))
    if kind == "rank_deficient" and n == 1:
        kind = "flat"
    rng = np.random.default_rng(draw(_seeds()))
    cap = _DEFAULT_MAX_CONDITION[np.dtype(dtype)]
    if condition is None:
        condition = float(np.exp(draw(st.floats(0.0, float(np.log(cap))))))
    if condition < 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    if kind == "rank_deficient" and rank is None:
        rank = draw(st.integers(1, n - 1))
    if scale == "wide":
        scale = float(np.exp(draw(st.floats(float(np.log(1e-12)), float(np.log(1e12))))))
    values = spectrum_values(kind, n, condition, rank=rank or n, seed=rng)
    return (1.0 if scale is None else float(scale)) * values


@st.composite
def orthogonal_matrices(draw, n: int | st.SearchStrategy[int], *, dtype: Any = np.float64) -> np.ndarray:
    """Haar-distributed orthogonal ``n x n`` matrices (QR of a Gaussian, signs fixed by diag(R))."""
    n = draw(_as_strategy(n))
    return haar_orthogonal(n, np.random.default_rng(draw(_seeds()))).astype(dtype)


@st.composite
def psd_matrices_with_spectrum(
    draw,
    n: int | st.SearchStrategy[int],
    *,
    spectrum: st.SearchStrategy[np.ndarray] | None = None,
    kind: str | None = None,
    condition: float | None = None,
    scale: float | str | None = None,
    rank: int | None = None,
    dtype: Any = np.float64,
    batch_shape: Sequence[int] | st.SearchStrategy[tuple[int, ...]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, eigenvalues)``: symmetric PSD ``A = Q diag(lambda) Q^T`` and its exact descending
    spectrum (float64, shape ``batch_shape + (n,)``).

    ``A`` is formed in float64, symmetrised exactly and cast to ``dtype`` (shape
    ``batch_shape + (n, n)``); each batch element gets its own draw. ``spectrum`` (a strategy of
    eigenvalue arrays) overrides ``kind``/``condition``/``scale``/``rank``, see :func:`spectra`.
    """
    n = draw(_as_strategy(n))
    batch = tuple(draw(_as_strategy(batch_shape)))
    mats, values = [], []
    for _ in range(int(np.prod(batch, dtype=np.int64))):
        lam = draw(spectrum) if spectrum is not None else draw(
            spectra(n, kind=kind, condition=condition, scale=scale, rank=rank, dtype=dtype))
        lam = np.sort(np.asarray(lam, np.float64))[::-1]
        if lam.shape != (n,) or lam[-1] < 0:
            raise ValueError("spectrum must draw n nonnegative eigenvalues")
        q = draw(orthogonal_matrices(n))
        mats.append(symmetric_from(lam, q))
        values.append(lam)
    a = np.stack(mats).reshape(batch + (n, n)).astype(dtype)
    return a, np.stack(values).reshape(batch + (n,))


def psd_matrices(n, **kwargs) -> st.SearchStrategy[np.ndarray]:
    """Symmetric PSD matrices; the arguments of :func:`psd_matrices_with_spectrum`."""
    return psd_matrices_with_spectrum(n, **kwargs).map(lambda pair: pair[0])


def spd_matrices_with_spectrum(n, *, kind: str | None = None, **kwargs):
    """As :func:`psd_matrices_with_spectrum`, never rank-deficient: ``lambda_min > 0``."""
    if kind == "rank_deficient":
        raise ValueError("spd matrices are not rank_deficient")
    if kind is None and kwargs.get("spectrum") is None:
        return st.sampled_from(_FULL_RANK_KINDS).flatmap(
            lambda k: psd_matrices_with_spectrum(n, kind=k, **kwargs))
    return psd_matrices_with_spectrum(n, kind=kind, **kwargs)


def spd_matrices(n, **kwargs) -> st.SearchStrategy[np.ndarray]:
    """Symmetric positive definite matrices; the arguments of :func:`spd_matrices_with_spectrum`."""
    return spd_matrices_with_spectrum(n, **kwargs).map(lambda pair: pair[0])


class FDStream(NamedTuple):
    """A stream of PSD terms for Frequent Directions.

    Attributes
    ----------
    terms : list of arrays
        ``(d, r_t)`` factors (term = ``G G^T``) when ``form == "factor"``, else dense symmetric
        PSD ``(d, d)`` matrices.
    form : {"factor", "matrix"}
    """

    terms: list
    form: str


@st.composite
def fd_streams(
    draw,
    dim: int | st.SearchStrategy[int],
    *,
    steps: int | st.SearchStrategy[int],
    term_rank: int | st.SearchStrategy[int] | None = None,
    kind: str | None = None,
    dtype: Any = np.float64,
    form: str = "factor",
) -> FDStream:
    r"""Streams ``g_1 .. g_T`` whose expected covariance has a prescribed spectrum.

    One covariance ``Sigma = Q diag(lambda) Q^T`` is drawn per stream (``lambda`` from
    :func:`spectra` with ``kind``, from flat to fast-decaying), then each term is
    ``G_t = Q diag(lambda)^(1/2) N_t / sqrt(r_t)`` with a Gaussian ``N_t`` (``d x r_t``), so
    ``E[G_t G_t^T] = Sigma``. ``form="matrix"`` gives ``G_t G_t^T`` instead (formed in float64,
    then cast). ``term_rank`` is ``r_t`` (drawn in ``[1, d]`` per term when omitted).
    """
    if form not in ("factor", "matrix"):
        raise ValueError(f"form must be 'factor' or 'matrix', got {form!r}")
    d = draw(_as_strategy(dim))
    t_count = draw(_as_strategy(steps))
    lam = draw(spectra(d, kind=kind, dtype=dtype))
    q = draw(orthogonal_matrices(d))
    rng = np.random.default_rng(draw(_seeds()))
    root = q * np.sqrt(lam)
    terms = []
    for _ in range(t_count):
        r = draw(_as_strategy(term_rank)) if term_rank is not None else draw(st.integers(1, d))
        g = root @ rng.standard_normal((d, r)) / np.sqrt(r)
        if form == "matrix":
            g = g @ g.T
            g = (g + g.T) / 2
        terms.append(g.astype(dtype))
    return FDStream(terms, form)
