"""Eigenbasis refresh: linalg_core's power-step refresh against a full eigh refresh.

SOAP's statistics drift between refreshes: A_t = beta A_{t-1} + (1 - beta) G G^T (beta = 0.95,
G = V diag(sqrt(lambda)) Z / sqrt(r), r = 32, a power-law planted spectrum lambda_i = (i + 1)^-1.5,
warmed up for 60 calls). The refresh starts from the exact eigenbasis of the statistic
`precondition_frequency` = 10 calls earlier (the "stale basis" row: its quality without a refresh); the peers compute a full eigendecomposition of the new statistic
(numpy.linalg.eigh: syevd in float64 for float32 input, NumPy's OpenBLAS; scipy.linalg.eigh in
float32 with syevd (one matrix at a time) and its default driver syevr, SciPy's OpenBLAS, the one
linalg_core calls). Quality of
both, against a float64 eigh of the same matrix: the largest principal angle (sin) between the
top-k subspaces (k = 8, 32) and the relative off-diagonal mass ||Q^T A Q - diag||_F / ||A||_F.
Cases: n = 1024 float32, one matrix; and a batch of 64 matrices 256 x 256 float32. Floor of the
single matrix (bench/floor.py): one power step's GEMM and QR (`floors`).
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

import numpy as np
import scipy.linalg

import linalg_core as lc
from bench import floor, report
from bench.harness import Built, Case, floor_multiples, run_cases


def drifted(rng, n, batch, warmup=60, calls=10, beta=0.95, rank=32):
    """(A_before, A_after) per batch element, float64: the EMA statistic `calls` calls apart."""
    lam = (1.0 + np.arange(n)) ** -1.5
    before, after = [], []
    for _ in range(batch):
        v = np.linalg.qr(rng.standard_normal((n, n)))[0]
        a = (v * lam) @ v.T
        for t in range(warmup + calls):
            g = (v * np.sqrt(lam)) @ rng.standard_normal((n, rank)) / np.sqrt(rank)
            a = beta * a + (1 - beta) * g @ g.T
            if t == warmup - 1:
                before.append((a + a.T) / 2)
        after.append((a + a.T) / 2)
    return np.stack(before), np.stack(after)


def oracle(a64):
    """Eigenvectors of each float64 matrix, columns descending."""
    return np.stack([np.linalg.eigh(a)[1][:, ::-1] for a in a64])


def quality(a64, vecs, q, ks):
    """(sin of the largest principal angle of the top-k subspace per k, relative off-diagonal
    mass), worst over the batch, against the float64 eigenvectors `vecs`; q's columns sorted
    descending."""
    sines = {k: 0.0 for k in ks}
    off = 0.0
    for a, v, qb in zip(a64, vecs, q.astype(np.float64)):
        for k in ks:
            c = np.linalg.svd(v[:, :k].T @ qb[:, :k], compute_uv=False).min()
            sines[k] = max(sines[k], float(np.sqrt(max(1 - c * c, 0.0))))
        b = qb.T @ a @ qb
        off = max(off, float(np.linalg.norm(b - np.diag(np.diag(b))) / np.linalg.norm(a)))
    return sines, off


def _descending(vecs):
    return vecs[..., ::-1]


KS = (8, 32)
ONE_STEP, TWO_STEPS = "linalg_core refresh, 1 step", "linalg_core refresh, 2 steps"
OURS = (ONE_STEP, TWO_STEPS)
STALE = "stale basis (no refresh)"


def _shapes(quick: bool) -> list[tuple[int, int]]:
    """(batch, n) per case."""
    return [(1, 512), (16, 128)] if quick else [(1, 1024), (64, 256)]


@functools.cache
def _drifts(quick: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every case's (A_before, A_after), drawn from one generator in case order (each case sees the
    same matrices whichever cases are selected)."""
    rng = np.random.default_rng(20261202)
    return [drifted(rng, n, batch) for batch, n in _shapes(quick)]


def _label(batch: int, n: int) -> str:
    return f"{batch} x {n}x{n} float32" if batch > 1 else f"{n}x{n} float32"


def _methods(batch: int) -> tuple[str, ...]:
    names = [ONE_STEP, TWO_STEPS, "numpy.linalg.eigh (syevd, float64)"]
    if batch == 1:
        names.append("scipy.linalg.eigh (syevr)")
    names.append("scipy.linalg.eigh (syevd)")
    return tuple(names)


def floors(batch: int, n: int) -> tuple[str, ...]:
    """Names of the case's floor calls (`build`): one power step cannot avoid the product A Q
    (GEMM n x n x n) and an orthonormal basis of its range (a QR of the n x n product, LAPACK's
    Householder ``geqrf`` standing for it). Left out, so the floor is a lower bound: forming Q
    explicitly (``orgqr``; the kernel's second Cholesky QR pass) and the product A Q of the new
    basis behind the eigenvalue estimates diag(Q^T A Q). The 2-step refresh is reported against
    twice this floor (two power steps).

    A batch has no floor: the kernel splits it over the cores, one BLAS thread per matrix, which
    SciPy's calls, one at a time, cannot reproduce (on one thread their sum adds up every
    core's work; on OpenBLAS's threads each small call pays the threads' synchronisation, see
    bench_polar.schedule_floors)."""
    if batch > 1:
        return ()
    return (f"floor: gemm {n}x{n}x{n}", f"floor: geqrf {n}x{n}")


def build(quick: bool, index: int) -> Built:
    batch, n = _shapes(quick)[index]
    a0, a1 = _drifts(quick)[index]
    a = a1.astype(np.float32)
    q_prev = lc.eigenbasis_refresh(a0.astype(np.float32), None)[0]
    fns = {
        ONE_STEP: lambda: lc.eigenbasis_refresh(a, q_prev, steps=1),
        TWO_STEPS: lambda: lc.eigenbasis_refresh(a, q_prev, steps=2),
        # NumPy computes float32 input in float64 (its result is cast back).
        "numpy.linalg.eigh (syevd, float64)": lambda: np.linalg.eigh(a),
    }
    if batch == 1:
        fns["scipy.linalg.eigh (syevr)"] = lambda: [scipy.linalg.eigh(a[0])]
    fns["scipy.linalg.eigh (syevd)"] = lambda: [scipy.linalg.eigh(x, driver="evd") for x in a]
    vecs = oracle(a1)
    qual = {STALE: quality(a1, vecs, q_prev, KS)}
    for name, fn in fns.items():
        out = fn()
        if name.startswith("linalg_core"):
            q = out[0]
            assert np.all(out[3].status == lc.EIGENBASIS_STATUS["ok"])
        elif name.startswith("numpy"):
            q = _descending(out[1])
        else:
            q = np.stack([_descending(v) for _, v in out])
        qual[name] = quality(a1, vecs, q, KS)
    # The kernel keeps OpenBLAS's threads for one matrix of 128 rows or more (cpp/eigenbasis.cc),
    # so the floor calls run on them too.
    if floors(batch, n):
        fns.update(zip(floors(batch, n), (floor.gemm(n, n, n), floor.geqrf(n, n))))
    quality_out = {m: {"sin_top8": qual[m][0][8], "sin_top32": qual[m][0][32], "off_diagonal": qual[m][1]}
                   for m in qual}
    return Built(fns, {"quality": quality_out})


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    return [Case(_label(batch, n), (*_methods(batch), *floors(batch, n)), lambda i=i: build(quick, i), rounds=2)
            for i, (batch, n) in enumerate(_shapes(quick))]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    cases_out = []
    for label, c in done.items():
        times = dict(c["times"])
        methods = [m for m in times if not m.startswith("floor: ")]
        peers = [m for m in methods if not m.startswith("linalg_core")]
        best_peer = min(peers, key=lambda m: times[m]["median_s"])
        ratios = {f"{best_peer} / {m}": times[best_peer]["median_s"] / times[m]["median_s"]
                  for m in methods if m.startswith("linalg_core")}
        # One power step's floor; the 2-step refresh does two of them.
        multiples = floor_multiples(times, OURS)
        if TWO_STEPS in multiples:
            multiples[TWO_STEPS] /= 2
        log(f"eigenbasis refresh {label}, 10 EMA calls of drift (beta 0.95):")
        times[STALE] = {"median_s": 0.0, "min_s": 0.0, "samples_s": []}
        quality = c["quality"]
        for name in (STALE, *(m for m in times if m != STALE)):
            q = quality.get(name)
            line = f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms"
            if q:
                line += (f"   sin angle top-8 {q['sin_top8']:.1e} top-32 {q['sin_top32']:.1e}"
                         f"   off-diagonal {q['off_diagonal']:.1e}")
            log(line)
        for key, ratio in ratios.items():
            log(f"  speed-up {key}: {ratio:.1f}x (target >= 3x)")
        if multiples:
            log("  floor multiple (ours / its power steps' floor calls): "
                + ", ".join(f"{name} {m:.2f}x" for name, m in multiples.items()))
        cases_out.append({"label": label, "times": times, "ratios": ratios, "targets": {k: 3.0 for k in ratios},
                          "quality": quality, "floor_multiples": multiples})
    return {"suite": "eigenbasis", "cases": cases_out}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    lines = ["### eigenbasis: refresh after 10 EMA calls of drift vs a full eigh "
             "(median ms; quality against a float64 eigh)", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}**", "",
                  "| method | ms | sin angle top-8 | sin angle top-32 | off-diagonal mass |", "|---|---|---|---|---|"]
        for name, t in case["times"].items():
            if name.startswith("floor: "):
                continue
            q = case["quality"][name]
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {q['sin_top8']:.1e} | {q['sin_top32']:.1e} "
                         f"| {q['off_diagonal']:.1e} |")
        for key, ratio in case["ratios"].items():
            lines.append(f"\n- speed-up {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
    if any(c.get("floor_multiples") for c in result["cases"]):
        lines += [report.floor_table(result["cases"], OURS),
                  "", f"The floor is one power step's; {TWO_STEPS} is its time over twice the floor.", ""]
    return "\n".join(lines)
