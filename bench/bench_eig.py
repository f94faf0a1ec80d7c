"""Top-k eigensolvers: LOBPCG and randomized SVD against scipy, JAX, torch and sklearn.

LOBPCG (float64, n=4000, k=16, geometric spectrum kappa=1e6, dense A): ours cold and warm
(previous answer with each column moved by 1e-3) vs scipy.sparse.linalg.lobpcg,
jax.experimental.sparse.linalg.lobpcg_standard, torch.lobpcg (when torch is installed) and
scipy.linalg.eigh(subset_by_index). Every method's achieved relative residual
max_j ||A x_j - theta_j x_j|| / lambda_1 and eigenvalue error are reported next to its time.
Randomized SVD (float32, 4000 x 2000, k=64, singular values 1/i): ours vs
sklearn.utils.extmath.randomized_svd with the same oversampling (10) and power iterations (4,
sklearn's choice for this k), and ours warm-started from the previous right basis of a matrix
that changed by 1e-3, with no and with one power iteration; the warm/cold ratio counts the
cheaper warm run that is at least as accurate as the cold one. Also both libraries at their
defaults (ours: oversample max(10, k), 2 power iterations; sklearn: 10, n_iter='auto' = 7, LU):
the time ratio and whether ours is at least as accurate on both measures.
Floor: each of our methods against the BLAS/LAPACK calls it cannot avoid (`lobpcg_floors`,
`rsvd_floors`), timed in the same run.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench import floor, report
from bench.harness import Built, Case, floor_multiples, run_cases


def _residual(a, w, v) -> float:
    v = np.asarray(v, np.float64)
    w = np.asarray(w, np.float64)
    r = a @ v - v * w
    return float(np.linalg.norm(r, axis=0).max() / np.abs(w).max())


LOBPCG_TOL = 1e-7
LOBPCG_OURS = ("linalg_core lobpcg (cold)", "linalg_core lobpcg (warm 1e-3)")


def lobpcg_shape(size: str) -> tuple[int, int]:
    return (1500 if size == "quick" else 4000), 16


def lobpcg_label(size: str) -> str:
    n, k = lobpcg_shape(size)
    return f"LOBPCG n={n} k={k} float64"


@functools.cache
def _optional_peers() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The LOBPCG peers that can run here (JAX's, torch's), and a note for each that cannot."""
    found, notes = [], []
    try:
        from jax.experimental.sparse.linalg import lobpcg_standard  # noqa: F401

        found.append("jax lobpcg_standard")
    except Exception as err:  # noqa: BLE001 - optional peer
        notes.append(f"  jax lobpcg_standard unavailable: {err}")
    try:
        import torch  # noqa: F401

        found.append("torch lobpcg")
    except ImportError:
        notes.append("  torch not installed: torch.lobpcg not measured")
    return tuple(found), tuple(notes)


def lobpcg_names() -> tuple[str, ...]:
    return (*LOBPCG_OURS, "scipy lobpcg", "scipy eigh(subset_by_index)", *_optional_peers()[0])


def lobpcg_methods(a, x0, warm) -> dict[str, Callable[[], tuple]]:
    n, k = x0.shape
    tol = LOBPCG_TOL
    methods: dict[str, Callable[[], tuple]] = {
        "linalg_core lobpcg (cold)": lambda: lc.lobpcg(a, x0, tol=tol, max_iters=5000)[:2],
        "linalg_core lobpcg (warm 1e-3)": lambda: lc.lobpcg(a, warm, tol=tol, max_iters=5000)[:2],
    }
    import scipy.linalg
    import scipy.sparse.linalg

    methods["scipy lobpcg"] = lambda: scipy.sparse.linalg.lobpcg(a, x0, largest=True, tol=tol, maxiter=5000)
    methods["scipy eigh(subset_by_index)"] = lambda: scipy.linalg.eigh(a, subset_by_index=[n - k, n - 1])
    peers = _optional_peers()[0]
    if "jax lobpcg_standard" in peers:
        import jax
        import jax.numpy as jnp
        from jax.experimental.sparse.linalg import lobpcg_standard

        # float64 like every other peer: x64 is on for this peer's inputs and calls only, not for
        # the process (`pytest bench/` runs every suite in one process, and the suites after
        # this one would get float64 JAX arrays).
        with jax.enable_x64(True):
            ja, jx = jnp.asarray(a), jnp.asarray(x0)
        # lobpcg_standard runs a fixed number of iterations unless tol is met.
        f = jax.jit(lambda m, x: lobpcg_standard(m, x, m=5000, tol=tol))

        def jax_lobpcg():
            with jax.enable_x64(True):
                return tuple(np.asarray(t) for t in jax.block_until_ready(f(ja, jx))[:2])

        methods["jax lobpcg_standard"] = jax_lobpcg
    if "torch lobpcg" in peers:
        import torch

        ta, tx = torch.from_numpy(a), torch.from_numpy(x0)
        methods["torch lobpcg"] = lambda: tuple(t.numpy() for t in torch.lobpcg(ta, X=tx, largest=True, tol=tol, niter=5000))
    return methods


def lobpcg_floors(size: str) -> tuple[str, ...]:
    """Names of the LOBPCG case's floor calls, one per run of ours (cold, warm): its products
    with A, as GEMMs of the dense n x n A with blocks of the column counts the run used (the
    residuals of the unconverged pairs and the guard vectors each iteration, the explicit A X and
    A P recomputations and the start's A X). They are counted from the same call with A given as
    a NumPy function instead of the matrix: the same C++ solver, calling back for every product
    (the counted iterations are recorded next to the dense call's ``info.iterations``). Left out:
    the orthogonalisation and Rayleigh-Ritz GEMMs on the n x 3(k + guard) basis and their small
    eigensolves, which the multiple therefore includes."""
    n, _ = lobpcg_shape(size)
    return tuple(floor.of(o, f"products with A (gemm {n}x{n} x their columns)") for o in LOBPCG_OURS)


def lobpcg_build(rng, size: str) -> Built:
    n, k = lobpcg_shape(size)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.geomspace(1.0, 1e-6, n)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    x0 = rng.standard_normal((n, k))
    noise = rng.standard_normal((n, k))
    noise /= np.linalg.norm(noise, axis=0)
    warm = q[:, :k] + 1e-3 * noise
    methods = lobpcg_methods(a, x0, warm)
    results = {}
    for name, fn in methods.items():
        w, v = fn()
        order = np.argsort(np.asarray(w))[::-1][:k]
        w, v = np.asarray(w)[order], np.asarray(v)[:, order]
        results[name] = {"residual": _residual(a, w, v), "eig_err": float(np.abs(w - lam[:k]).max())}
    counted = {}
    for name, start in zip(LOBPCG_OURS, (x0, warm)):
        widths: list[int] = []

        def matvec(x, widths=widths):
            widths.append(x.shape[1])
            return a @ x

        counted_info = lc.lobpcg(matvec, start, tol=LOBPCG_TOL, max_iters=5000)[2]
        dense_info = lc.lobpcg(a, start, tol=LOBPCG_TOL, max_iters=5000)[2]
        counted[name] = {"widths": widths, "products": len(widths), "columns": int(sum(widths)),
                         "iterations": int(dense_info.iterations),
                         "iterations_counted": int(counted_info.iterations)}
    fns = dict(methods)
    fns.update(zip(lobpcg_floors(size), (floor.products(n, counted[o]["widths"]) for o in LOBPCG_OURS)))
    for c in counted.values():
        del c["widths"]  # the counts are what the report needs
    return Built(fns, {"n": n, "k": k, "tol": LOBPCG_TOL, "accuracy": results, "floor_products": counted})


def lobpcg_finish(label: str, c: dict, log) -> dict:
    times, results, tol = c["times"], c["accuracy"], c["tol"]
    for note in _optional_peers()[1]:
        log(note)
    log(f"LOBPCG n={c['n']} k={c['k']} float64 geometric kappa=1e6:")
    for name in times:
        acc = (f"   residual {results[name]['residual']:.1e}   eig err {results[name]['eig_err']:.1e}"
               if name in results else "")
        log(f"  {name:32s} {1e3 * times[name]['median_s']:10.1f} ms{acc}")
    ours = times["linalg_core lobpcg (cold)"]["median_s"]
    # "At equal achieved residual": a peer that stopped with a residual over 10x ours (false
    # convergence) is reported but not counted as the fastest.
    target_res = 10 * max(results["linalg_core lobpcg (cold)"]["residual"], tol)
    peers = [m for m in results if "linalg_core" not in m and "eigh" not in m]
    for m in peers:
        if results[m]["residual"] > target_res:
            log(f"  {m} stopped at residual {results[m]['residual']:.1e} (> {target_res:.0e}): not comparable")
    peers = [m for m in peers if results[m]["residual"] <= target_res] or peers
    fastest = min(peers, key=lambda m: times[m]["median_s"])
    ratios = {
        f"{fastest} / ours cold": times[fastest]["median_s"] / ours,
        "eigh(subset) / ours cold": times["scipy eigh(subset_by_index)"]["median_s"] / ours,
        "ours cold / ours warm": ours / times["linalg_core lobpcg (warm 1e-3)"]["median_s"],
    }
    targets = {f"{fastest} / ours cold": 3.0, "eigh(subset) / ours cold": 1.0, "ours cold / ours warm": 3.0}
    for key, value in ratios.items():
        log(f"  {key}: {value:.1f}x (target >= {targets[key]:g}x)")
    multiples = floor_multiples(times, LOBPCG_OURS)
    counts = c["floor_products"]
    log("  floor multiple (ours / its products with A): " + ", ".join(
        f"{o} {m:.2f}x ({counts[o]['products']} products, {counts[o]['columns']} columns, "
        f"{counts[o]['iterations']} iterations, {counts[o]['iterations_counted']} counted)"
        for o, m in multiples.items()))
    return {"label": label, **c, "ratios": ratios, "targets": targets, "floor_multiples": multiples}


RSVD_COLD = "linalg_core rsvd (cold, q=4)"
RSVD_WARM = ("linalg_core rsvd (warm, q=0)", "linalg_core rsvd (warm, q=1)")
RSVD_DEFAULTS, SK_DEFAULTS = "linalg_core rsvd (defaults)", "sklearn randomized_svd (defaults)"
# Our calls' range-finder width l = k + oversample and power iterations q (the defaults:
# oversample max(10, k), q = 2).
RSVD_OURS = {RSVD_COLD: (10, 4), RSVD_WARM[0]: (10, 0), RSVD_WARM[1]: (10, 1), RSVD_DEFAULTS: (None, 2)}


def rsvd_shape(size: str) -> tuple[int, int, int]:
    return (2000, 1000, 64) if size == "quick" else (4000, 2000, 64)


def rsvd_label(size: str) -> str:
    m, n, k = rsvd_shape(size)
    return f"randomized SVD {m}x{n} float32 k={k}"


def _rsvd_plan(size: str) -> dict[str, tuple[int, int]]:
    """(l, q) of each of our calls."""
    _, _, k = rsvd_shape(size)
    return {o: (k + (max(10, k) if over is None else over), q) for o, (over, q) in RSVD_OURS.items()}


def rsvd_floors(size: str) -> tuple[str, ...]:
    """Names of the randomized SVD case's floor calls, one per call of ours (the width l and the
    power iterations q differ): the range finder's passes over A, A Omega and per power iteration
    A^T Q and A Z (GEMMs with the m x n A), the normalisation of each pass inside the power
    iterations (a partially pivoted LU, ``getrf``: only the span matters there, as in ours and
    sklearn), the final orthonormal Q (``geqrf`` + ``orgqr``), B^T = A^T Q (one more pass over A),
    the thin SVD of B^T (``gesdd``) and U = Q U_B. Left out: drawing Omega and the 10 Gaussian
    probes of the a-posteriori error bound (their product rides on the last pass over A), which
    the multiple therefore includes."""
    m, n, k = rsvd_shape(size)
    return tuple(floor.of(o, f"{q + 1} gemm {m}x{n}x{l}, {q + 1} gemm {n}x{m}x{l}, "
                             + (f"{2 * q} getrf, " if q else "")
                             + f"geqrf+orgqr {m}x{l}, gesdd {n}x{l}, gemm {m}x{l}x{k}")
                 for o, (l, q) in _rsvd_plan(size).items())


def rsvd_floor_fns(size: str) -> dict[str, Callable]:
    m, n, k = rsvd_shape(size)
    make = functools.cache(lambda kind, *shape: getattr(floor, kind)(*shape))  # shared inputs
    fns = []
    for l, q in _rsvd_plan(size).values():
        calls = [make("gemm", m, n, l)] * (q + 1) + [make("gemm", n, m, l)] * (q + 1)
        calls += [make("getrf", m, l), make("getrf", n, l)] * q
        calls += [make("householder_q", m, l), make("gesdd", n, l), make("gemm", m, l, k)]
        fns.append(floor.sequence(*calls))
    return dict(zip(rsvd_floors(size), fns))


RSVD_METHODS = (RSVD_COLD, *RSVD_WARM, "sklearn randomized_svd (q=4)", RSVD_DEFAULTS, SK_DEFAULTS)


def rsvd_methods(a_next, k, vt_prev) -> dict[str, Callable[[], tuple]]:
    """The callables of `RSVD_METHODS`, in that order."""
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    return {
        "linalg_core rsvd (cold, q=4)": lambda: lc.randomized_svd(a_next, k, key=1, oversample=10, power_iters=4)[:3],
        "linalg_core rsvd (warm, q=0)": lambda: lc.randomized_svd(a_next, k, key=1, oversample=10, power_iters=0,
                                                                   warm_start=vt_prev.T)[:3],
        "linalg_core rsvd (warm, q=1)": lambda: lc.randomized_svd(a_next, k, key=1, oversample=10, power_iters=1,
                                                                   warm_start=vt_prev.T)[:3],
        "sklearn randomized_svd (q=4)": lambda: sk_rsvd(a_next, k, n_oversamples=10, n_iter=4, random_state=1),
        # Both at their defaults: ours oversample max(10, k), q = 2; sklearn n_iter='auto' (7
        # here), n_oversamples=10, power_iteration_normalizer='auto' (LU).
        "linalg_core rsvd (defaults)": lambda: lc.randomized_svd(a_next, k, key=1)[:3],
        "sklearn randomized_svd (defaults)": lambda: sk_rsvd(a_next, k, random_state=1),
    }


def rsvd_build(rng, size: str) -> Built:
    m, n, k = rsvd_shape(size)
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = 1.0 / np.arange(1, n + 1)
    a = ((u * s) @ v.T).astype(np.float32)
    change = (1e-3 * rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
    a_next = a + change  # the next step's matrix, close to a
    _, _, vt_prev, _ = lc.randomized_svd(a, k, key=0, oversample=10, power_iters=4)
    methods = rsvd_methods(a_next, k, vt_prev)
    sv_exact = np.linalg.svd(a_next.astype(np.float64), compute_uv=False)
    results = {}
    for name, fn in methods.items():
        uu, ss, vv = fn()
        err = np.linalg.norm(a_next.astype(np.float64) - (uu.astype(np.float64) * ss) @ vv, 2)
        results[name] = {"error_over_sigma_k1": float(err / sv_exact[k]),
                         "sv_rel_err": float(np.abs(ss - sv_exact[:k]).max() / sv_exact[0])}
    return Built({**methods, **rsvd_floor_fns(size)}, {"m": m, "n": n, "k": k, "accuracy": results})


def rsvd_finish(label: str, c: dict, log) -> dict:
    times, results = c["times"], c["accuracy"]
    log(f"randomized SVD {c['m']}x{c['n']} float32 k={c['k']}:")
    for name in times:
        acc = (f"   ||A-USV||/sigma_k+1 {results[name]['error_over_sigma_k1']:.3f}"
               f"   sv err {results[name]['sv_rel_err']:.1e}") if name in results else ""
        log(f"  {name:32s} {1e3 * times[name]['median_s']:10.1f} ms{acc}")
    cold = RSVD_COLD
    ours = times[cold]["median_s"]
    # A warm start replaces power iterations: the warm run counted is the one with the fewest
    # power iterations whose error and singular values are at least as accurate as the cold run's.
    warm = [m for m in RSVD_WARM if all(results[m][key] <= results[cold][key] for key in results[cold])]
    warm = warm[0] if warm else RSVD_WARM[1]
    log(f"  warm run counted: {warm}")
    warm_ratio = f"ours cold / {warm.removeprefix('linalg_core rsvd ')}"
    ratios = {"sklearn / ours cold": times["sklearn randomized_svd (q=4)"]["median_s"] / ours,
              warm_ratio: ours / times[warm]["median_s"]}
    targets = {"sklearn / ours cold": 1.5, warm_ratio: 2.0}
    as_accurate = all(results[RSVD_DEFAULTS][key] <= results[SK_DEFAULTS][key] for key in results[RSVD_DEFAULTS])
    log(f"  defaults vs sklearn defaults: sv err {results[RSVD_DEFAULTS]['sv_rel_err']:.1e} vs "
        f"{results[SK_DEFAULTS]['sv_rel_err']:.1e} ({'at least as accurate' if as_accurate else 'LESS accurate'})")
    ratios["sklearn defaults / ours defaults"] = times[SK_DEFAULTS]["median_s"] / times[RSVD_DEFAULTS]["median_s"]
    targets["sklearn defaults / ours defaults"] = 1.5
    for key, value in ratios.items():
        log(f"  {key}: {value:.1f}x (target >= {targets[key]:g}x)")
    multiples = floor_multiples(times, RSVD_OURS)
    log("  floor multiple (ours / sum of its floor calls): "
        + ", ".join(f"{o} {m:.2f}x" for o, m in multiples.items()))
    return {"label": label, **c, "ratios": ratios, "targets": targets, "floor_multiples": multiples}


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    # One generator for the suite, drawn from in case order (the randomized SVD's inputs depend
    # on the LOBPCG case's draws, as when the suite ran in one loop).
    rng = np.random.default_rng(20261122)
    return [Case(lobpcg_label(size), (*lobpcg_names(), *lobpcg_floors(size)), lambda: lobpcg_build(rng, size),
                 rounds=1 if quick else 2),
            Case(rsvd_label(size), (*RSVD_METHODS, *rsvd_floors(size)), lambda: rsvd_build(rng, size),
                 rounds=2 if quick else 4)]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    return {"suite": "eig", "cases": [lobpcg_finish(lobpcg_label(size), done[lobpcg_label(size)], log),
                                      rsvd_finish(rsvd_label(size), done[rsvd_label(size)], log)]}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    lines = ["### eig: top-k eigensolvers (median ms; accuracy next to each)", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}**", "", "| method | ms | accuracy |", "|---|---|---|"]
        for name, t in case["times"].items():
            if name.startswith("floor: "):
                continue
            acc = ", ".join(f"{k} {v:.2e}" for k, v in case["accuracy"][name].items())
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {acc} |")
        lines.append("")
        for key, ratio in case["ratios"].items():
            lines.append(f"- {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
    ours = list(dict.fromkeys(o for c in result["cases"] for o in c.get("floor_multiples", {})))
    if ours:
        lines.append(report.floor_table(result["cases"], ours))
    return "\n".join(lines)
