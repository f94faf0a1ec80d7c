"""Kronecker power iteration: linalg_core against the straightforward NumPy implementation.

N = 256 samples of 256 x 256 float32, steps = 1 (Shampoo's statistics) and 5. The NumPy peer is
the textbook loop: L = mean(G @ R @ G^T), R = mean(G^T @ L @ G) with batched matmuls, the same
update order (first step from identities, then alternating). Accuracy: relative Frobenius
distance of left (x) right to a float64 run of the NumPy peer; sigma_1 per step is reported.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

import linalg_core as lc
from bench.harness import case, time_methods


def numpy_kron(g: np.ndarray, steps: int):
    """The straightforward implementation (batched matmuls over the samples)."""
    n_samples, m, n = g.shape
    gt = g.transpose(0, 2, 1)
    # Python floats (weak scalars) keep the arithmetic in the samples' dtype.
    left = np.eye(m, dtype=g.dtype) / float(np.sqrt(m))
    right = np.eye(n, dtype=g.dtype) / float(np.sqrt(n))
    sigmas = []
    for step in range(steps):
        new_left = (g @ right @ gt).mean(0)
        norm_l = float(np.linalg.norm(new_left))
        if step > 0:
            left = new_left / norm_l
        new_right = (gt @ left @ g).mean(0)
        norm_r = float(np.linalg.norm(new_right))
        sigma = norm_r if step > 0 else np.sqrt(norm_l * norm_r)
        if step == 0:
            left = new_left / norm_l
        right = new_right / norm_r
        sigmas.append(float(sigma))
    root = float(np.sqrt(sigmas[-1]))
    return root * left, root * right, sigmas


STEPS = (1, 5)
METHODS = ("linalg_core kron_approx", "NumPy batched matmul")


class Case(NamedTuple):
    """One case, shared by `run` (the report) and bench/test_bench_kron.py (pytest-benchmark)."""

    label: str
    steps: int
    methods: dict[str, Callable[[], object]]  # name -> callable timed
    accuracy: dict[str, float]  # name -> relative Frobenius error of left (x) right vs float64
    ref_sigmas: list[float]


def samples(quick: bool) -> np.ndarray:
    rng = np.random.default_rng(20261122)
    n_samples, m, n = (64, 128, 128) if quick else (256, 256, 256)
    # Gradients with a Kronecker-ish structure plus noise, as Shampoo sees them.
    a = rng.standard_normal((m, m)) / np.sqrt(m)
    b = rng.standard_normal((n, n)) / np.sqrt(n)
    return (a @ rng.standard_normal((n_samples, m, n)) @ b + 0.3 * rng.standard_normal((n_samples, m, n))).astype(np.float32)


def make_case(g: np.ndarray, steps: int) -> Case:
    n_samples, m, n = g.shape
    ref_l, ref_r, ref_sigmas = numpy_kron(g.astype(np.float64), steps)
    methods = {
        "linalg_core kron_approx": lambda s=steps: lc.kron_approx(g, steps=s),
        "NumPy batched matmul": lambda s=steps: numpy_kron(g, s),
    }
    acc = {}
    for name, fn in methods.items():
        left, right = fn()[:2]
        # ||l (x) r - L (x) R||_F via ||l||^2||r||^2 + ||L||^2||R||^2 - 2 <l, L><r, R>.
        l, r = left.astype(np.float64), right.astype(np.float64)
        cross = np.sum(l * ref_l) * np.sum(r * ref_r)
        dist2 = (np.sum(l * l) * np.sum(r * r) + np.sum(ref_l * ref_l) * np.sum(ref_r * ref_r) - 2 * cross)
        acc[name] = float(np.sqrt(max(dist2, 0)) / (np.linalg.norm(ref_l) * np.linalg.norm(ref_r)))
    return Case(f"N={n_samples} {m}x{n} float32, steps={steps}", steps, methods, acc, ref_sigmas)


def run(quick: bool, log: Callable[[str], None]) -> dict:
    g = samples(quick)
    n_samples, m, n = g.shape
    cases = []
    for steps in STEPS:
        case(log, f"N={n_samples} {m}x{n} steps={steps}")
        c = make_case(g, steps)
        methods, acc, ref_sigmas = c.methods, c.accuracy, c.ref_sigmas
        times = time_methods(methods, repeats=2 if quick else 3)
        ratio = times["NumPy batched matmul"]["median_s"] / times["linalg_core kron_approx"]["median_s"]
        log(f"kron N={n_samples} {m}x{n} float32 steps={steps}: sigma per step {', '.join(f'{s:.4g}' for s in ref_sigmas)}")
        for name in methods:
            log(f"  {name:28s} {1e3 * times[name]['median_s']:9.1f} ms   rel err {acc[name]:.1e}")
        # One step from the identities is two SYRKs against the peer's GEMMs; every later step
        # does the peer's products with half the flops at best (TRMM + SYRK against 2 GEMMs).
        target = 5.0 if steps == 1 else 2.0
        log(f"  speed-up NumPy / linalg_core: {ratio:.1f}x (target >= {target:g}x)")
        cases.append({"label": c.label, "times": times, "accuracy": acc,
                      "ratios": {"NumPy / linalg_core": ratio}, "targets": {"NumPy / linalg_core": target},
                      "sigma_per_step": ref_sigmas})
    return {"suite": "kron", "cases": cases}


def summarize(result: dict, out) -> str:
    lines = ["### kron: Kronecker power iteration (median ms, relative error vs float64)", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}** (sigma_1 per step: "
                  + ", ".join(f"{s:.4g}" for s in case["sigma_per_step"]) + ")", "",
                  "| method | ms | rel. error |", "|---|---|---|"]
        for name, t in case["times"].items():
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {case['accuracy'][name]:.1e} |")
        for key, ratio in case["ratios"].items():
            lines.append(f"\n- speed-up {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
    return "\n".join(lines)
