"""Batched kernels run one problem per core with BLAS held to one thread per worker
(cpp/parallel.h); afterwards the process's BLAS thread counts must be what they were.

OpenBLAS 0.3.30 keeps its "thread-local" count in a process-wide variable, so restoring it from
each worker in whatever order they finish could leave every later BLAS call of the process on
one thread (DGEMM at n = 4000 took 1.8x as long).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

import linalg_core as lc


def blas_threads() -> list[tuple[str, int]]:
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["internal_api"] == "openblas")


def test_batched_calls_leave_blas_thread_counts_alone(rng):
    before = blas_threads()
    h = rng.standard_normal((8, 64, 64))
    blocks = h @ np.swapaxes(h, 1, 2)
    g = rng.standard_normal((8, 64, 3))
    for _ in range(20):
        lc.inverse_root(blocks, 2)
        assert blas_threads() == before
        lc.lobpcg(blocks, g, k=2)  # batched explicit matrices
        assert blas_threads() == before
