"""Polar factor: linalg_core against optax.contrib's Newton-Schulz, and the converging mode against
scipy.linalg.polar.

Fixed schedule: 5 classic-quintic steps on 1024 x 4096 float32 and on a batch of 64 x (256 x 256)
float32. The peer is ``optax.contrib``'s ``orthogonalize_via_newton_schulz`` at the same
coefficients and steps, jitted (vmapped for the batch). The two start from different scalings
(the peer divides by ``||X||_F``, linalg_core by its tighter norm bound ``norm_bound``), so their
outputs are different points of the same schedule. Agreement is checked against float64
references of the same iteration from each start scaling (``a / norm_bound`` and
``a / ||a||_F``, first matrix of the batch): each output must match its own reference up to
float32 rounding. Reported: those errors and the singular-value range of each output.

Converging mode: ``lc.polar(a, tol=1e-4)`` (float32) against ``scipy.linalg.polar`` (SVD based),
time and the certified residual next to the true ``max|sigma(q) - 1|``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import linalg_core as lc
from bench.harness import case, time_methods


def _sigma_range(q: np.ndarray) -> tuple[float, float]:
    s = np.linalg.svd(np.asarray(q, np.float64), compute_uv=False)
    return float(s.min()), float(s.max())


def _newton_schulz(x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The schedule in float64 from an already scaled x, on the wide side."""
    wide = x if x.shape[0] <= x.shape[1] else x.T
    for a, b, c in coefficients:
        g = wide @ wide.T
        wide = a * wide + (b * g + c * g @ g) @ wide
    return wide if x.shape[0] <= x.shape[1] else wide.T


def run(quick: bool, log: Callable[[str], None]) -> dict:
    import jax
    import jax.numpy as jnp
    from optax.contrib import _muon as optax_muon

    rng = np.random.default_rng(20261202)
    steps = 5
    coefficients = np.tile(np.array(lc.CLASSIC_QUINTIC), (steps, 1))
    ns_coeffs = jnp.asarray(coefficients, jnp.float32)

    def peer_fn(x):
        return optax_muon.orthogonalize_via_newton_schulz(x, ns_coeffs, ns_steps=steps)

    shapes = [(256, 1024), (16, 128, 128)] if quick else [(1024, 4096), (64, 256, 256)]
    cases = []
    for shape in shapes:
        case(log, " x ".join(map(str, shape)) + f" quintic x{steps}")
        a = rng.standard_normal(shape).astype(np.float32)
        aj = jnp.asarray(a)
        peer = jax.jit(peer_fn if len(shape) == 2 else jax.vmap(peer_fn))
        ours_jax = jax.jit(lambda x: lc.polar(x, method="quintic", steps=steps, fallback=False))
        methods = {
            "linalg_core (NumPy)": lambda: lc.polar(a, method="quintic", steps=steps, fallback=False),
            "linalg_core (JAX, FFI)": lambda: jax.block_until_ready(ours_jax(aj)),
            "optax.contrib newton_schulz": lambda: jax.block_until_ready(peer(aj)),
        }
        q, info = lc.polar(a, method="quintic", steps=steps, fallback=False)
        q_peer = np.asarray(peer(aj))
        first = (0,) * (len(shape) - 2)
        a0 = a[first].astype(np.float64)
        ref_ours = _newton_schulz(a0 / float(np.asarray(info.norm_bound)[first]), coefficients)
        ref_peer = _newton_schulz(a0 / np.linalg.norm(a0), coefficients)
        agreement = {"linalg_core": float(np.max(np.abs(q[first] - ref_ours))),
                     "optax.contrib": float(np.max(np.abs(q_peer[first] - ref_peer)))}
        ranges = {"linalg_core": _sigma_range(q[first]), "optax.contrib": _sigma_range(q_peer[first])}
        times = time_methods(methods, repeats=2 if quick else 3)
        ratio_np = times["optax.contrib newton_schulz"]["median_s"] / times["linalg_core (NumPy)"]["median_s"]
        ratio_jax = times["optax.contrib newton_schulz"]["median_s"] / times["linalg_core (JAX, FFI)"]["median_s"]
        label = " x ".join(map(str, shape)) + f" float32, {steps} classic-quintic steps"
        log(f"polar {label}")
        for name in methods:
            log(f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms")
        log(f"  speed-up optax / linalg_core: NumPy {ratio_np:.2f}x, JAX {ratio_jax:.2f}x (target >= 2x)")
        log(f"  sigma(q) range: linalg_core [{ranges['linalg_core'][0]:.3f}, {ranges['linalg_core'][1]:.3f}], "
            f"optax [{ranges['optax.contrib'][0]:.3f}, {ranges['optax.contrib'][1]:.3f}]; "
            f"max|q - float64 reference|: linalg_core {agreement['linalg_core']:.1e}, optax {agreement['optax.contrib']:.1e}; "
            f"band met (status ok): {bool(np.all(info.status == 0))}")
        cases.append({"label": label, "times": times, "sigma_range": ranges, "agreement": agreement,
                      "ratios": {"optax / linalg_core NumPy": ratio_np, "optax / linalg_core JAX": ratio_jax},
                      "target": 2.0})

    shape = (256, 512) if quick else (1024, 4096)
    case(log, " x ".join(map(str, shape)) + " converging")
    a = rng.standard_normal(shape).astype(np.float32)
    import scipy.linalg

    methods = {
        "linalg_core tol=1e-4": lambda: lc.polar(a, tol=1e-4),
        "scipy.linalg.polar": lambda: scipy.linalg.polar(a.T),
    }
    q, info = lc.polar(a, tol=1e-4)
    q_scipy = scipy.linalg.polar(a.T)[0].T
    s = np.linalg.svd(q.astype(np.float64), compute_uv=False)
    s_scipy = np.linalg.svd(q_scipy.astype(np.float64), compute_uv=False)
    times = time_methods(methods, repeats=1 if quick else 2)
    ratio = times["scipy.linalg.polar"]["median_s"] / times["linalg_core tol=1e-4"]["median_s"]
    label = " x ".join(map(str, shape)) + " float32, converging mode"
    log(f"polar {label}: {int(info.iterations)} steps, status {int(info.status)}")
    for name in methods:
        log(f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms")
    log(f"  residual reported {float(info.residual):.2e}, true {np.max(np.abs(s - 1)):.2e} "
        f"(scipy {np.max(np.abs(s_scipy - 1)):.2e}); speed-up scipy / linalg_core {ratio:.2f}x")
    converging = {"label": label, "times": times, "iterations": int(info.iterations), "status": int(info.status),
                  "residual_reported": float(info.residual), "residual_true": float(np.max(np.abs(s - 1))),
                  "residual_scipy": float(np.max(np.abs(s_scipy - 1))),
                  "ratios": {"scipy / linalg_core": ratio}}
    return {"suite": "polar", "cases": cases, "converging": converging}


def summarize(result: dict, out) -> str:
    lines = ["### polar: orthogonal polar factor (median ms)", "",
             "| case | " + " | ".join(result["cases"][0]["times"]) + " | speed-up optax / ours (NumPy, JAX) | target |",
             "|---" * (len(result["cases"][0]["times"]) + 3) + "|"]
    for c in result["cases"]:
        r = c["ratios"]
        lines.append("| " + " | ".join([c["label"], *(f"{1e3 * t['median_s']:.1f}" for t in c["times"].values()),
                                        f"{r['optax / linalg_core NumPy']:.2f}x, {r['optax / linalg_core JAX']:.2f}x",
                                        f">= {c['target']:g}x"]) + " |")
    lines.append("")
    for c in result["cases"]:
        (lo, hi), (plo, phi) = c["sigma_range"]["linalg_core"], c["sigma_range"]["optax.contrib"]
        lines.append(f"- {c['label']}: sigma(q) in [{lo:.3f}, {hi:.3f}] (optax [{plo:.3f}, {phi:.3f}]); "
                     f"max|q - float64 reference of the same start scaling|: linalg_core "
                     f"{c['agreement']['linalg_core']:.1e}, optax {c['agreement']['optax.contrib']:.1e}")
    v = result["converging"]
    lines += ["", f"**{v['label']}**: " + ", ".join(f"{k} {1e3 * t['median_s']:.0f} ms" for k, t in v["times"].items())
              + f"; {v['iterations']} steps, residual reported {v['residual_reported']:.1e} "
              f"(true {v['residual_true']:.1e}, scipy's {v['residual_scipy']:.1e}); "
              f"speed-up scipy / linalg_core {v['ratios']['scipy / linalg_core']:.2f}x", ""]
    return "\n".join(lines)
