"""One call of each primitive at an optimizer's sizes, timed alone: `python -m bench.hot_paths`.

For comparing two installs (two commits, a change and its parent) on one machine: run this module
with each environment's Python in turn, pairing the runs, and compare the printed figures as
ratios (A/B per pair, then the median). `--cpu` times CPU seconds of this process with one BLAS
thread, which is far less sensitive to other load on a shared machine than wall time (set
OPENBLAS_NUM_THREADS=1 in the environment for it: OpenBLAS reads it at load). Each figure is the
minimum over repeats after one warm-up call.

    python -m bench.hot_paths [--cpu] [case ...]      # all cases by default
"""

from __future__ import annotations

import sys
import time

import numpy as np

import linalg_core as lc


def _spd(rng, n, kappa, batch=()):
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    return (q * np.geomspace(1.0, 1.0 / kappa, n)) @ np.swapaxes(q, -1, -2)


def _rng():
    return np.random.default_rng(20261122)


def _fd_state():
    rng = _rng()
    state = lc.fd_init(1024, 256, dtype=np.float32)
    for _ in range(3):
        state, _ = lc.fd_update(state, factor=rng.standard_normal((1024, 256)).astype(np.float32), beta=0.999)
    return rng, state


def root_eigh():
    a = _spd(_rng(), 1024, 1e4).astype(np.float32)
    return lambda: lc.inverse_root(a, 4, eps=1e-6, method="eigh")


def root_newton():
    a = _spd(_rng(), 1024, 1e4).astype(np.float32)
    return lambda: lc.inverse_root(a, 4, eps=1e-6, method="newton")


def root_batch():
    a = _spd(_rng(), 128, 1e4, batch=(256,)).astype(np.float32)
    return lambda: lc.inverse_root(a, 4, eps=1e-6)


def fd_dense():
    rng, state = _fd_state()
    g = (np.geomspace(1, 1e-2, 1024)[:, None] * rng.standard_normal((1024, 1024))).astype(np.float32)
    return lambda: lc.fd_update(state, factor=g, beta=0.999)


def fd_r32():
    rng, state = _fd_state()
    g = (np.geomspace(1, 1e-2, 1024)[:, None] * rng.standard_normal((1024, 32))).astype(np.float32)
    return lambda: lc.fd_update(state, factor=g, beta=0.999)


def fd_apply():
    rng, state = _fd_state()
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    return lambda: lc.fd_apply_inverse_root(state, x, p=4, eps=1e-6)


def lobpcg():
    rng = _rng()
    q, _ = np.linalg.qr(rng.standard_normal((4000, 4000)))
    a = (q * np.geomspace(1.0, 1e-6, 4000)) @ q.T
    a = (a + a.T) / 2
    x0 = rng.standard_normal((4000, 16))
    return lambda: lc.lobpcg(a, x0, tol=1e-7, max_iters=5000)


def rsvd():
    rng = _rng()
    u, _ = np.linalg.qr(rng.standard_normal((4000, 2000)))
    v, _ = np.linalg.qr(rng.standard_normal((2000, 2000)))
    a = ((u * (1.0 / np.arange(1, 2001))) @ v.T).astype(np.float32)
    return lambda: lc.randomized_svd(a, 64, key=1, oversample=10, power_iters=4)


def shared_basis():
    rng = _rng()
    mix = (rng.standard_normal((1024, 1024)) * np.geomspace(1, 0.01, 1024)).astype(np.float32)
    state = lc.shared_basis_init(1024, 1024, 32, dtype=np.float32)
    for t in range(2):
        g = rng.standard_normal((1024, 1024)).astype(np.float32) @ mix.T
        state, _, _ = lc.shared_basis_update(state, g, key=t, eps=1e-6)
    g = rng.standard_normal((1024, 1024)).astype(np.float32) @ mix.T
    return lambda: lc.shared_basis_update(state, g, key=5, eps=1e-6, power_iters=1)


def _kron_samples():
    rng = _rng()
    left, right = rng.standard_normal((256, 256)) / 16, rng.standard_normal((256, 256)) / 16
    noise = 0.3 * rng.standard_normal((256, 256, 256))
    return (left @ rng.standard_normal((256, 256, 256)) @ right + noise).astype(np.float32)


def kron_1():
    g = _kron_samples()
    return lambda: lc.kron_approx(g, steps=1)


def kron_5():
    g = _kron_samples()
    return lambda: lc.kron_approx(g, steps=5)


#: name -> (setup returning the call, repeats)
CASES = {
    "root_eigh": (root_eigh, 5), "root_newton": (root_newton, 3), "root_batch": (root_batch, 5),
    "fd_dense": (fd_dense, 5), "fd_r32": (fd_r32, 9), "fd_apply": (fd_apply, 9),
    "lobpcg": (lobpcg, 3), "rsvd": (rsvd, 3), "shared_basis": (shared_basis, 5),
    "kron_1": (kron_1, 5), "kron_5": (kron_5, 3),
}


def main(argv: list[str]) -> int:
    clock = time.perf_counter
    if "--cpu" in argv:
        argv = [a for a in argv if a != "--cpu"]
        clock = time.process_time
    unknown = [a for a in argv if a not in CASES]
    if unknown:
        print(f"unknown cases {unknown}; choose from {sorted(CASES)}", file=sys.stderr)
        return 2
    for name in argv or list(CASES):
        setup, repeats = CASES[name]
        call = setup()
        call()
        best = float("inf")
        for _ in range(repeats):
            start = clock()
            call()
            best = min(best, clock() - start)
        print(f"{name:14s} {1e3 * best:10.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
