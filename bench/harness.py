"""Timing, environment record and the suite runner of the benchmark report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

SUITES = ("fd", "roots", "eig", "kron", "shared_basis", "optim", "train", "gpu", "polar", "eigenbasis", "stability")


def environment() -> dict:
    """What ran: Python, NumPy/SciPy/JAX versions, CPU count, BLAS kernels (threadpoolctl)."""
    import jax
    import numpy as np
    import scipy
    import threadpoolctl

    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS so threadpoolctl sees it)

    blas = [
        {k: info.get(k) for k in ("internal_api", "prefix", "version", "architecture", "num_threads")}
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "jax": jax.__version__,
        "blas": blas,
        "openblas_pins_removed": os.environ.get("LINALG_CORE_BENCH_UNPINNED") == "1",
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


def time_methods(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict:
    """Times each callable `repeats` times after `warmup` calls, in rounds: every method runs its
    repeats back to back (after its own warm-up call), and the rounds are repeated twice in
    alternating order (A B C, C B A), keeping the better median.

    Back to back, because the peers use other thread pools (XLA's, NumPy's own OpenBLAS copy)
    whose threads keep spinning for a while after a call: alternating A B A B makes every method
    run beside the previous one's spinning threads on this 2-core machine (measured: randomized
    SVD 57 ms alone, 90-120 ms right after a sklearn call). Two rounds in opposite orders keep a
    drift of the machine's speed from favouring one method. Callables block until done.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for order in (names, names[::-1]):
        for name in order:
            fn = fns[name]
            for _ in range(max(warmup, 1)):
                fn()
            run = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                run.append(time.perf_counter() - start)
            if not samples[name] or statistics.median(run) < statistics.median(samples[name]):
                samples[name] = run
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "samples_s": s}
        for name, s in samples.items()
    }


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repeats (CI smoke run)")
    parser.add_argument("--only", choices=SUITES, action="append", help="run these suites only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--in-process", action="store_true",
                        help="run several suites in this process instead of one process each")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    suites = args.only or list(SUITES)
    if len(suites) > 1 and not args.in_process:
        return _isolated(suites, args)

    env = environment()
    log(f"linalg_core benchmarks: {env['cpus']} CPUs, JAX {env['jax']}, NumPy {env['numpy']}")
    for b in env["blas"]:
        log(f"  BLAS: {b['prefix']} {b['version']} kernel={b['architecture']} threads={b['num_threads']}")
    if env["openblas_coretype"]:
        log(f"  warning: OPENBLAS_CORETYPE={env['openblas_coretype']} is still set")

    from bench import report

    summaries = []
    for suite in suites:
        module = __import__(f"bench.bench_{suite}", fromlist=["run"])
        log(f"\n== {suite} ==")
        result = module.run(quick=args.quick, log=log)
        result["environment"] = env
        path = args.out / f"{suite}.json"
        path.write_text(json.dumps(result, indent=2, default=float))
        summarize = getattr(module, "summarize", None)
        section = summarize(result, args.out) if summarize else report.write_suite(suite, result, args.out)
        (args.out / f"{suite}.md").write_text(section + "\n")  # read back by _isolated
        summaries.append(section)
        log(f"wrote {path}")
    (args.out / "summary.md").write_text("\n\n".join(summaries) + "\n")
    log(f"\nsummary: {args.out / 'summary.md'}")
    return 0


def _isolated(suites: Sequence[str], args: argparse.Namespace) -> int:
    """One fresh process per suite, then one summary. The peers bring their own thread pools
    (XLA's, NumPy's and SciPy's OpenBLAS copies, torch's): in one long process the pools of
    earlier suites stay alive and measured ratios drifted by up to 2.5x against the same
    comparison run alone (randomized SVD vs sklearn), so each suite gets a clean process."""
    import subprocess

    failed = []
    for suite in suites:
        cmd = [sys.executable, "-m", "bench", "--only", suite, "--out", str(args.out)]
        if args.quick:
            cmd.append("--quick")
        if subprocess.run(cmd).returncode != 0:
            failed.append(suite)
    summaries = []
    for suite in suites:
        section = args.out / f"{suite}.md"  # each child's summary section (and its plots)
        if suite in failed or not section.exists():
            summaries.append(f"### {suite}: FAILED (see the log)")
            continue
        summaries.append(section.read_text().rstrip("\n"))
    (args.out / "summary.md").write_text("\n\n".join(summaries) + "\n")
    log(f"\nsummary: {args.out / 'summary.md'}" + (f"; failed suites: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
