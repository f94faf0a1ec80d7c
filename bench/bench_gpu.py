"""The JAX path on the default JAX device: FD update and inverse 4th root against
precondition-opt's on the same device, as a fraction of the device's measured GEMM rate.

Full report: d = 4096, l = 256 and an inverse 4th root of a 4096 x 4096 SPD matrix (kappa 1e4),
float32, on a GPU; without one the suite records that and stops (those sizes on 2 CPU cores
measure nothing useful). ``--quick`` runs d = 512 on whatever device JAX has, which checks the
suite itself. On a GPU our JAX entry points run the portable kernels (linalg_core.portable,
lowered by XLA to cuBLAS/cuSOLVER) until CUDA kernels exist, so "ours" and "plain JAX" are the
same code there; the peer is precondition-opt 0.3.0 (``_fd_update_root``,
``matrix_inverse_pth_root``, ``matrix_inverse_pth_root_eigh``).
Fraction of peak: useful flops of the operation (FD: the thin stack's, 2 d n^2 + ..., see
``_flops``) over the time, divided by the rate of a d x d float32 GEMM measured in the same run.
"""

from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import linalg_core as lc
from bench.bench_fd import peer_precondition
from bench.harness import Built, Case, run_cases


def _device() -> str:
    return jax.devices()[0].platform


GEMM = "jax.jit(x @ x)"
METHODS = ("linalg_core fd_update", "precondition-opt FD update", "linalg_core inverse_root newton3",
           "precondition-opt matrix_inverse_pth_root", "linalg_core inverse_root eigh",
           "precondition-opt matrix_inverse_pth_root_eigh")


def _sizes(quick: bool) -> tuple[int, int]:
    return (512, 64) if quick else (4096, 256)


def _runs(quick: bool, device: str) -> bool:
    """Whether the suite runs here: always at the quick size, else only on a GPU."""
    return quick or device == "gpu"


def build_gemm(d: int) -> Built:
    """The device's d x d float32 GEMM, whose rate the fractions of peak divide by."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((d, d)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    return Built({GEMM: lambda: jax.block_until_ready(f(a))}, {})


def build(d: int, rank: int) -> Built:
    rng = np.random.default_rng(20261122)
    # FD update with a full-rank d x d factor (the dense path), warm sketch.
    state = lc.fd_init(d, rank, dtype=np.float32)
    state, _ = lc.fd_update(state, factor=rng.standard_normal((d, rank)).astype(np.float32), beta=0.999)
    g = (rng.standard_normal((d, d)) * np.geomspace(1, 1e-2, d)).astype(np.float32)
    jstate = lc.FDState(*(jnp.asarray(x) for x in state))
    ours_fd = jax.jit(lambda s, x: lc.fd_update(s, factor=x, beta=0.999)[0])
    jg = jnp.asarray(g)
    peer_fd, _ = peer_precondition(state, g, 0.999)

    # Inverse 4th root, kappa 1e4.
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = ((q * np.geomspace(1, 1e-4, d)) @ q.T).astype(np.float32)
    ja = jnp.asarray(a)
    from precondition import distributed_shampoo as ds

    peer_newton = jax.jit(lambda m: ds.matrix_inverse_pth_root(m, 4, ridge_epsilon=1e-6)[0])
    peer_eigh = jax.jit(lambda m: ds.matrix_inverse_pth_root_eigh(m, 4, ridge_epsilon=1e-6)[0])
    ours_newton = jax.jit(lambda m: lc.inverse_root(m, 4, eps=1e-6, method="newton3")[0])
    ours_eigh = jax.jit(lambda m: lc.inverse_root(m, 4, eps=1e-6, method="eigh")[0])
    fns = dict(zip(METHODS, (
        lambda: jax.block_until_ready(ours_fd(jstate, jg)),
        peer_fd,
        lambda: jax.block_until_ready(ours_newton(ja)),
        lambda: jax.block_until_ready(peer_newton(ja)),
        lambda: jax.block_until_ready(ours_eigh(ja)),
        lambda: jax.block_until_ready(peer_eigh(ja)),
    )))
    return Built(fns, {})


def _labels(quick: bool, device: str) -> tuple[str, str]:
    d, rank = _sizes(quick)
    return f"device {device}: {d}x{d} float32 GEMM", f"device {device}: d={d}, l={rank} float32"


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    device = _device()
    if not _runs(quick, device):
        return []
    d, rank = _sizes(quick)
    gemm_label, label = _labels(quick, device)
    return [Case(gemm_label, (GEMM,), lambda: build_gemm(d), rounds=5),
            Case(label, METHODS, lambda: build(d, rank), rounds=2 if quick else 5)]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    quick = size == "quick"
    device = _device()
    if not _runs(quick, device):
        log(f"  no GPU (JAX device: {device}): the accelerator suite runs only with --quick here")
        return {"suite": "gpu", "device": device, "skipped": True}
    d, rank = _sizes(quick)
    gemm_label, label = _labels(quick, device)
    rate = 2.0 * d ** 3 / done[gemm_label]["times"][GEMM]["median_s"]
    log(f"device {device}: {d}x{d} float32 GEMM {rate / 1e12:.2f} TFLOP/s")
    times = done[label]["times"]
    # Useful flops: dense FD = SYRK (d^2 (l + d)) + eigh (~9 d^3 with vectors); a root ~ the
    # eigh root (~9 d^3 + d^3): the same count for every method of one operation, so the
    # fractions compare like the times do.
    flops = {"fd": d * d * (rank + d) + 9.0 * d ** 3, "root": 10.0 * d ** 3}
    rows = {}
    for name, t in times.items():
        kind = "fd" if "FD" in name or "fd_" in name else "root"
        rows[name] = {"ms": 1e3 * t["median_s"], "fraction_of_gemm": flops[kind] / t["median_s"] / rate}
        log(f"  {name:48s} {rows[name]['ms']:9.1f} ms  {100 * rows[name]['fraction_of_gemm']:6.1f}% of GEMM rate")
    ratios = {
        "fd": times["precondition-opt FD update"]["median_s"] / times["linalg_core fd_update"]["median_s"],
        "newton": times["precondition-opt matrix_inverse_pth_root"]["median_s"]
        / times["linalg_core inverse_root newton3"]["median_s"],
        "eigh": times["precondition-opt matrix_inverse_pth_root_eigh"]["median_s"]
        / times["linalg_core inverse_root eigh"]["median_s"],
    }
    log("  peer / ours: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    return {"suite": "gpu", "device": device, "d": d, "rank": rank, "gemm_flops": rate, "rows": rows,
            "ratios": ratios, "skipped": False}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    if result.get("skipped"):
        return f"### accelerator suite: skipped (JAX device {result['device']}, no GPU)"
    lines = [f"### accelerator suite on {result['device']}: d={result['d']}, l={result['rank']}, float32; "
             f"GEMM {result['gemm_flops'] / 1e12:.2f} TFLOP/s", "",
             "| method | ms | fraction of GEMM rate |", "|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['ms']:.1f} | {100 * r['fraction_of_gemm']:.1f}% |")
    lines += ["", "- peer / ours: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["ratios"].items())]
    return "\n".join(lines)
