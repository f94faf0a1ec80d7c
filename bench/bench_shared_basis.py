"""Shared-basis block low-rank update against the same algorithm in NumPy, and state bytes.

Layer d_in = b = 1024, d_out = m = 1024 blocks, rank k = 32, float32, one power step from a warm
state. The NumPy peer implements Algorithm 1 step for step with batched matmuls and batched
eigh (the expansion for A Y, E R_i E^T + h h^T, power iteration on the factored difference).
Also reported: the state bytes of Sketchy's FD on both Kronecker factors (l = 256) and of full
Shampoo's statistics for the same layer, and one FD update of both factors for timing context.
Floor: the BLAS/LAPACK calls the update cannot avoid (`floors`), timed in the same run.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench import floor, report
from bench.harness import Built, Case, floor_multiples, run_cases


def numpy_update(state, g, y0, eps, power_iters, mass_iters=30):
    b_old, r, rho = state
    m, b = g.shape
    k = b_old.shape[1]
    c = g @ b_old                                # (m, k): B^T g_i
    p = np.einsum("mij,mj->mi", r, c) @ b_old.T  # (m, b): B R_i B^T g_i
    s = np.einsum("mij,mkj->ik", r, r)          # sum_i R_i R_i^T
    gsq = (g * g).sum(1)

    def apply_a(y):
        return (b_old @ (s @ (b_old.T @ y)) + p.T @ (g @ y) + g.T @ (p @ y) + g.T @ (gsq[:, None] * (g @ y)))

    y, _ = np.linalg.qr(y0)
    for _ in range(power_iters):
        y, _ = np.linalg.qr(apply_a(y))
    t = y.T @ apply_a(y)
    w, v = np.linalg.eigh((t + t.T) / 2)
    basis = y @ v[:, ::-1][:, :k]
    e = basis.T @ b_old
    h = g @ basis                                # (m, k)
    rt = e @ r @ e.T + h[:, :, None] * h[:, None, :]
    lam, vec = np.linalg.eigh((rt + np.swapaxes(rt, 1, 2)) / 2)
    shifted = lam - lam[:, :1]
    r_new = np.einsum("mij,mj,mkj->mik", vec, shifted, vec)
    x = g + 1.0 / np.arange(2, b + 2, dtype=g.dtype)
    for _ in range(mass_iters):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y1 = np.einsum("mij,mj->mi", r, x @ b_old) @ b_old.T
        y2 = (g * x).sum(1, keepdims=True) * g
        y3 = np.einsum("mij,mj->mi", r_new, x @ basis) @ basis.T
        x = y1 + y2 - y3
    mass = np.linalg.norm(x, axis=1)
    rho_new = rho + mass
    cc = rho_new + eps
    z = np.einsum("mji,mj->mi", vec, h) * ((shifted + cc[:, None]) ** -0.5 - cc[:, None] ** -0.5)
    u = np.einsum("mij,mj->mi", vec, z) @ basis.T + cc[:, None] ** -0.5 * g
    return basis, r_new, rho_new, u


OURS, PEER = "linalg_core shared_basis_update", "NumPy (same algorithm)"
FD = "Sketchy FD update, both factors (l=256)"
POWER_ITERS = 1


def shape(size: str) -> tuple[int, int, int]:
    return (256, 512, 32) if size == "quick" else (1024, 1024, 32)


def floors(m: int, b: int, k: int) -> dict[str, Callable[[], Callable]]:
    """The floor calls (name -> factory) of one update of m blocks of b with rank k and a sketch of
    k columns: the passes over the gradients G (m x b) that Algorithm 1 cannot avoid, B^T G for the
    expansion of A, G^T Y and G Z in each of the power_iters + 1 applications of A to the b x k
    sketch Y, the coordinates W^T G of every g_i in span(B_old, B_new) (W: b x 2k) that the
    escaped mass is computed from, and the direction's B Z (b x k times k x m); and the
    orthonormalisations of Y (once per application) and of W (``geqrf`` + ``orgqr``).

    Left out: the m eigendecompositions of k x k blocks and the per-block mass power iterations
    (O(k^2) each): timed one SciPy call per block, their wrappers' overhead would be the size of
    the calls themselves (as for the batched cases of bench_fd and bench_roots), so the multiple
    includes them."""
    apps = POWER_ITERS + 1
    return {
        f"floor: gemm {k}x{b}x{m} (B^T G)": lambda: floor.gemm(k, b, m),
        f"floor: {apps} x gemm {m}x{b}x{k} (G^T Y)": lambda: floor.repeated(floor.gemm(m, b, k), apps),
        f"floor: {apps} x gemm {b}x{m}x{k} (G Z)": lambda: floor.repeated(floor.gemm(b, m, k), apps),
        f"floor: gemm {2 * k}x{b}x{m} (W^T G)": lambda: floor.gemm(2 * k, b, m),
        f"floor: gemm {b}x{k}x{m} (B Z)": lambda: floor.gemm(b, k, m),
        f"floor: {apps} x geqrf+orgqr {b}x{k}, geqrf+orgqr {b}x{2 * k}":
            lambda: floor.sequence(floor.repeated(floor.householder_q(b, k), apps), floor.householder_q(b, 2 * k)),
    }


def build(size: str) -> Built:
    rng = np.random.default_rng(20261122)
    m, b, k = shape(size)
    eps = 1e-6
    mix = (rng.standard_normal((b, b)) * np.geomspace(1, 0.01, b)).astype(np.float32)
    state = lc.shared_basis_init(m, b, k, dtype=np.float32)
    for t in range(2):
        state, _, _ = lc.shared_basis_update(state, (rng.standard_normal((m, b)).astype(np.float32) @ mix.T), key=t, eps=eps)
    g = (rng.standard_normal((m, b)).astype(np.float32) @ mix.T)
    y0 = np.ascontiguousarray(state.basis)
    methods = {
        OURS: lambda: lc.shared_basis_update(state, g, key=5, eps=eps, power_iters=POWER_ITERS),
        PEER: lambda: numpy_update(state, g, y0, eps, POWER_ITERS),
    }
    ours_dir = methods[OURS]()[1]
    ref_dir = methods[PEER]()[3]
    agreement = float(np.abs(ours_dir - ref_dir).max() / np.abs(ref_dir).max())
    # Context: Sketchy's FD on both factors of the same (b x m) layer, l = 256.
    fd_l = lc.fd_init(b, 256, dtype=np.float32)
    fd_r = lc.fd_init(m, 256, dtype=np.float32)
    layer = g.T  # (b, m): the layer's gradient
    methods[FD] = lambda: (
        lc.fd_update(fd_l, factor=layer, beta=0.999), lc.fd_update(fd_r, factor=layer.T, beta=0.999))
    methods.update({name: make() for name, make in floors(m, b, k).items()})
    state_bytes = {
        "shared basis (b k + m k^2 + m)": 4 * (b * k + m * k * k + m),
        "Sketchy FD, both factors (l=256)": lc.fd_state_bytes(b, 256) + lc.fd_state_bytes(m, 256),
        "Shampoo statistics (b^2 + m^2)": 4 * (b * b + m * m),
        "block-diagonal AdaGrad (m b^2)": 4 * m * b * b,
    }
    return Built(methods, {"agreement": agreement, "state_bytes": state_bytes, "shape": {"m": m, "b": b, "k": k}})


def label(size: str) -> str:
    m, b, k = shape(size)
    return f"m={m} b={b} k={k}"


def cases(size: str) -> list[Case]:
    return [Case(label(size), (OURS, PEER, FD, *floors(*shape(size))), lambda: build(size),
                 rounds=2 if size == "quick" else 3)]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    c = done[label(size)]
    times, sh, agreement = c["times"], c["shape"], c["agreement"]
    ratio = times[PEER]["median_s"] / times[OURS]["median_s"]
    multiples = floor_multiples(times, [OURS])
    log(f"shared basis m={sh['m']} b={sh['b']} k={sh['k']} float32 (directions agree to {agreement:.1e} relative):")
    for name in times:
        log(f"  {name:42s} {1e3 * times[name]['median_s']:9.1f} ms")
    log(f"  speed-up NumPy / linalg_core: {ratio:.1f}x (target >= 5x)")
    log("  floor multiple (ours / sum of floor calls): " + ", ".join(f"{n} {m:.2f}x" for n, m in multiples.items()))
    for name, v in c["state_bytes"].items():
        log(f"  state bytes {name:36s} {v:>14,}")
    return {"suite": "shared_basis", "times": times, "ratio": ratio, "agreement": agreement,
            "state_bytes": c["state_bytes"], "shape": sh, "floor_multiples": multiples}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    sh = result["shape"]
    lines = [f"### shared basis: m={sh['m']} blocks of b={sh['b']}, k={sh['k']}, float32", "",
             "| method | ms |", "|---|---|"]
    for name, t in result["times"].items():
        if not name.startswith("floor: "):
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} |")
    lines += ["", f"- speed-up NumPy / linalg_core: **{result['ratio']:.1f}x** (target >= 5x); directions agree "
              f"to {result['agreement']:.1e}", "", "| state | bytes |", "|---|---|"]
    for name, v in result["state_bytes"].items():
        lines.append(f"| {name} | {v:,} |")
    if result.get("floor_multiples"):
        case = {"label": f"m={sh['m']} b={sh['b']} k={sh['k']}", "times": result["times"],
                "floor_multiples": result["floor_multiples"]}
        lines += ["", report.floor_table([case], [OURS])]
    return "\n".join(lines)
