"""Stability sweeps (linalg_core.stability): worst error per primitive/dtype/method vs eps*kappa.

One case per primitive, its sweep a single untimed-style method whose records the report reads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from bench.harness import Built, Case, run_cases
from linalg_core import stability


SWEEP = "stability.sweep"


def _kappas(quick: bool) -> np.ndarray:
    return np.geomspace(10, 1e12, 4 if quick else 12)


def build(primitive: str, kappas: np.ndarray) -> Built:
    """The sweep of one primitive as a method run once (its time is the sweep's, not a benchmark
    of anything); its records land in the case's record."""
    record: dict = {"records": []}

    def sweep():
        record["records"] = stability.sweep(primitive, kappas)

    return Built({SWEEP: sweep}, record)


def cases(size: str) -> list[Case]:
    kappas = _kappas(size == "quick")
    return [Case(primitive, (SWEEP,), lambda p=primitive: build(p, kappas), rounds=1, warmup=0)
            for primitive in stability.PRIMITIVES]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    records = [r for primitive in stability.PRIMITIVES for r in done[primitive]["records"]]
    log(f"stability: {len(records)} points")
    return {"suite": "stability", "records": records}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite run in this process (`bench.harness.run_cases`, which runs each sweep twice: its
    warm-up call and its one round)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    records = result["records"]
    try:
        plots = stability._plot(records, Path(out))
    except ImportError:
        plots = []
    lines = ["### stability: worst error vs float64 oracle", "",
             "| primitive | dtype | method | worst error | at kappa | eps*kappa there | status | ok but inaccurate |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["primitive"], r["dtype"], r["method"]) for r in records})
    for p, d, m in keys:
        rs = [r for r in records if (r["primitive"], r["dtype"], r["method"]) == (p, d, m)]
        w = max(rs, key=lambda r: r["error"])
        bad = sum(r["ok_implies_accurate"] is False for r in rs)
        lines.append(f"| {p} | {d} | {m} | {w['error']:.1e} | {w['kappa']:.0e} | "
                     f"{np.finfo(d).eps * w['kappa']:.1e} | {w['status']} | {bad} |")
    lines += ["", *(f"- plot: {p}" for p in plots), ""]
    return "\n".join(lines)
