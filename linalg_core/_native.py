"""Loads the compiled CPU module and hands it SciPy's LAPACK/BLAS, once, at import.

The kernels call LAPACK through function pointers taken from the ``__pyx_capi__`` capsules of
``scipy.linalg.cython_lapack`` and ``scipy.linalg.cython_blas`` (what jaxlib does), so NumPy, SciPy,
JAX and this library share one OpenBLAS and one thread pool configuration.
"""

from __future__ import annotations

from scipy.linalg import cython_blas, cython_lapack

from linalg_core import _cpu


def _load() -> None:
    capsules = {**cython_blas.__pyx_capi__, **cython_lapack.__pyx_capi__}
    _cpu.load_lapack({name: capsules[name] for name in _cpu.required_lapack_symbols()})
    missing = _cpu.missing_lapack_symbols()
    if missing:  # pragma: no cover - load_lapack raises first
        raise ImportError(f"LAPACK/BLAS routines not resolved: {missing}")


_load()
cpu = _cpu
