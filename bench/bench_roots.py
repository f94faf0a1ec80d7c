"""Inverse p-th roots: linalg_core against precondition-opt, SciPy and a NumPy eigh root.

Speed (float32, same process, two rounds of opposite order):
  d=1024, p=4, kappa=1e4: our coupled Newton vs precondition-opt `matrix_inverse_pth_root`
  (coupled Newton, jitted); our eigh vs its `matrix_inverse_pth_root_eigh`; SciPy
  `fractional_matrix_power` (Schur-Pade, float64; full report only: ~15 s a call) and a NumPy
  eigh root for reference. 256 blocks of 128 x 128: ours batched vs precondition-opt's vmapped.
Accuracy: relative spectral error against the float64 root of the same float32 matrix, with the
same ridge (relative 1e-6 of lambda_max for everyone).
Floor (d=1024): each of our methods against the BLAS/LAPACK calls it cannot avoid (`floors`).
Stability report (full report only; the stability suite sweeps inverse_root at every size):
relative error against the exact root of the intended matrix
Q diag(lambda) Q^T (n=128, p=4, geometric spectra, no ridge) for kappa = 1e1 .. 1e12, every method
and dtype, with the rule of thumb "an inverse p-th root loses log2(kappa/p) bits" drawn as
eps * kappa / p.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench import floor, report
from bench.harness import Built, Case, floor_multiples, run_cases

P = 4
RIDGE = 1e-6


def spd(rng, n, kappa, batch=()):
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    lam = np.geomspace(1.0, 1.0 / kappa, n)
    return (q * lam) @ np.swapaxes(q, -1, -2), q, lam


def oracle(a64: np.ndarray) -> np.ndarray:
    """The float64 root with the benchmark's ridge, RIDGE * lambda_max."""
    w, v = np.linalg.eigh(a64)
    ridge = RIDGE * w[..., -1:]
    return (v * ((np.maximum(w, 0) + ridge) ** (-1.0 / P))[..., None, :]) @ np.swapaxes(v, -1, -2)


def rel_err(x, ref) -> float:
    x = np.asarray(x, np.float64)
    diff = np.linalg.norm(x - ref, 2, axis=(-2, -1))
    return float(np.max(diff / np.linalg.norm(ref, 2, axis=(-2, -1))))


def peer(a32, eigh: bool):
    import jax
    import jax.numpy as jnp
    from precondition import distributed_shampoo as ds

    fn = ds.matrix_inverse_pth_root_eigh if eigh else ds.matrix_inverse_pth_root

    def one(m):
        return fn(m, P, ridge_epsilon=RIDGE)[0]

    f = jax.jit(jax.vmap(one) if a32.ndim == 3 else one)
    x = jnp.asarray(a32)
    return lambda: jax.block_until_ready(f(x))


def ours(a32, method, accumulate_float64=False):
    return lambda: lc.inverse_root(a32, P, eps=RIDGE, method=method,
                                   accumulate_float64=accumulate_float64)[0]


def numpy_eigh_root(a32):
    """numpy.linalg.eigh computes float32 input in float64 (its result is that accurate)."""

    def run():
        w, v = np.linalg.eigh(a32)
        lam_max = w[..., -1:]
        return (v * ((np.maximum(w, 0) + RIDGE * lam_max) ** (-1.0 / P))[..., None, :]) @ np.swapaxes(v, -1, -2)

    return run


def scipy_fractional(a32):
    import scipy.linalg

    def run():
        a = a32.astype(np.float64)
        r = RIDGE * np.linalg.eigvalsh(a)[-1]
        return scipy.linalg.fractional_matrix_power(a + r * np.eye(a.shape[-1]), -1.0 / P)

    return run


BIG = "d=1024 p=4 kappa=1e4 float32"
BATCH = "256 x (128 x 128) p=4 kappa=1e4 float32"
SWEEP = "stability sweep"


def big_methods(a32, full: bool) -> dict[str, Callable[[], Callable]]:
    """The d = 1024 case's methods. SciPy's fractional_matrix_power (a Schur-Pade reference in
    float64, ~15 s a call on 2 cores) only in the full report."""
    methods = {
        "linalg_core newton": lambda: ours(a32, "newton"),
        "linalg_core newton3": lambda: ours(a32, "newton3"),
        "linalg_core eigh": lambda: ours(a32, "eigh"),
        "linalg_core eigh (float64 inside)": lambda: ours(a32, "eigh", True),
        "precondition-opt newton": lambda: peer(a32, eigh=False),
        "precondition-opt eigh": lambda: peer(a32, eigh=True),
        "NumPy eigh root (float64 inside)": lambda: numpy_eigh_root(a32),
        "SciPy fractional_matrix_power (f64)": lambda: scipy_fractional(a32),
    }
    if not full:
        del methods["SciPy fractional_matrix_power (f64)"]
    return methods


def batch_methods(b32) -> dict[str, Callable[[], Callable]]:
    return {
        "linalg_core auto (eigh)": lambda: ours(b32, "auto"),
        "linalg_core newton3": lambda: ours(b32, "newton3"),
        "precondition-opt newton (vmap)": lambda: peer(b32, eigh=False),
        "precondition-opt eigh (vmap)": lambda: peer(b32, eigh=True),
    }


PAIRS = {
    BIG: [("precondition-opt newton", "linalg_core newton", 2.0),
          ("precondition-opt eigh", "linalg_core eigh", 1.2)],
    BATCH: [("precondition-opt newton (vmap)", "linalg_core auto (eigh)", 2.0),
            ("precondition-opt eigh (vmap)", "linalg_core auto (eigh)", 2.0)],
}
ITERATIONS = {"linalg_core newton": "newton", "linalg_core newton3": "newton3"}
EIGH = {"linalg_core eigh": np.float32, "linalg_core eigh (float64 inside)": np.float64}


def floors(d: int) -> tuple[str, ...]:
    """Names of the floor calls of the d x d case (`floor_fns`), each belonging to one of our
    methods (`bench.floor.of`).

    eigh (in float32, and in float64 for the float64-inside variant): the tridiagonalisation
    (``sytrd``), the tridiagonal eigensolve of the case's own matrix (``stedc``: its deflation
    depends on the spectrum), the back-transformation of all d vectors (LAPACK's ``ormtr``,
    2 d^3 flops, stood in for by a d x d x d GEMM of the same flops) and forming
    X = (V f^(1/2)) (V f^(1/2))^T by one SYRK.

    Newton (second order, p = 4): per iteration, the products the coupled iteration cannot avoid:
    T_k^p M_k (one GEMM), T_k^2 and T_k^4 (two SYRKs) and X_k T_k, a product of two commuting
    symmetric matrices whose lower triangle is all that is needed (d^3 flops: a SYRK of the
    same flops stands in), times the iterations our call made (``info.iterations``, counted
    from its own run on the case's matrix). newton3 adds E_k^2 (a SYRK) per iteration. Left out:
    the lambda_max power steps and the Lanczos bound (matrix-vector work) and the a-posteriori
    certificate (log2 p + 2 GEMMs once), which the multiple therefore includes.

    The batch of 256 small blocks has no floor: timed one SciPy call per block, the wrappers'
    per-call overhead and BLAS's threading of 128 x 128 calls are the size of the calls
    themselves (measured: the eigh floor and the newton3 floor both came out above our time)."""
    calls = {}
    for name, it in ITERATIONS.items():
        syrks = 4 if it == "newton3" else 3
        calls[name] = (f"iterations x (gemm + {syrks} syrk) {d}",)
    for name, dt in EIGH.items():
        x = "d" if dt == np.float64 else "s"
        calls[name] = (f"{x}sytrd {d}", f"{x}stedc {d}", f"~{x}ormtr ({x}gemm {d}x{d}x{d})", f"{x}syrk {d}x{d}")
    return tuple(floor.of(name, c) for name, cs in calls.items() for c in cs)


def floor_fns(a32: np.ndarray, iterations: dict[str, int]) -> dict[str, Callable]:
    d = a32.shape[-1]
    fns = []
    for name, it in ITERATIONS.items():
        syrks = 4 if it == "newton3" else 3
        step = floor.sequence(floor.gemm(d, d, d), *(floor.syrk(d, d) for _ in range(syrks)))
        fns.append(floor.repeated(step, iterations[name]))
    for dt in EIGH.values():
        a = a32.astype(dt)
        fns += [floor.sytrd(d, dt, a=a), floor.tridiagonal_eigh(d, dt, a=a), floor.gemm(d, d, d, dt),
                floor.syrk(d, d, dt)]
    return dict(zip(floors(d), fns))


def build_speed(label: str, a32: np.ndarray, methods: dict) -> Built:
    ref = oracle(a32.astype(np.float64))
    fns = {name: make() for name, make in methods.items()}
    errors = {name: rel_err(fn(), ref) for name, fn in fns.items()}
    record = {"accuracy": errors, "targets": {f"{p} / {o}": t for p, o, t in PAIRS[label]}}
    if label == BIG:
        iterations, produced = {}, {}
        for name, method in ITERATIONS.items():
            info = lc.inverse_root(a32, P, eps=RIDGE, method=method)[1]
            iterations[name] = int(info.iterations)
            produced[name] = next(k for k, v in lc.ROOT_METHODS.items() if v == int(info.method))
        fns.update(floor_fns(a32, iterations))
        record.update(floor_iterations=iterations, root_method=produced)
    return Built(fns, record)


def stability(q: np.ndarray) -> dict:
    n = q.shape[0]
    kappas = [10.0**k for k in range(1, 13)]
    rows = []
    variants = [(m, dt, acc) for dt in (np.float32, np.float64) for m in ("eigh", "newton", "newton3")
                for acc in (False,)] + [("eigh", np.float32, True)]
    for kappa in kappas:
        lam = np.geomspace(1.0, 1.0 / kappa, n)
        exact = (q * lam ** (-1.0 / P)) @ q.T
        a64 = (q * lam) @ q.T
        row = {"kappa": kappa}
        for m, dt, acc in variants:
            x, info = lc.inverse_root(a64.astype(dt), P, eps=0.0, ridge="absolute", method=m,
                                      accumulate_float64=acc)
            name = f"{m}{'+f64' if acc else ''} {np.dtype(dt).name}"
            row[name] = {"error": rel_err(x, exact), "method": int(info.method), "status": int(info.status)}
        rows.append(row)
    return {"n": n, "p": P, "rows": rows}


def build_sweep(rng) -> Built:
    """The untimed stability sweep as a case of one method: the callable computes the sweep into
    the record, once (`bench.harness.time_methods`, by hand, calls a method at least four times;
    the orthogonal Q is drawn here, so every call would give the same rows)."""
    q, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    record: dict = {}

    def sweep():
        if "stability" not in record:
            record["stability"] = stability(q)

    return Built({"sweep": sweep}, record)


def cases(size: str) -> list[Case]:
    repeats = 2 if size == "quick" else 3
    # One generator for the suite, drawn from in case order (each case's inputs depend on the
    # cases before it, as when the suite ran in one loop).
    rng = np.random.default_rng(20261122)

    full = size == "full"

    def big() -> Built:
        a, _, _ = spd(rng, 1024, 1e4)
        a32 = a.astype(np.float32)
        return build_speed(BIG, a32, big_methods(a32, full))

    def batch() -> Built:
        b, _, _ = spd(rng, 128, 1e4, batch=(256,))
        b32 = b.astype(np.float32)
        return build_speed(BATCH, b32, batch_methods(b32))

    stub = np.zeros((1, 1), np.float32)  # the method names only
    # The stability sweep in the full report only: the stability suite sweeps inverse_root too.
    return [Case(BIG, (*big_methods(stub, full), *floors(1024)), big, rounds=repeats),
            Case(BATCH, tuple(batch_methods(stub)), batch, rounds=repeats),
            *([Case(SWEEP, ("sweep",), lambda: build_sweep(rng), rounds=1, warmup=0)] if full else [])]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    speed = []
    for label in (BIG, BATCH):
        c = done[label]
        times, errors = c["times"], c["accuracy"]
        ratios = {f"{p} / {o}": times[p]["median_s"] / times[o]["median_s"] for p, o, _ in PAIRS[label]}
        ours_names = [n for n in times if n.startswith("linalg_core")]
        multiples = floor_multiples(times, ours_names)
        log(f"{label}:")
        for name in times:
            err = f"   rel err {errors[name]:.1e}" if name in errors else ""
            log(f"  {name:40s} {1e3 * times[name]['median_s']:9.2f} ms{err}")
        for p, o, target in PAIRS[label]:
            log(f"  speed-up {p} / {o}: {ratios[f'{p} / {o}']:.1f}x (target >= {target:g}x)")
        if multiples:
            its = c.get("floor_iterations", {})
            log("  floor multiple (ours / sum of its floor calls): "
                + ", ".join(f"{n} {m:.2f}x" + (f" ({its[n]} iterations)" if n in its else "")
                            for n, m in multiples.items()))
        speed.append({"label": label, **c, "ratios": ratios, "floor_multiples": multiples})
    if SWEEP not in done:
        return {"suite": "roots", "cases": speed, "stability": None}
    sweep = done[SWEEP]["stability"]
    log("stability (relative error vs exact root, no ridge):")
    for row in sweep["rows"]:
        log(f"  kappa {row['kappa']:8.0e}: "
            + "  ".join(f"{k} {v['error']:.1e}" for k, v in row.items() if k != "kappa"))
    return {"suite": "roots", "cases": speed, "stability": sweep}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    """Markdown tables (speed, accuracy; stability) and the stability plot `roots_stability.png`."""
    lines = ["### roots: inverse 4th root, median ms and relative error vs float64 oracle", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}**", "", "| method | ms | rel. error |", "|---|---|---|"]
        for name, t in case["times"].items():
            if not name.startswith("floor: "):
                lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {case['accuracy'][name]:.1e} |")
        lines.append("")
        for key, ratio in case["ratios"].items():
            lines.append(f"- speed-up {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
    ours = list(dict.fromkeys(o for c in result["cases"] for o in c.get("floor_multiples", {})))
    if ours:
        lines += [report.floor_table(result["cases"], ours), ""]
        its = {n: i for c in result["cases"] for n, i in c.get("floor_iterations", {}).items()}
        lines += ["Iterations in the Newton floors (our calls' own `info.iterations`): "
                  + ", ".join(f"{n} {i}" for n, i in its.items()) + ".", ""]
    if result["stability"] is None:
        return "\n".join(lines + ["Stability sweep: full report only (`--full`; and the stability suite)."])
    rows = result["stability"]["rows"]
    names = [k for k in rows[0] if k != "kappa"]
    lines += ["Stability: relative error against the exact root of Q diag(lambda) Q^T "
              f"(n={result['stability']['n']}, p={P}, geometric spectrum, no ridge); "
              "rule of thumb eps * kappa / p.", "",
              "| kappa | " + " | ".join(names) + " | eps32 kappa/p | eps64 kappa/p |",
              "|---" * (len(names) + 3) + "|"]
    for row in rows:
        k = row["kappa"]
        cells = [f"{row[n]['error']:.1e}" for n in names]
        rule = [f"{np.finfo(np.float32).eps * k / P:.1e}", f"{np.finfo(np.float64).eps * k / P:.1e}"]
        lines.append(f"| {k:.0e} | " + " | ".join(cells + rule) + " |")
    _plot_stability(result["stability"], out / "roots_stability.png")
    return "\n".join(lines)


def _plot_stability(stab: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = stab["rows"]
    kappas = np.array([r["kappa"] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in (k for k in rows[0] if k != "kappa"):
        style = "-" if "float64" in name and "+f64" not in name else "--"
        ax.loglog(kappas, [max(r[name]["error"], 1e-17) for r in rows], style, marker="o", ms=3, label=name)
    for dt, color in ((np.float32, "k"), (np.float64, "grey")):
        eps = np.finfo(dt).eps
        ax.loglog(kappas, eps * kappas / stab["p"], ":", color=color, linewidth=2,
                  label=f"rule of thumb eps*kappa/p ({np.dtype(dt).name}: log2(kappa/p) bits lost)")
    ax.set_xlabel("condition number kappa")
    ax.set_ylabel("relative error ||X - X*||_2 / ||X*||_2")
    ax.set_ylim(1e-17, 10)
    ax.set_title(f"inverse {stab['p']}th root, n={stab['n']}: error vs kappa")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
