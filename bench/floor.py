"""The floor of a benchmark case: the BLAS/LAPACK calls its algorithm cannot avoid, timed alone.

Each factory returns a callable that runs one such call (SciPy's wrappers of the same OpenBLAS
the kernels call) on inputs of the case's shapes; a suite adds them to a case as methods named
``floor: <what>``, so they are timed in the same run, and `bench.harness.floor_multiples` reports
our time as a multiple of their sum. Where LAPACK's routine is not wrapped by SciPy, the stand-in
is a call with the same flop count, named so in the method name (``~`` in front). A kernel that
runs a problem on one BLAS thread (cpp/blas_threads.h) has its floor timed on one too
(`on_threads`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack

_PREFIX = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}


def _rng(seed: int = 20261202) -> np.random.Generator:
    return np.random.default_rng(seed)


def _routine(module, name: str, dtype) -> Callable:
    return getattr(module, _PREFIX[np.dtype(dtype)] + name)


def _fortran(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a)


def gemm(m: int, k: int, n: int, dtype=np.float32) -> Callable[[], object]:
    """C = A B with A m x k, B k x n: 2 m k n flops."""
    rng = _rng()
    a = _fortran(rng.standard_normal((m, k)).astype(dtype))
    b = _fortran(rng.standard_normal((k, n)).astype(dtype))
    f = _routine(blas, "gemm", dtype)
    return lambda: f(1.0, a, b)


def syrk(n: int, k: int, dtype=np.float32) -> Callable[[], object]:
    """C = A A^T (one triangle) with A n x k: n^2 k flops."""
    a = _fortran(_rng().standard_normal((n, k)).astype(dtype))
    f = _routine(blas, "syrk", dtype)
    return lambda: f(1.0, a)


def _spd(n: int, dtype) -> np.ndarray:
    g = _rng().standard_normal((n, n))
    return _fortran((g @ g.T / n + np.eye(n)).astype(dtype))


def sytrd(n: int, dtype=np.float32, a: np.ndarray | None = None) -> Callable[[], object]:
    """Householder tridiagonalisation of a symmetric n x n matrix (``a``, or a random SPD one):
    4/3 n^3 flops."""
    a = _spd(n, dtype) if a is None else _fortran(np.asarray(a, dtype))
    f = _routine(lapack, "sytrd", dtype)
    lwork = int(_routine(lapack, "sytrd_lwork", dtype)(n)[0])
    return lambda: f(a, lwork=lwork)


def tridiagonal_eigh(n: int, dtype=np.float32, a: np.ndarray | None = None) -> Callable[[], object]:
    """Eigenvalues and eigenvectors, by divide and conquer (``stevd``, which is ``stedc`` for
    this input), of the tridiagonal matrix ``sytrd`` makes of ``a`` (or of a random SPD matrix):
    the deflation, and so the cost, depends on the spectrum."""
    a = _spd(n, dtype) if a is None else _fortran(np.asarray(a, dtype))
    lwork = int(_routine(lapack, "sytrd_lwork", dtype)(n)[0])
    _, d, e, _, _ = _routine(lapack, "sytrd", dtype)(a, lwork=lwork)
    f = _routine(lapack, "stevd", dtype)
    return lambda: f(d, e, compute_v=1)


def syevd(n: int, dtype=np.float32, a: np.ndarray | None = None) -> Callable[[], object]:
    """Every eigenpair of a symmetric n x n matrix (``a``, or a random SPD one) by ``syevd``."""
    a = _spd(n, dtype) if a is None else _fortran(np.asarray(a, dtype))
    f = _routine(lapack, "syevd", dtype)
    return lambda: f(a, compute_v=1, lower=1)


def potrf(n: int, dtype=np.float32) -> Callable[[], object]:
    """Cholesky factorisation of an SPD n x n matrix: n^3 / 3 flops."""
    a = _spd(n, dtype)
    f = _routine(lapack, "potrf", dtype)
    return lambda: f(a, lower=0, clean=0)


def geqrf(m: int, n: int, dtype=np.float32) -> Callable[[], object]:
    """Householder QR of an m x n matrix (the factored form, no Q): 2 m n^2 - 2/3 n^3 flops."""
    a = _fortran(_rng().standard_normal((m, n)).astype(dtype))
    f = _routine(lapack, "geqrf", dtype)
    lwork = _qr_lwork(m, n, dtype)
    return lambda: f(a, lwork=lwork)


def _qr_lwork(m: int, n: int, dtype) -> int:
    """The optimal workspace of geqrf: SciPy's default is the minimal one, with which LAPACK
    falls back to its unblocked (BLAS-2) algorithm."""
    return int(_routine(lapack, "geqrf_lwork", dtype)(m, n)[0])


def gesdd(m: int, n: int, dtype=np.float32) -> Callable[[], object]:
    """Thin SVD of an m x n matrix by divide and conquer, singular vectors included."""
    a = _fortran(_rng().standard_normal((m, n)).astype(dtype))
    f = _routine(lapack, "gesdd", dtype)
    # The optimal workspace (SciPy's default, the minimal one, makes gesdd several times slower).
    lwork = int(_routine(lapack, "gesdd_lwork", dtype)(m, n, compute_uv=1, full_matrices=0)[0])
    return lambda: f(a, compute_uv=1, full_matrices=0, lwork=lwork)


def getrf(m: int, n: int, dtype=np.float32) -> Callable[[], object]:
    """LU factorisation with partial pivoting of an m x n matrix: m n^2 - n^3 / 3 flops (m >= n)."""
    a = _fortran(_rng().standard_normal((m, n)).astype(dtype))
    f = _routine(lapack, "getrf", dtype)
    return lambda: f(a)


def householder_q(m: int, n: int, dtype=np.float32) -> Callable[[], object]:
    """The orthonormal Q (m x n) of an m x n matrix: ``geqrf`` then ``orgqr``, 4 m n^2 - 4/3 n^3
    flops."""
    a = _fortran(_rng().standard_normal((m, n)).astype(dtype))
    qr, orgqr = _routine(lapack, "geqrf", dtype), _routine(lapack, "orgqr", dtype)
    qr_lwork = _qr_lwork(m, n, dtype)
    factored, tau, _, _ = qr(a, lwork=qr_lwork)
    q_lwork = int(orgqr(factored, tau, lwork=-1)[1][0])  # workspace query

    def run():
        factored, tau, _, _ = qr(a, lwork=qr_lwork)
        return orgqr(factored, tau, lwork=q_lwork)

    return run


def repeated(call: Callable[[], object], times: int) -> Callable[[], object]:
    """``call`` run ``times`` times in a row: a floor call that the algorithm makes once per
    iteration, for the iterations the case's own run counted."""

    def run():
        for _ in range(times):
            call()

    return run


def small_problem_threads(rows: int) -> int | None:
    """The BLAS threads the kernels' small-problem policy (cpp/blas_threads.h,
    ``SmallProblemBlasThreads``) gives a problem of ``rows`` rows: one up to 512, else
    OpenBLAS's own count (None)."""
    return 1 if rows <= 512 else None


def on_threads(call: Callable[[], object], threads: int | None) -> Callable[[], object]:
    """``call`` with BLAS limited to ``threads`` threads (None: as it is), as the kernel runs the
    same calls: one BLAS thread against OpenBLAS's threaded calls at a few hundred rows is not a
    floor of the same work."""
    if threads is None:
        return call
    import threadpoolctl

    controller = threadpoolctl.ThreadpoolController()

    def run():
        with controller.limit(limits=threads, user_api="blas"):
            return call()

    return run


def sequence(*calls: Callable[[], object]) -> Callable[[], object]:
    """The calls run in order, timed as one floor entry (a method whose floor is many small calls
    of several kinds)."""

    def run():
        for call in calls:
            call()

    return run


def of(method: str, call: str) -> str:
    """The method name of a floor call that belongs to one of our methods only (``floor: <method>:
    <call>``), for cases whose methods differ in what they cannot avoid (an eigendecomposition
    against Newton iterations, a cold against a warm start). A floor named ``floor: <call>``
    (no method) belongs to every method of its case."""
    return f"floor: {method}: {call}"


def products(n: int, widths, dtype=np.float64) -> Callable[[], object]:
    """A X for an n x n A and blocks X of the given column counts, in that order: an iterative
    solver's products with its operator, as it made them."""
    rng = _rng()
    widths = [int(w) for w in widths]
    a = _fortran(rng.standard_normal((n, n)).astype(dtype))
    x = _fortran(rng.standard_normal((n, max(widths, default=1))).astype(dtype))
    f = _routine(blas, "gemm", dtype)
    blocks = [x[:, :w] for w in widths]  # column slices of a Fortran array stay contiguous

    def run():
        for block in blocks:
            f(1.0, a, block)

    return run
