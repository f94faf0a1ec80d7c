"""Condition-number x dtype x method stability sweeps of the public primitives.

``python -m linalg_core.stability [--out DIR] [--quick]`` writes ``stability.json`` (one record
per point: error against a float64 NumPy/SciPy oracle, status name, self-reported residual, the
documented tolerance where the primitive has one, and whether "status ok => accurate" held) and,
when matplotlib is installed, one PNG per primitive with the eps * kappa rule of thumb drawn in.
:func:`sweep` returns the same records for programmatic use; :func:`sweep_callable` runs the
same sweep over a function of one's own. The test matrices are ``linalg_core.testing``'s
plain-NumPy builders (:func:`~linalg_core.testing.spectrum_values`,
:func:`~linalg_core.testing.matrix_with_spectrum`), importable without hypothesis from here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.linalg

import linalg_core as lc
from linalg_core._spectra import SPECTRUM_KINDS, matrix_with_spectrum, spectrum_values

__all__ = ["PRIMITIVES", "SPECTRUM_KINDS", "main", "matrix_with_spectrum", "spectrum_values", "sweep",
           "sweep_callable"]

PRIMITIVES = {"inverse_root": ("eigh", "newton", "newton3"), "polar": ("polar_express", "svd"),
              "lobpcg": ("lobpcg",), "randomized_svd": ("rsvd",), "fd": ("thin_stack", "dense_eigh"),
              "fd_apply_inverse_root": ("apply",)}
_N = 32
_OK = ("ok", "fell_back", "converged")


def _name(table: dict, code: Any) -> str:
    code = int(np.asarray(code))
    return next((k for k, v in table.items() if v == code), str(code))


def _inverse_root(method, lam, a64, a, eps, seed):
    # A ridge of 1e-30 (absolute): negligible against every spectrum swept, so the error is the
    # unridged root's.
    x, info = lc.inverse_root(a, 2, eps=1e-30, ridge="absolute", method=method)
    w, v = np.linalg.eigh(np.asarray(a, np.float64))
    exact = (v * np.maximum(w, 1e-300) ** -0.5) @ v.T
    err = np.linalg.norm(np.asarray(x, np.float64) - exact, 2) / np.linalg.norm(exact, 2)
    res = float(np.asarray(info.residual))
    kappa = lam[0] / lam[-1]
    tol = 8 * _N * eps * kappa / 2 + max(res, 0) / 2 + 2 * _N * eps  # roots.py Notes
    return err, _name(lc.ROOT_STATUS, info.status), res, tol


def _polar(method, lam, a64, a, eps, seed):
    g = matrix_with_spectrum(lam, seed)[:, : _N // 2] @ np.diag(np.geomspace(1, lam[-1] / lam[0], _N // 2))
    tol = None if method == "svd" else 1e-3 if eps > 1e-10 else 1e-8
    x, info = lc.polar(g.astype(a.dtype), method=method, tol=tol)
    err = float(np.abs(np.asarray(x, np.float64) - scipy.linalg.polar(g)[0]).max())
    return err, _name(lc.POLAR_STATUS, info.status), float(np.asarray(info.residual)), None


def _lobpcg(method, lam, a64, a, eps, seed):
    k = 4
    x0 = np.random.default_rng(seed).standard_normal((_N * 4, k)).astype(a.dtype)
    lam4 = np.geomspace(lam[0], lam[-1], _N * 4)
    w, _, info = lc.lobpcg(matrix_with_spectrum(lam4, seed, a.dtype), x0, k=k)
    err = float(np.max(np.abs(np.asarray(w, np.float64) - lam4[:k]) / lam4[:k]))
    res = float(np.max(np.asarray(info.residual)))
    tol = np.sqrt(k) * max(res, 10 * np.sqrt(eps)) / lam4[k - 1]  # lobpcg.py docstring
    return err, _name(lc.LOBPCG_STATUS, info.status), res, tol


def _randomized_svd(method, lam, a64, a, eps, seed):
    k = 4
    _, s, _, info = lc.randomized_svd(a, k, key=seed)
    err = float(np.max(np.abs(np.asarray(s, np.float64) - lam[:k]) / lam[:k]))
    return err, _name(lc.RSVD_STATUS, info.status), float(np.asarray(info.residual)), None


def _fd(method, lam, a64, a, eps, seed):
    rng = np.random.default_rng(seed)
    root = scipy.linalg.sqrtm(a64).real
    state = lc.fd_init(_N, 8, dtype=a.dtype)
    cov = np.zeros((_N, _N))
    for _ in range(4):
        gt = root @ rng.standard_normal((_N, 4))
        state, info = lc.fd_update(state, factor=gt.astype(a.dtype), method=method)
        cov += gt @ gt.T
    u, lm, rho = (np.asarray(t, np.float64) for t in state)
    gap = np.linalg.norm(cov - (u * lm) @ u.T, 2)
    err = float(max(0.0, gap - rho) / np.linalg.norm(cov, 2))  # FD invariant: A - S <= rho I
    return err, _name(lc.FD_STATUS, info.status), float(rho), 100 * _N * eps


def _fd_apply_inverse_root(method, lam, a64, a, eps, seed):
    """(U diag(lambda) U^T + f I)^(-1/p) x for a sketch whose operator has condition ~kappa:
    lambda the spectrum's top l values, f = eps_ridge = lambda_min, rho = 0."""
    l, p = 8, 4
    dtype = a.dtype
    u = np.linalg.qr(a64[:, :l])[0].astype(dtype)  # an orthonormal basis, rounded once
    values = lam[:l].astype(dtype)
    f = float(lam[-1])
    x = np.random.default_rng(seed).standard_normal((_N, 2)).astype(dtype)
    state = lc.FDState(u, values, np.zeros((), dtype))
    y, status = lc.fd_apply_inverse_root(state, x, p=p, eps=f, return_status=True)
    u64, v64, x64 = (np.asarray(t, np.float64) for t in (u, values, x))
    f64 = float(np.asarray(f, dtype))
    delta = (v64 + f64) ** (-1 / p) - f64 ** (-1 / p)
    exact = f64 ** (-1 / p) * x64 + u64 @ (delta[:, None] * (u64.T @ x64))
    err = float(np.linalg.norm(np.asarray(y, np.float64) - exact) / np.linalg.norm(exact))
    # fd.py's accuracy note: one rounding to the dtype plus (d + l) eps_acc f^(-1/p) |x| / |y|,
    # eps_acc = eps64 once the amplification (1 + lambda_1 / f)^(1/p) exceeds 2 (float64
    # accumulation), the dtype's eps below; a factor 2 for the basis' own rounding.
    amplification = (1 + v64[0] / f64) ** (1 / p)
    eps_acc = np.finfo(np.float64).eps if amplification > 2 else eps
    tol = 2 * eps + 2 * (_N + l) * eps_acc * f64 ** (-1 / p) * np.linalg.norm(x64) / np.linalg.norm(exact)
    return err, _name(lc.FD_STATUS, status), 0.0, tol


_POINTS = {"inverse_root": _inverse_root, "polar": _polar, "lobpcg": _lobpcg,
           "randomized_svd": _randomized_svd, "fd": _fd, "fd_apply_inverse_root": _fd_apply_inverse_root}


def _record(primitive, method, kappa, dtype, seed, kind, err, status, res, tol) -> dict:
    return {"primitive": primitive, "method": method, "kappa": float(kappa), "dtype": np.dtype(dtype).name,
            "kind": kind, "seed": seed, "error": float(err), "status": status, "residual": float(res),
            "tolerance": None if tol is None else float(tol),
            "ok_implies_accurate": None if (tol is None or status not in _OK) else bool(err <= tol)}


def sweep(primitive_name: str, kappas: Sequence[float], dtypes: Sequence[Any] = (np.float32, np.float64),
          methods: Sequence[str] | None = None, seed: int = 0, kind: str = "geometric") -> list[dict]:
    """Records of one primitive over ``kappas x dtypes x methods`` (see module docstring).

    Parameters
    ----------
    primitive_name : one of :data:`PRIMITIVES`
    kappas : condition numbers of the test matrices (n = 32)
    dtypes, methods : defaults all dtypes / all methods of :data:`PRIMITIVES`
    seed : int, seeds every matrix and stream
    kind : one of :data:`SPECTRUM_KINDS` but ``rank_deficient``: the spectrum's profile

    Returns
    -------
    list of dict with keys primitive, method, kappa, dtype, kind, seed, error, status, residual,
    tolerance (the documented one, or None), ok_implies_accurate (None when not applicable).
    """
    if kind not in SPECTRUM_KINDS or kind == "rank_deficient":
        raise ValueError(f"kind must be one of {[k for k in SPECTRUM_KINDS if k != 'rank_deficient']}, got {kind!r}")
    point = _POINTS[primitive_name]
    methods = PRIMITIVES[primitive_name] if methods is None else methods
    records = []
    for method in methods:
        for dtype in dtypes:
            eps = float(np.finfo(dtype).eps)
            for kappa in kappas:
                lam = spectrum_values(kind, _N, kappa, seed=seed)
                a64 = matrix_with_spectrum(lam, seed)
                out = point(method, lam, a64, a64.astype(dtype), eps, seed)
                records.append(_record(primitive_name, method, kappa, dtype, seed, kind, *out))
    return records


def sweep_callable(fn: Callable[[np.ndarray], np.ndarray], exact: Callable[[np.ndarray], np.ndarray],
                   kappas: Sequence[float], dtypes: Sequence[Any] = (np.float32, np.float64), *,
                   n: int = _N, kind: str = "geometric", seed: int = 0, name: str = "user") -> list[dict]:
    """The sweep over a function of one's own: ``fn(A)`` against ``exact(A64)`` for symmetric
    ``A`` with the spectrum profile ``kind`` and condition ``kappa``, in each dtype.

    ``A`` is built in float64 and rounded once to the dtype; ``exact`` gets that rounded matrix in
    float64, so the error measures ``fn``, not the rounding of its input. The error is
    ``||fn(A) - exact(A)||_F / ||exact(A)||_F``; records have :func:`sweep`'s keys (status "ok",
    no tolerance), ready for the same plots.
    """
    records = []
    for dtype in dtypes:
        for kappa in kappas:
            a = matrix_with_spectrum(spectrum_values(kind, n, kappa, seed=seed), seed, dtype)
            ref = np.asarray(exact(np.asarray(a, np.float64)), np.float64)
            err = np.linalg.norm(np.asarray(fn(a), np.float64) - ref) / np.linalg.norm(ref)
            records.append(_record(name, getattr(fn, "__name__", "fn"), kappa, dtype, seed, kind,
                                   err, "ok", 0.0, None))
    return records


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
        ax.set_xlabel("kappa")
        ax.set_ylabel("error vs float64 oracle")
        ax.set_title(f"{prim} (x: status not ok)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / f"stability_{prim}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(str(path))
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
