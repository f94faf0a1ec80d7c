"""Shared-basis block low-rank update against the same algorithm in NumPy, and state bytes.

Layer d_in = b = 1024, d_out = m = 1024 blocks, rank k = 32, float32, one power step from a warm
state. The NumPy peer implements Algorithm 1 step for step with batched matmuls and batched
eigh (the expansion for A Y, E R_i E^T + h h^T, power iteration on the factored difference).
Also reported: the state bytes of Sketchy's FD on both Kronecker factors (l = 256) and of full
Shampoo's statistics for the same layer, and one FD update of both factors for timing context.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import linalg_core as lc
from bench.harness import case, time_methods


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


def run(quick: bool, log: Callable[[str], None]) -> dict:
    rng = np.random.default_rng(20261122)
    m, b, k = (256, 512, 32) if quick else (1024, 1024, 32)
    case(log, f"m={m} b={b} k={k}")
    eps = 1e-6
    mix = (rng.standard_normal((b, b)) * np.geomspace(1, 0.01, b)).astype(np.float32)
    state = lc.shared_basis_init(m, b, k, dtype=np.float32)
    for t in range(2):
        state, _, _ = lc.shared_basis_update(state, (rng.standard_normal((m, b)).astype(np.float32) @ mix.T), key=t, eps=eps)
    g = (rng.standard_normal((m, b)).astype(np.float32) @ mix.T)
    y0 = np.ascontiguousarray(state.basis)
    methods = {
        "linalg_core shared_basis_update": lambda: lc.shared_basis_update(state, g, key=5, eps=eps, power_iters=1),
        "NumPy (same algorithm)": lambda: numpy_update(state, g, y0, eps, 1),
    }
    ours_dir = methods["linalg_core shared_basis_update"]()[1]
    ref_dir = methods["NumPy (same algorithm)"]()[3]
    agreement = float(np.abs(ours_dir - ref_dir).max() / np.abs(ref_dir).max())
    # Context: Sketchy's FD on both factors of the same (b x m) layer, l = 256.
    fd_l = lc.fd_init(b, 256, dtype=np.float32)
    fd_r = lc.fd_init(m, 256, dtype=np.float32)
    layer = g.T  # (b, m): the layer's gradient
    methods["Sketchy FD update, both factors (l=256)"] = lambda: (
        lc.fd_update(fd_l, factor=layer, beta=0.999), lc.fd_update(fd_r, factor=layer.T, beta=0.999))
    times = time_methods(methods, repeats=2 if quick else 3)
    ratio = times["NumPy (same algorithm)"]["median_s"] / times["linalg_core shared_basis_update"]["median_s"]
    state_bytes = {
        "shared basis (b k + m k^2 + m)": 4 * (b * k + m * k * k + m),
        "Sketchy FD, both factors (l=256)": lc.fd_state_bytes(b, 256) + lc.fd_state_bytes(m, 256),
        "Shampoo statistics (b^2 + m^2)": 4 * (b * b + m * m),
        "block-diagonal AdaGrad (m b^2)": 4 * m * b * b,
    }
    log(f"shared basis m={m} b={b} k={k} float32 (directions agree to {agreement:.1e} relative):")
    for name in methods:
        log(f"  {name:42s} {1e3 * times[name]['median_s']:9.1f} ms")
    log(f"  speed-up NumPy / linalg_core: {ratio:.1f}x (target >= 5x)")
    for name, v in state_bytes.items():
        log(f"  state bytes {name:36s} {v:>14,}")
    return {"suite": "shared_basis", "times": times, "ratio": ratio, "agreement": agreement,
            "state_bytes": state_bytes, "shape": {"m": m, "b": b, "k": k}}


def summarize(result: dict, out) -> str:
    sh = result["shape"]
    lines = [f"### shared basis: m={sh['m']} blocks of b={sh['b']}, k={sh['k']}, float32", "",
             "| method | ms |", "|---|---|"]
    for name, t in result["times"].items():
        lines.append(f"| {name} | {1e3 * t['median_s']:.1f} |")
    lines += ["", f"- speed-up NumPy / linalg_core: **{result['ratio']:.1f}x** (target >= 5x); directions agree "
              f"to {result['agreement']:.1e}", "", "| state | bytes |", "|---|---|"]
    for name, v in result["state_bytes"].items():
        lines.append(f"| {name} | {v:,} |")
    return "\n".join(lines)
