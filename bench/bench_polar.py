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

Floor (bench/floor.py) of each single-matrix case: the SYRK/GEMM/POTRF calls cpp/polar.cc makes
at that shape (`schedule_floors`, `converging_floors`), timed on the BLAS threads the kernel
gives that problem; the batch has none (`schedule_floors` says why).
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench import floor, report
from bench.harness import Built, Case, floor_multiples, run_cases


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


STEPS = 5
OURS = ("linalg_core (NumPy)", "linalg_core (JAX, FFI)")
PEER = "optax.contrib newton_schulz"
CONVERGING, SCIPY = "linalg_core tol=1e-4", "scipy.linalg.polar"


def _shapes(quick: bool) -> tuple[list[tuple[int, ...]], tuple[int, int]]:
    """The fixed-schedule shapes and the converging mode's shape."""
    if quick:
        return [(256, 1024), (16, 128, 128)], (256, 512)
    return [(1024, 4096), (64, 256, 256)], (1024, 4096)


@functools.cache
def _inputs(quick: bool) -> list[np.ndarray]:
    """Every case's input, drawn from one generator in case order (each case sees the same
    matrix whichever cases are selected)."""
    rng = np.random.default_rng(20261202)
    fixed, converging = _shapes(quick)
    return [rng.standard_normal(shape).astype(np.float32) for shape in (*fixed, converging)]


def _schedule_calls(k: int, big: int, steps: int) -> dict[tuple, int]:
    """The BLAS calls of a fixed schedule of ``steps`` steps on a k x K iterate (k = min(m, n), K
    = max(m, n)), as cpp/polar.cc makes them, keyed ("syrk", n, k) or ("gemm", m, k, n) in
    `bench.floor`'s argument order.

    On the Gram side (steps >= 2 and K >= 2k): the Gram matrix G_0 = X_0 X_0^T once (SYRK k x
    K), G_t^2 every step (SYRK k x k; the first also gives the start scaling's bound), per later
    step one product into Q = P_t ... P_0 and two for G_(t+1) = P_t G_t P_t (GEMM k^3 each, 3 (T
    - 1) in all), and Q X_0 once at the end (GEMM k x k x K). On the iterate: every step's G =
    X X^T (SYRK k x K), G^2 (SYRK k x k) and (b G + c G^2) X (GEMM k x k x K)."""
    if steps >= 2 and big >= 2 * k:
        calls = [(("syrk", k, big), 1), (("syrk", k, k), steps), (("gemm", k, k, k), 3 * (steps - 1)),
                 (("gemm", k, k, big), 1)]
    else:
        calls = [(("syrk", k, big), steps), (("syrk", k, k), steps), (("gemm", k, k, big), steps)]
    counts: dict[tuple, int] = {}
    for call, count in calls:  # a square iterate's two SYRKs have one shape
        counts[call] = counts.get(call, 0) + count
    return counts


def _call_name(call: tuple, count: int) -> str:
    return "floor: " + call[0] + " " + "x".join(map(str, call[1:])) + (f" x{count}" if count > 1 else "")


def _call_fn(call: tuple, count: int, k: int):
    """The call ``count`` times on the BLAS threads cpp/polar.cc gives one k x K problem."""
    make = {"syrk": floor.syrk, "gemm": floor.gemm, "potrf": floor.potrf}[call[0]]
    return floor.on_threads(floor.repeated(make(*call[1:]), count), floor.small_problem_threads(k))


def schedule_floors(shape: tuple[int, ...], steps: int) -> dict[tuple, int]:
    """The floor of a fixed-schedule case: the schedule's BLAS calls (`_schedule_calls`) and the
    a-posteriori check every call ends with, which the returned status needs: the final Gram
    matrix (SYRK k x K) and the two Cholesky factorisations certifying the band (POTRF k, twice).
    The start's prescaling and 1-inf bound and the check's ||G - I||_F are O(k K) passes over
    memory, not library calls, and stay out.

    A batch of small matrices has no floor. The kernel splits the batch over the cores, one BLAS
    thread per matrix; SciPy's calls, one at a time, cannot be timed that way: on one thread
    their sum is the work of every core added up (about the core count times a floor), on
    OpenBLAS's threads every small call pays the threads' synchronisation (measured: the floor
    of the 16 x 128 x 128 case so timed came out at three times our time). SciPy's per-call
    overhead (under 1 us) is not what spoils it."""
    if len(shape) > 2:
        return {}
    m, n = shape
    k, big = min(m, n), max(m, n)
    calls = _schedule_calls(k, big, steps)
    calls[("syrk", k, big)] += 1
    calls[("potrf", k)] = 2
    return calls


def converging_floors(shape: tuple[int, int], schedule_steps: int) -> tuple[dict[tuple, int], str]:
    """The floor of the converging case: the Polar Express schedule's calls (`_schedule_calls`),
    and per converging step its check's Gram matrix and the cubic step's product, plus the last
    check's Gram matrix: c (SYRK k x K + GEMM k x k x K) + SYRK k x K for c cubic steps (the
    method named here; c is the iteration count of the build's own call, past the schedule). The
    check's repeated squarings, run only when ||G - I||_F cannot decide the tolerance, and the
    start's O(k K) passes stay out: the floor is a lower bound."""
    m, n = shape
    k, big = min(m, n), max(m, n)
    return (_schedule_calls(k, big, schedule_steps),
            f"floor: c cubic steps (syrk {k}x{big} + gemm {k}x{k}x{big} each) + syrk {k}x{big}")


def _fixed_label(shape):
    return " x ".join(map(str, shape)) + f" float32, {STEPS} classic-quintic steps"


def _converging_label(shape):
    return " x ".join(map(str, shape)) + " float32, converging mode"


def build_fixed(quick: bool, index: int) -> Built:
    import jax
    import jax.numpy as jnp
    from optax.contrib import _muon as optax_muon

    shape = _shapes(quick)[0][index]
    a = _inputs(quick)[index]
    coefficients = np.tile(np.array(lc.CLASSIC_QUINTIC), (STEPS, 1))
    ns_coeffs = jnp.asarray(coefficients, jnp.float32)

    def peer_fn(x):
        return optax_muon.orthogonalize_via_newton_schulz(x, ns_coeffs, ns_steps=STEPS)

    aj = jnp.asarray(a)
    peer = jax.jit(peer_fn if len(shape) == 2 else jax.vmap(peer_fn))
    ours_jax = jax.jit(lambda x: lc.polar(x, method="quintic", steps=STEPS, fallback=False))
    fns = {
        OURS[0]: lambda: lc.polar(a, method="quintic", steps=STEPS, fallback=False),
        OURS[1]: lambda: jax.block_until_ready(ours_jax(aj)),
        PEER: lambda: jax.block_until_ready(peer(aj)),
    }
    q, info = lc.polar(a, method="quintic", steps=STEPS, fallback=False)
    q_peer = np.asarray(peer(aj))
    first = (0,) * (len(shape) - 2)
    a0 = a[first].astype(np.float64)
    ref_ours = _newton_schulz(a0 / float(np.asarray(info.norm_bound)[first]), coefficients)
    ref_peer = _newton_schulz(a0 / np.linalg.norm(a0), coefficients)
    agreement = {"linalg_core": float(np.max(np.abs(q[first] - ref_ours))),
                 "optax.contrib": float(np.max(np.abs(q_peer[first] - ref_peer)))}
    ranges = {"linalg_core": _sigma_range(q[first]), "optax.contrib": _sigma_range(q_peer[first])}
    k = min(shape[-2:])
    fns.update({_call_name(call, count): _call_fn(call, count, k)
                for call, count in schedule_floors(shape, STEPS).items()})
    return Built(fns, {"sigma_range": ranges, "agreement": agreement, "target": 2.0,
                       "band_met": bool(np.all(info.status == 0))})


def build_converging(quick: bool) -> Built:
    import scipy.linalg

    shape = _shapes(quick)[1]
    a = _inputs(quick)[-1]
    fns = {
        CONVERGING: lambda: lc.polar(a, tol=1e-4),
        SCIPY: lambda: scipy.linalg.polar(a.T),
    }
    q, info = lc.polar(a, tol=1e-4)
    q_scipy = scipy.linalg.polar(a.T)[0].T
    s = np.linalg.svd(q.astype(np.float64), compute_uv=False)
    s_scipy = np.linalg.svd(q_scipy.astype(np.float64), compute_uv=False)
    schedule_steps = lc.polar_schedule("polar_express").coefficients.shape[0]
    calls, converging_name = converging_floors(shape, schedule_steps)
    k, big = min(shape), max(shape)
    fns.update({_call_name(call, count): _call_fn(call, count, k) for call, count in calls.items()})
    cubic = int(info.iterations) - schedule_steps
    check, step = floor.syrk(k, big), floor.gemm(k, k, big)

    def converging_phase():
        for _ in range(cubic):
            check()
            step()
        check()

    fns[converging_name] = floor.on_threads(converging_phase, floor.small_problem_threads(k))
    return Built(fns, {"iterations": int(info.iterations), "status": int(info.status),
                       "cubic_steps": cubic, "residual_reported": float(info.residual),
                       "residual_true": float(np.max(np.abs(s - 1))),
                       "residual_scipy": float(np.max(np.abs(s_scipy - 1)))})


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    fixed, converging = _shapes(quick)
    schedule_steps = lc.polar_schedule("polar_express").coefficients.shape[0]
    calls, converging_name = converging_floors(converging, schedule_steps)
    out = [Case(_fixed_label(shape),
                (*OURS, PEER, *(_call_name(c, n) for c, n in schedule_floors(shape, STEPS).items())),
                lambda i=i: build_fixed(quick, i), rounds=2 if quick else 3)
           for i, shape in enumerate(fixed)]
    out.append(Case(_converging_label(converging),
                    (CONVERGING, SCIPY, *(_call_name(c, n) for c, n in calls.items()), converging_name),
                    lambda: build_converging(quick), rounds=1 if quick else 2))
    return out


def _log_floor(log, times, ours):
    multiples = floor_multiples(times, ours)
    if multiples:
        log("  floor multiple (ours / sum of floor calls): "
            + ", ".join(f"{name} {m:.2f}x" for name, m in multiples.items()))
    return multiples


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    fixed, converging = _shapes(size == "quick")
    cases_out = []
    for shape in fixed:
        label = _fixed_label(shape)
        c = done[label]
        times, ranges, agreement = c["times"], c["sigma_range"], c["agreement"]
        ratio_np = times[PEER]["median_s"] / times[OURS[0]]["median_s"]
        ratio_jax = times[PEER]["median_s"] / times[OURS[1]]["median_s"]
        log(f"polar {label}")
        for name in times:
            log(f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms")
        log(f"  speed-up optax / linalg_core: NumPy {ratio_np:.2f}x, JAX {ratio_jax:.2f}x (target >= 2x)")
        log(f"  sigma(q) range: linalg_core [{ranges['linalg_core'][0]:.3f}, {ranges['linalg_core'][1]:.3f}], "
            f"optax [{ranges['optax.contrib'][0]:.3f}, {ranges['optax.contrib'][1]:.3f}]; "
            f"max|q - float64 reference|: linalg_core {agreement['linalg_core']:.1e}, optax {agreement['optax.contrib']:.1e}; "
            f"band met (status ok): {c['band_met']}")
        multiples = _log_floor(log, times, OURS)
        cases_out.append({"label": label, "times": times, "sigma_range": ranges, "agreement": agreement,
                          "ratios": {"optax / linalg_core NumPy": ratio_np, "optax / linalg_core JAX": ratio_jax},
                          "target": c["target"], "floor_multiples": multiples})

    label = _converging_label(converging)
    c = done[label]
    times = c["times"]
    ratio = times[SCIPY]["median_s"] / times[CONVERGING]["median_s"]
    log(f"polar {label}: {c['iterations']} steps, status {c['status']}")
    for name in times:
        log(f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms")
    log(f"  residual reported {c['residual_reported']:.2e}, true {c['residual_true']:.2e} "
        f"(scipy {c['residual_scipy']:.2e}); speed-up scipy / linalg_core {ratio:.2f}x")
    log(f"  floor counts c = {c['cubic_steps']} cubic steps")
    multiples = _log_floor(log, times, (CONVERGING,))
    converging_out = {"label": label, "times": times, "iterations": c["iterations"], "status": c["status"],
                      "residual_reported": c["residual_reported"], "residual_true": c["residual_true"],
                      "residual_scipy": c["residual_scipy"], "ratios": {"scipy / linalg_core": ratio},
                      "cubic_steps": c["cubic_steps"], "floor_multiples": multiples}
    return {"suite": "polar", "cases": cases_out, "converging": converging_out}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    methods = [m for m in result["cases"][0]["times"] if not m.startswith("floor: ")]
    lines = ["### polar: orthogonal polar factor (median ms)", "",
             "| case | " + " | ".join(methods) + " | speed-up optax / ours (NumPy, JAX) | target |",
             "|---" * (len(methods) + 3) + "|"]
    for c in result["cases"]:
        r = c["ratios"]
        lines.append("| " + " | ".join([c["label"], *(f"{1e3 * c['times'][m]['median_s']:.1f}" for m in methods),
                                        f"{r['optax / linalg_core NumPy']:.2f}x, {r['optax / linalg_core JAX']:.2f}x",
                                        f">= {c['target']:g}x"]) + " |")
    lines.append("")
    for c in result["cases"]:
        (lo, hi), (plo, phi) = c["sigma_range"]["linalg_core"], c["sigma_range"]["optax.contrib"]
        lines.append(f"- {c['label']}: sigma(q) in [{lo:.3f}, {hi:.3f}] (optax [{plo:.3f}, {phi:.3f}]); "
                     f"max|q - float64 reference of the same start scaling|: linalg_core "
                     f"{c['agreement']['linalg_core']:.1e}, optax {c['agreement']['optax.contrib']:.1e}")
    v = result["converging"]
    lines += ["", f"**{v['label']}**: " + ", ".join(f"{k} {1e3 * t['median_s']:.0f} ms" for k, t in v["times"].items()
                                                 if not k.startswith("floor: "))
              + f"; {v['iterations']} steps, residual reported {v['residual_reported']:.1e} "
              f"(true {v['residual_true']:.1e}, scipy's {v['residual_scipy']:.1e}); "
              f"speed-up scipy / linalg_core {v['ratios']['scipy / linalg_core']:.2f}x", ""]
    lines += [report.floor_table([*result["cases"], v], [*OURS, CONVERGING]),
              f"\nThe converging case's c = {v['cubic_steps']} (its cubic steps in this run).", ""]
    return "\n".join(lines)
