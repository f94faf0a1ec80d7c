"""Condition-number x dtype x method stability sweeps of the public primitives.

``python -m linalg_core.stability [--out DIR] [--quick]`` writes ``stability.json`` (one record
per point: error against a float64 NumPy/SciPy oracle, status name, self-reported residual,
whether "status ok => accurate" held) and, when matplotlib is installed, one PNG per primitive.
:func:`sweep` returns the same records for programmatic use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.linalg

import linalg_core as lc

__all__ = ["PRIMITIVES", "sweep", "main", "spd_with_spectrum"]

PRIMITIVES = {"inverse_root": ("eigh", "newton", "newton3"), "polar": ("polar_express", "svd"),
              "lobpcg": ("lobpcg",), "randomized_svd": ("rsvd",), "fd": ("thin_stack", "dense_eigh")}
_N = 32


def spd_with_spectrum(spectrum: np.ndarray, seed: int) -> np.ndarray:
    """Plain-NumPy ``Q diag(spectrum) Q^T`` (float64, Haar ``Q`` from ``seed``), symmetrised."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((len(spectrum), len(spectrum))))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    a = (q * spectrum) @ q.T
    return (a + a.T) / 2


def _name(table: dict, code: Any) -> str:
    code = int(np.asarray(code))
    return next((k for k, v in table.items() if v == code), str(code))


def _point(primitive, method, kappa, dtype, seed):
    lam = np.geomspace(1.0, 1.0 / kappa, _N)
    a64 = spd_with_spectrum(lam, seed)
    a = a64.astype(dtype)
    eps = float(np.finfo(dtype).eps)
    tol = None
    if primitive == "inverse_root":
        x, info = lc.inverse_root(a, 2, eps=0.0 if False else 1e-30, ridge="absolute", method=method)
        w, v = np.linalg.eigh(np.asarray(a, np.float64))
        exact = (v * np.maximum(w, 1e-300) ** -0.5) @ v.T
        err = np.linalg.norm(np.asarray(x, np.float64) - exact, 2) / np.linalg.norm(exact, 2)
        status, res = _name(lc.ROOT_STATUS, info.status), float(np.asarray(info.residual))
        tol = 8 * _N * eps * kappa / 2 + max(res, 0) / 2 + 2 * _N * eps  # roots.py Notes
    elif primitive == "polar":
        g = spd_with_spectrum(lam, seed)[:, : _N // 2] @ np.diag(np.geomspace(1, 1 / kappa, _N // 2))
        x, info = lc.polar(g.astype(dtype), method=method, tol=None if method == "svd" else 1e-3 if dtype == np.float32 else 1e-8)
        exact = scipy.linalg.polar(g)[0]
        err = float(np.abs(np.asarray(x, np.float64) - exact).max())
        status, res = _name(lc.POLAR_STATUS, info.status), float(np.asarray(info.residual))
    elif primitive == "lobpcg":
        k = 4
        x0 = np.random.default_rng(seed).standard_normal((_N * 4, k)).astype(dtype)
        lam4 = np.geomspace(1.0, 1.0 / kappa, _N * 4)
        a4 = spd_with_spectrum(lam4, seed)
        w, _, info = lc.lobpcg(a4.astype(dtype), x0, k=k)
        err = float(np.max(np.abs(np.asarray(w, np.float64) - lam4[:k]) / lam4[:k]))
        status, res = _name(lc.LOBPCG_STATUS, info.status), float(np.max(np.asarray(info.residual)))
        tol = np.sqrt(k) * max(res, 10 * np.sqrt(eps)) / lam4[k - 1]  # lobpcg.py docstring
    elif primitive == "randomized_svd":
        k = 4
        u, s, vt, info = lc.randomized_svd(a, k, key=seed)
        err = float(np.max(np.abs(np.asarray(s, np.float64) - lam[:k]) / lam[:k]))
        status, res = _name(lc.RSVD_STATUS, info.status), float(np.asarray(info.residual))
    else:  # fd
        l = 8
        rng = np.random.default_rng(seed)
        root = np.linalg.cholesky(a64 + 1e-300 * np.eye(_N)) if False else scipy.linalg.sqrtm(a64).real
        state = lc.fd_init(_N, l, dtype=dtype)
        cov = np.zeros((_N, _N))
        for _ in range(4):
            gt = root @ rng.standard_normal((_N, 4))
            state, info = lc.fd_update(state, factor=gt.astype(dtype), method=method)
            cov += gt @ gt.T
        u, lm, rho = (np.asarray(t, np.float64) for t in state)
        gap = np.linalg.norm(cov - (u * lm) @ u.T, 2)
        err = float(max(0.0, gap - rho) / np.linalg.norm(cov, 2))  # FD invariant: A - S <= rho I
        status, res = _name(lc.FD_STATUS, info.status), float(rho)
        tol = 100 * _N * eps
    ok = status in ("ok", "fell_back", "converged")
    return {"primitive": primitive, "method": method, "kappa": float(kappa), "dtype": np.dtype(dtype).name,
            "seed": seed, "error": float(err), "status": status, "residual": res,
            "tolerance": None if tol is None else float(tol),
            "ok_implies_accurate": None if (tol is None or not ok) else bool(err <= tol)}


def sweep(primitive_name: str, kappas: Sequence[float], dtypes: Sequence[Any] = (np.float32, np.float64),
          methods: Sequence[str] | None = None, seed: int = 0) -> list[dict]:
    """Records of one primitive over ``kappas x dtypes x methods`` (see module docstring).

    Parameters
    ----------
    primitive_name : one of :data:`PRIMITIVES`
    kappas : condition numbers of the test matrices (geometric spectra, n = 32)
    dtypes, methods : defaults all dtypes / all methods of :data:`PRIMITIVES`
    seed : int, seeds every matrix and stream

    Returns
    -------
    list of dict with keys primitive, method, kappa, dtype, seed, error, status, residual,
    tolerance (the documented one, or None), ok_implies_accurate (None when not applicable).
    """
    methods = PRIMITIVES[primitive_name] if methods is None else methods
    return [_point(primitive_name, m, k, np.dtype(d).type, seed) for m in methods for d in dtypes for k in kappas]


def _plot(records, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for prim in sorted({r["primitive"] for r in records}):
        fig, ax = plt.subplots(figsize=(6, 4))
        rs = [r for r in records if r["primitive"] == prim]
        ks = sorted({r["kappa"] for r in rs})
        for d in sorted({r["dtype"] for r in rs}):
            ax.plot(ks, [np.finfo(d).eps * k for k in ks], "--", color="gray", label=f"eps*kappa {d}")
            for m in sorted({r["method"] for r in rs}):
                pts = [r for r in rs if r["dtype"] == d and r["method"] == m]
                ax.loglog([r["kappa"] for r in pts], [max(r["error"], 1e-17) for r in pts], "o-", label=f"{d} {m}")
                bad = [r for r in pts if r["status"] not in ("ok", "fell_back", "converged")]
                ax.loglog([r["kappa"] for r in bad], [max(r["error"], 1e-17) for r in bad], "rx", ms=10)
        ax.set_xlabel("kappa"); ax.set_ylabel("error vs float64 oracle"); ax.set_title(f"{prim} (x: status not ok)")
        ax.legend(fontsize=6); fig.tight_layout()
        p = out / f"stability_{prim}.png"; fig.savefig(p, dpi=100); plt.close(fig); paths.append(str(p))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linalg_core.stability")
    parser.add_argument("--out", type=Path, default=Path("stability_results"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    kappas = np.geomspace(10, 1e12, 4 if args.quick else 12)
    records = [r for p in PRIMITIVES for r in sweep(p, kappas)]
    (args.out / "stability.json").write_text(json.dumps(records, indent=1))
    try:
        print("\n".join(_plot(records, args.out)))
    except ImportError:
        print("plots need `pip install matplotlib`")
    for r in records:
        if r["ok_implies_accurate"] is False:
            print("status ok but inaccurate:", r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
