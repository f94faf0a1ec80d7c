"""The benchmark report: `python -m bench [--quick] [--only fd] [--out DIR]`.

OpenBLAS is pinned to its Haswell kernels on the development machines (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE) for the tests' sake; XLA's GEMM is not pinned. So that ratios against JAX-based
peers are fair, this process re-executes itself without those two variables before NumPy is
imported, and the report records which BLAS kernel actually ran (threadpoolctl).
"""

from __future__ import annotations

import os
import sys

_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(k in os.environ for k in _PINS) and "numpy" not in sys.modules:
    env = {k: v for k, v in os.environ.items() if k not in _PINS}
    env["LINALG_CORE_BENCH_UNPINNED"] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], env)

from bench.harness import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
