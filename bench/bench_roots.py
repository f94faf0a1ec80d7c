"""Inverse p-th roots: linalg_core against precondition-opt, SciPy and a NumPy eigh root.

Speed (float32, same process, two rounds of opposite order):
  d=1024, p=4, kappa=1e4: our coupled Newton vs precondition-opt `matrix_inverse_pth_root`
  (coupled Newton, jitted); our eigh vs its `matrix_inverse_pth_root_eigh`; SciPy
  `fractional_matrix_power` (Schur-Pade, float64) and a NumPy eigh root for reference.
  256 blocks of 128 x 128: ours batched vs precondition-opt's vmapped.
Accuracy: relative spectral error against the float64 root of the same float32 matrix, with the
same ridge (relative 1e-6 of lambda_max for everyone).
Stability report: relative error against the exact root of the intended matrix
Q diag(lambda) Q^T (n=128, p=4, geometric spectra, no ridge) for kappa = 1e1 .. 1e12, every method
and dtype, with the rule of thumb "an inverse p-th root loses log2(kappa/p) bits" drawn as
eps * kappa / p.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import linalg_core as lc
from bench.harness import case, time_methods

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


def speed_case(label, a32, methods, pairs, repeats, log):
    case(log, label)
    ref = oracle(a32.astype(np.float64))
    fns = {name: make() for name, make in methods.items()}
    errors = {name: rel_err(fn(), ref) for name, fn in fns.items()}
    times = time_methods(fns, repeats=repeats)
    ratios = {f"{p} / {o}": times[p]["median_s"] / times[o]["median_s"] for p, o, _ in pairs}
    log(f"{label}:")
    for name in fns:
        log(f"  {name:40s} {1e3 * times[name]['median_s']:9.2f} ms   rel err {errors[name]:.1e}")
    for p, o, target in pairs:
        log(f"  speed-up {p} / {o}: {ratios[f'{p} / {o}']:.1f}x (target >= {target:g}x)")
    return {"label": label, "times": times, "accuracy": errors, "ratios": ratios,
            "targets": {f"{p} / {o}": t for p, o, t in pairs}}


def stability(rng, log):
    n = 128
    kappas = [10.0**k for k in range(1, 13)]
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
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
        log(f"  kappa {kappa:8.0e}: " + "  ".join(f"{k} {v['error']:.1e}" for k, v in row.items() if k != "kappa"))
    return {"n": n, "p": P, "rows": rows}


def run(quick: bool, log: Callable[[str], None]) -> dict:
    rng = np.random.default_rng(20261122)
    a, _, _ = spd(rng, 1024, 1e4)
    a32 = a.astype(np.float32)
    big = speed_case(
        "d=1024 p=4 kappa=1e4 float32", a32,
        {
            "linalg_core newton": lambda: ours(a32, "newton"),
            "linalg_core newton3": lambda: ours(a32, "newton3"),
            "linalg_core eigh": lambda: ours(a32, "eigh"),
            "linalg_core eigh (float64 inside)": lambda: ours(a32, "eigh", True),
            "precondition-opt newton": lambda: peer(a32, eigh=False),
            "precondition-opt eigh": lambda: peer(a32, eigh=True),
            "NumPy eigh root (float64 inside)": lambda: numpy_eigh_root(a32),
            "SciPy fractional_matrix_power (f64)": lambda: scipy_fractional(a32),
        },
        [("precondition-opt newton", "linalg_core newton", 2.0),
         ("precondition-opt eigh", "linalg_core eigh", 1.2)],
        repeats=2 if quick else 3, log=log)
    b, _, _ = spd(rng, 128, 1e4, batch=(256,))
    b32 = b.astype(np.float32)
    batch = speed_case(
        "256 x (128 x 128) p=4 kappa=1e4 float32", b32,
        {
            "linalg_core auto (eigh)": lambda: ours(b32, "auto"),
            "linalg_core newton3": lambda: ours(b32, "newton3"),
            "precondition-opt newton (vmap)": lambda: peer(b32, eigh=False),
            "precondition-opt eigh (vmap)": lambda: peer(b32, eigh=True),
        },
        [("precondition-opt newton (vmap)", "linalg_core auto (eigh)", 2.0),
         ("precondition-opt eigh (vmap)", "linalg_core auto (eigh)", 2.0)],
        repeats=2 if quick else 3, log=log)
    case(log, "stability sweep")
    log("stability (relative error vs exact root, no ridge):")
    report = stability(rng, log)
    return {"suite": "roots", "cases": [big, batch], "stability": report}


def summarize(result: dict, out) -> str:
    """Markdown tables (speed, accuracy; stability) and the stability plot `roots_stability.png`."""
    lines = ["### roots: inverse 4th root, median ms and relative error vs float64 oracle", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}**", "", "| method | ms | rel. error |", "|---|---|---|"]
        for name, t in case["times"].items():
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {case['accuracy'][name]:.1e} |")
        lines.append("")
        for key, ratio in case["ratios"].items():
            lines.append(f"- speed-up {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
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
