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
Cases: n = 1024 float32, one matrix; and a batch of 64 matrices 256 x 256 float32.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg

import linalg_core as lc
from bench.harness import case, time_methods


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


def run(quick: bool, log: Callable[[str], None]) -> dict:
    rng = np.random.default_rng(20261202)
    ks = (8, 32)
    shapes = [(1, 512), (16, 128)] if quick else [(1, 1024), (64, 256)]
    cases = []
    for batch, n in shapes:
        case(log, f"{batch} x {n}x{n}")
        a0, a1 = drifted(rng, n, batch)
        a = a1.astype(np.float32)
        q_prev = lc.eigenbasis_refresh(a0.astype(np.float32), None)[0]
        single = batch == 1
        methods = {
            "linalg_core refresh, 1 step": lambda: lc.eigenbasis_refresh(a, q_prev, steps=1),
            "linalg_core refresh, 2 steps": lambda: lc.eigenbasis_refresh(a, q_prev, steps=2),
            # NumPy computes float32 input in float64 (its result is cast back).
            "numpy.linalg.eigh (syevd, float64)": lambda: np.linalg.eigh(a),
        }
        if single:
            methods["scipy.linalg.eigh (syevr)"] = lambda: [scipy.linalg.eigh(a[0])]
        methods["scipy.linalg.eigh (syevd)"] = lambda: [scipy.linalg.eigh(x, driver="evd") for x in a]
        vecs = oracle(a1)
        qual = {"stale basis (no refresh)": quality(a1, vecs, q_prev, ks)}
        for name, fn in methods.items():
            out = fn()
            if name.startswith("linalg_core"):
                q = out[0]
                assert np.all(out[3].status == lc.EIGENBASIS_STATUS["ok"])
            elif name.startswith("numpy"):
                q = _descending(out[1])
            else:
                q = np.stack([_descending(v) for _, v in out])
            qual[name] = quality(a1, vecs, q, ks)
        times = time_methods(methods, repeats=2)
        peers = [m for m in methods if not m.startswith("linalg_core")]
        best_peer = min(peers, key=lambda m: times[m]["median_s"])
        ratios = {f"{best_peer} / {m}": times[best_peer]["median_s"] / times[m]["median_s"]
                  for m in methods if m.startswith("linalg_core")}
        label = f"{batch} x {n}x{n} float32" if batch > 1 else f"{n}x{n} float32"
        log(f"eigenbasis refresh {label}, 10 EMA calls of drift (beta 0.95):")
        times["stale basis (no refresh)"] = {"median_s": 0.0, "min_s": 0.0, "samples_s": []}
        for name in qual:
            sines, off = qual[name]
            log(f"  {name:30s} {1e3 * times[name]['median_s']:9.1f} ms   sin angle top-8 {sines[8]:.1e} "
                f"top-32 {sines[32]:.1e}   off-diagonal {off:.1e}")
        for key, ratio in ratios.items():
            log(f"  speed-up {key}: {ratio:.1f}x (target >= 3x)")
        cases.append({"label": label, "times": times, "ratios": ratios, "targets": {k: 3.0 for k in ratios},
                      "quality": {m: {"sin_top8": qual[m][0][8], "sin_top32": qual[m][0][32],
                                      "off_diagonal": qual[m][1]} for m in qual}})
    return {"suite": "eigenbasis", "cases": cases}


def summarize(result: dict, out) -> str:
    lines = ["### eigenbasis: refresh after 10 EMA calls of drift vs a full eigh "
             "(median ms; quality against a float64 eigh)", ""]
    for case in result["cases"]:
        lines += [f"**{case['label']}**", "",
                  "| method | ms | sin angle top-8 | sin angle top-32 | off-diagonal mass |", "|---|---|---|---|---|"]
        for name, t in case["times"].items():
            q = case["quality"][name]
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {q['sin_top8']:.1e} | {q['sin_top32']:.1e} "
                         f"| {q['off_diagonal']:.1e} |")
        for key, ratio in case["ratios"].items():
            lines.append(f"\n- speed-up {key}: **{ratio:.1f}x** (target >= {case['targets'][key]:g}x)")
        lines.append("")
    return "\n".join(lines)
