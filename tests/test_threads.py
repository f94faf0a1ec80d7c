"""Batched kernels run one problem per core with BLAS held to one thread per worker
(cpp/parallel.h); afterwards the process's BLAS thread counts must be what they were.

OpenBLAS 0.3.30 keeps its "thread-local" count in a process-wide variable, so restoring it from
each worker in whatever order they finish could leave every later BLAS call of the process on
one thread (DGEMM at n = 4000 took 1.8x as long).
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import linalg_core as lc

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


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


def _batched_calls(blocks: np.ndarray, g: np.ndarray) -> list[np.ndarray]:
    """One call of each batched primitive (explicit batches of small problems: parallel_for)."""
    root, _ = lc.inverse_root(blocks, 2)
    vals, vecs, _ = lc.lobpcg(blocks, g, k=2)
    state, _ = lc.fd_update(lc.fd_init(64, 4, dtype=np.float64, batch_shape=(8,)), factor=g)
    return [root, vals, state.eigvals]


def test_concurrent_callers_leave_blas_thread_counts_alone_and_match_serial(rng):
    # Eight user threads entering batched kernels at once: each kernel holds BLAS to one thread
    # while it runs, and OpenBLAS's "local" count is process-wide, so a per-call save/restore
    # restores whatever another caller had set (here: 1) and left every later GEMM of the
    # process on one core.
    import threading

    before = blas_threads()
    h = rng.standard_normal((8, 64, 64))
    blocks = h @ np.swapaxes(h, 1, 2)
    g = rng.standard_normal((8, 64, 3))
    serial = _batched_calls(blocks, g)
    results: list[list[np.ndarray]] = []
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(5):
                results.append(_batched_calls(blocks, g))
        except BaseException as err:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert blas_threads() == before
    # Each problem of a batch runs on one thread with one BLAS thread whatever the concurrency,
    # so the results are bitwise those of the serial call.
    for got in results:
        for a, b in zip(got, serial):
            np.testing.assert_array_equal(a, b)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_repeated_calls_do_not_grow_memory(rng):
    # A leak of per-call scratch (batch x n x n buffers) shows up as RSS growing linearly with
    # the number of calls; allocator caching gives a one-off step, absorbed by the warm-up.
    h = rng.standard_normal((8, 64, 64))
    blocks = h @ np.swapaxes(h, 1, 2)
    g = rng.standard_normal((8, 64, 3))
    for _ in range(20):
        _batched_calls(blocks, g)
    start = _rss_bytes()
    for _ in range(200):
        _batched_calls(blocks, g)
    # One call's scratch is ~8 x 64 x 64 x 8 B x a few buffers ~ 1 MB; leaking it every call
    # would add ~200 MB. 16 MB allows allocator noise and nothing like a per-call leak.
    assert _rss_bytes() - start < 16 * 2**20
