"""Kronecker power iteration: linalg_core against the straightforward NumPy implementation.

N = 256 samples of 256 x 256 float32, steps = 1 (Shampoo's statistics) and 5. The NumPy peer is
the textbook loop: L = mean(G @ R @ G^T), R = mean(G^T @ L @ G) with batched matmuls, the same
update order (first step from identities, then alternating). Accuracy: relative Frobenius
distance of left (x) right to a float64 run of the NumPy peer; sigma_1 per step is reported.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench.harness import Built, Case, run_cases


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
OURS, PEER = "linalg_core kron_approx", "NumPy batched matmul"
# One step from the identities is two SYRKs against the peer's GEMMs; every later step does the
# peer's products with half the flops at best (TRMM + SYRK against 2 GEMMs).
TARGETS = {1: 5.0, 5: 2.0}


def samples(quick: bool) -> np.ndarray:
    rng = np.random.default_rng(20261122)
    n_samples, m, n = (64, 128, 128) if quick else (256, 256, 256)
    # Gradients with a Kronecker-ish structure plus noise, as Shampoo sees them.
    a = rng.standard_normal((m, m)) / np.sqrt(m)
    b = rng.standard_normal((n, n)) / np.sqrt(n)
    return (a @ rng.standard_normal((n_samples, m, n)) @ b + 0.3 * rng.standard_normal((n_samples, m, n))).astype(np.float32)


def build(g: np.ndarray, steps: int) -> Built:
    ref_l, ref_r, ref_sigmas = numpy_kron(g.astype(np.float64), steps)
    fns = {OURS: lambda: lc.kron_approx(g, steps=steps), PEER: lambda: numpy_kron(g, steps)}
    acc = {}
    for name, fn in fns.items():
        left, right = fn()[:2]
        # ||l (x) r - L (x) R||_F via ||l||^2||r||^2 + ||L||^2||R||^2 - 2 <l, L><r, R>.
        l, r = left.astype(np.float64), right.astype(np.float64)
        cross = np.sum(l * ref_l) * np.sum(r * ref_r)
        dist2 = (np.sum(l * l) * np.sum(r * r) + np.sum(ref_l * ref_l) * np.sum(ref_r * ref_r) - 2 * cross)
        acc[name] = float(np.sqrt(max(dist2, 0)) / (np.linalg.norm(ref_l) * np.linalg.norm(ref_r)))
    return Built(fns, {"steps": steps, "accuracy": acc, "sigma_per_step": ref_sigmas})


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    n_samples, m, n = (64, 128, 128) if quick else (256, 256, 256)
    g = functools.cache(lambda: samples(quick))  # built once, when the first case is
    return [Case(f"N={n_samples} {m}x{n} float32, steps={steps}", (OURS, PEER),
                 lambda steps=steps: build(g(), steps), rounds=2 if quick else 3)
            for steps in STEPS]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    out = []
    for label, c in done.items():
        times, acc = c["times"], c["accuracy"]
        ratio = times[PEER]["median_s"] / times[OURS]["median_s"]
        target = TARGETS[c["steps"]]
        log(f"kron {label}: sigma per step {', '.join(f'{s:.4g}' for s in c['sigma_per_step'])}")
        for name in times:
            log(f"  {name:28s} {1e3 * times[name]['median_s']:9.1f} ms   rel err {acc[name]:.1e}")
        log(f"  speed-up NumPy / linalg_core: {ratio:.1f}x (target >= {target:g}x)")
        out.append({"label": label, **c, "ratios": {"NumPy / linalg_core": ratio},
                    "targets": {"NumPy / linalg_core": target}})
    return {"suite": "kron", "cases": out}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


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
