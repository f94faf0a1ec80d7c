"""Stability sweeps (linalg_core.stability): worst error per primitive/dtype/method vs eps*kappa."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from linalg_core import stability


def run(quick: bool, log: Callable[[str], None]) -> dict:
    kappas = np.geomspace(10, 1e12, 4 if quick else 12)
    records = [r for p in stability.PRIMITIVES for r in stability.sweep(p, kappas)]
    log(f"stability: {len(records)} points")
    return {"suite": "stability", "records": records}


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
