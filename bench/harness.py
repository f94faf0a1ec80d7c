"""Timing, environment record and the suite runner of the benchmark report."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

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
    run beside the previous one's spinning threads, which on a machine of few cores slows it by
    as much as the difference being measured. Two rounds in opposite orders keep a
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


class Built(NamedTuple):
    """A case made ready to time: the callables, and what the report needs besides their times.

    ``record`` must be JSON-serialisable (it travels in pytest-benchmark's ``extra_info``). A
    callable may add to it while it runs (a training run stores its loss curve there): the JSON
    is written after the last benchmark, so what is in ``record`` then is what the report reads.
    """

    fns: dict[str, Callable[[], object]]
    record: dict


class Case(NamedTuple):
    """One benchmark group: a suite's case, its methods side by side.

    The label and the method names are known before anything is built, so pytest can collect
    one test per (case, method) without building inputs; ``build`` makes the inputs, the timed
    callables and the untimed part (accuracy against the float64 oracle, state bytes) once, when
    the first of the case's methods runs.
    """

    label: str
    methods: tuple[str, ...]
    build: Callable[[], Built]
    rounds: int = 3
    warmup: int = 1


def floor_owner(name: str) -> str | None:
    """The method a floor call belongs to: ``floor: <method>: <call>`` counts for that method only
    (a case whose methods differ in what they cannot avoid: an eigendecomposition against Newton
    iterations, a cold against a warm start), ``floor: <call>`` for every method of its case."""
    method, sep, _ = name[len("floor: "):].partition(": ")
    return method if sep else None


def floor_multiples(times: dict, ours: Sequence[str]) -> dict[str, float]:
    """Each of our methods' median time as a multiple of its floor: the sum of the medians of the
    methods named ``floor: ...`` that belong to it (`floor_owner`): the BLAS/LAPACK calls the
    algorithm cannot avoid, timed in the same run. Methods without a floor call are left out."""
    out = {}
    for name in ours:
        parts = [t["median_s"] for n, t in times.items()
                 if n.startswith("floor: ") and floor_owner(n) in (None, name)]
        if name in times and parts:
            out[name] = times[name]["median_s"] / sum(parts)
    return out


def run_cases(module, size: str, log: Callable[[str], None]) -> dict:
    """A suite run in this process, timed by `time_methods`: what ``bench_X.run`` does when a
    suite is run by hand (``bench_kron.run("full", print)``). The main job times the same cases
    under pytest-benchmark instead (`run_pytest`)."""
    done = {}
    for c in module.cases(size):
        case(log, c.label)
        built = c.build()
        times = time_methods(built.fns, repeats=c.rounds, warmup=c.warmup)
        done[c.label] = {**built.record, "times": times}
    return module.finish(size, done, log)


BENCH_TEST = Path(__file__).parent / "test_bench.py"
_announce: Callable[[str, str], None] | None = None  # the main job's progress, while pytest runs


def announce(suite: str, label: str) -> None:
    """bench/test_bench.py starts a case: the main job's progress display shows it (a plain
    ``pytest bench/`` run has no display)."""
    if _announce is not None:
        _announce(suite, label)


def run_pytest(suite: str, size: str, out: Path) -> Path:
    """Times one suite's cases under pytest-benchmark, in this process, into
    ``<out>/<suite>.benchmark.json`` (pytest-benchmark's own format: ``--benchmark-compare`` and
    ``pytest-benchmark compare`` read it). Raises when any benchmark failed."""
    import pytest

    path = out / f"{suite}.benchmark.json"
    args = [str(BENCH_TEST), "--bench-suite", suite, "--bench-size", size, "--benchmark-only",
            f"--benchmark-json={path}", "--benchmark-columns=median,min,rounds",
            "--benchmark-sort=name", "-q", "--no-header", "-p", "no:cacheprovider",
            # sys-level capture: the case announcements written to sys.__stdout__ reach the
            # progress display while the benchmark runs.
            "--capture=sys", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    # A main job started from inside a pytest-xdist worker (tests/test_bench_progress.py under
    # `pytest -n 2`) inherits PYTEST_XDIST_WORKER, and pytest-benchmark then disables itself.
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        os.environ.pop(var, None)
    code = pytest.main(args)
    if code != 0:
        raise RuntimeError(f"pytest-benchmark run of suite {suite!r} failed (exit code {int(code)})")
    return path


def cases_from_json(path: Path) -> dict[str, dict]:
    """The benchmark JSON back as `finish`'s input: per case label, its record and its methods'
    times (median, min and every round, in seconds), in the order the benchmarks ran."""
    done: dict[str, dict] = {}
    for b in json.loads(path.read_text())["benchmarks"]:
        info, stats = b["extra_info"], b["stats"]
        entry = done.setdefault(info["case"], {**info["record"], "times": {}})
        entry.update(info["record"])  # the last method's view of a record its callables add to
        samples = stats.get("data") or [stats["median"]]
        entry["times"][info["method"]] = {"median_s": stats["median"], "min_s": stats["min"],
                                          "samples_s": samples}
    return done


class Log:
    """What a suite writes to: `log(msg)` prints a line of its report; `log.case(name)` announces
    the case it starts now (the previous one is then done), for the progress display."""

    def __init__(self, progress: "Progress | None" = None, suite: str = ""):
        self.progress, self.suite = progress, suite

    def __call__(self, msg: str) -> None:
        if self.progress is not None:
            self.progress.message(msg)
        else:
            print(msg, flush=True)

    def case(self, name: str) -> None:
        if self.progress is not None:
            self.progress.case(self.suite, name)


log = Log()


def case(log: Callable[[str], None], name: str) -> None:
    """A suite announces the case it starts; a plain callable given as `log` (a suite run by
    hand with `log=print`) has no progress display and is left alone."""
    announce = getattr(log, "case", None)
    if announce is not None:
        announce(name)

# Expected seconds and case counts per suite and size, measured once on the development machine
# (bench/durations.json); a run's own measurements (<out>/durations.json) take precedence.
DURATIONS = Path(__file__).parent / "durations.json"
PROGRESS_TAG = "@bench-progress "  # a child process's machine-readable progress line (stdout)


def load_durations(out: Path) -> dict:
    table: dict = {}
    for path in (DURATIONS, out / "durations.json"):
        try:
            for suite, sizes in json.loads(path.read_text()).items():
                if not suite.startswith("_"):  # "_note"
                    table.setdefault(suite, {}).update(sizes)
        except (OSError, ValueError):
            pass
    return table


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """The progress display on stderr: suite, case, cases done / total, elapsed and the time left.

    The estimate is the expected duration of what remains (the durations table, per suite and
    size; a suite's cases share its duration evenly), scaled by how fast this run has gone so far
    against the same table. On a terminal one line is redrawn; otherwise one line per case.
    """

    def __init__(self, plan: Sequence[tuple[str, str]], durations: dict, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.plan = list(plan)  # (suite, size)
        self.expected = {}
        for suite, size in self.plan:
            entry = durations.get(suite, {}).get(size, {})
            self.expected[suite] = (float(entry.get("seconds", 60.0)), max(int(entry.get("cases", 1)), 1))
        self.total = sum(c for _, c in self.expected.values())
        self.start = time.perf_counter()
        self.suite, self.case_name, self.suite_cases, self.suite_start = "", "", 0, self.start
        self.measured: dict[str, dict] = {}
        self.finished: list[str] = []
        self._drawn = False

    def _remaining_expected(self) -> float:
        left = 0.0
        for suite, _ in self.plan:
            if suite in self.finished:
                continue
            seconds, cases = self.expected[suite]
            if suite == self.suite:
                started = max(self.suite_cases - 1, 0)  # the current case counts as still to do
                left += seconds * max(cases - started, 1) / cases
            else:
                left += seconds
        return left

    def eta(self) -> float:
        elapsed = time.perf_counter() - self.start
        done_expected = sum(self.expected[s][0] for s in self.finished)
        if self.suite and self.suite not in self.finished:
            seconds, cases = self.expected[self.suite]
            done_expected += seconds * min(max(self.suite_cases - 1, 0), cases) / cases
        speed = elapsed / done_expected if done_expected > 0 and elapsed > 5 else 1.0
        return self._remaining_expected() * speed

    @property
    def done(self) -> int:
        """Cases finished: a finished suite counts its expected cases, the running one those it
        announced before the current case."""
        done = sum(self.expected[s][1] for s in self.finished)
        if self.suite and self.suite not in self.finished:
            done += min(max(self.suite_cases - 1, 0), self.expected[self.suite][1] - 1)
        return done

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        return (f"[{bar}] {self.done}/{self.total} cases | {self.suite}: {self.case_name} | "
                f"elapsed {_clock(elapsed)} | eta {_clock(self.eta())}")

    def _show(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self._drawn = True
        else:
            self.stream.write("progress " + self.line() + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def message(self, msg: str) -> None:
        """A report line from a suite: printed on stdout, the bar drawn again below it."""
        self._clear()
        print(msg, flush=True)
        if self.tty and self.suite:
            self._show()

    def begin_suite(self, suite: str) -> None:
        self.suite, self.case_name, self.suite_cases = suite, "(starting)", 0
        self.suite_start = time.perf_counter()
        self._show()

    def case(self, suite: str, name: str) -> None:
        if suite != self.suite:
            self.begin_suite(suite)
        self.suite_cases += 1
        seconds, cases = self.expected.setdefault(suite, (60.0, 1))
        if self.suite_cases > cases:  # more cases than the table knows: the total grows
            self.expected[suite] = (seconds * self.suite_cases / cases, self.suite_cases)
            self.total += self.suite_cases - cases
        self.case_name = name
        self._show()

    def end_suite(self, suite: str, ok: bool = True) -> None:
        size = dict(self.plan).get(suite, "")
        if ok:
            self.measured[suite] = {size: {"seconds": round(time.perf_counter() - self.suite_start, 1),
                                           "cases": max(self.suite_cases, 1)}}
        self.finished.append(suite)
        self.case_name = "done" if ok else "FAILED"
        self._show()

    def close(self, out: Path) -> None:
        self._clear()
        if self.tty:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        if self.measured:  # this run's durations, read by the next run's estimate
            path = out / "durations.json"
            table = {}
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError):
                pass
            for suite, sizes in self.measured.items():
                table.setdefault(suite, {}).update(sizes)
            path.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")


class ChildProgress:
    """A suite's process under `_isolated`: case announcements go to stdout as tagged lines that
    the parent's `Progress` reads; report lines are printed as they are."""

    def message(self, msg: str) -> None:
        print(msg, flush=True)

    def case(self, suite: str, name: str) -> None:
        # sys.__stdout__: under pytest-benchmark (`run_pytest`) sys.stdout is pytest's capture.
        print(PROGRESS_TAG + json.dumps({"suite": suite, "case": name}), file=sys.__stdout__, flush=True)


# Size each suite runs at per profile: "quick" is the CI smoke run, "full" the complete report,
# and the default the report a person waits for (at most about 10 minutes on a 2-core machine):
# the kernel suites whose full size costs at most about a minute (bench/durations.json) at full
# size, where their targets are stated; the LOBPCG/randomized SVD suite, the optimizer steps and
# the training runs (most of --full's time) at their quick sizes.
DEFAULT_SIZES = {suite: "quick" for suite in SUITES} | {
    suite: "full" for suite in ("fd", "roots", "kron", "shared_basis", "polar", "eigenbasis", "stability")}


def sizes(args: argparse.Namespace) -> dict[str, str]:
    if args.quick:
        return {suite: "quick" for suite in SUITES}
    if args.full:
        return {suite: "full" for suite in SUITES}
    return dict(DEFAULT_SIZES)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="every suite at its smallest size (CI smoke run)")
    size.add_argument("--full", action="store_true",
                      help="every suite at full size (the complete report; several times the default run)")
    parser.add_argument("--only", choices=SUITES, action="append", help="run these suites only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--in-process", action="store_true",
                        help="run several suites in this process instead of one process each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one suite under _isolated
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    suites = args.only or list(SUITES)
    size_of = sizes(args)
    if len(suites) > 1 and not args.in_process:
        return _isolated(suites, size_of, args)

    progress = ChildProgress() if args.child else Progress([(s, size_of[s]) for s in suites], load_durations(args.out))
    say = Log(progress)
    env = environment()
    say(f"linalg_core benchmarks: {env['cpus']} CPUs, JAX {env['jax']}, NumPy {env['numpy']}")
    for b in env["blas"]:
        say(f"  BLAS: {b['prefix']} {b['version']} kernel={b['architecture']} threads={b['num_threads']}")
    if env["openblas_coretype"]:
        say(f"  warning: OPENBLAS_CORETYPE={env['openblas_coretype']} is still set")

    from bench import report

    global _announce
    _announce = progress.case
    summaries = []
    for suite in suites:
        module = importlib.import_module(f"bench.bench_{suite}")
        say(f"\n== {suite} ({size_of[suite]} size) ==")
        if isinstance(progress, Progress):
            progress.begin_suite(suite)
        # Timed under pytest-benchmark, the report rendered from its JSON. A suite with no case at
        # this size (the accelerator suite without a GPU) skips pytest, which fails a run that
        # collects no test.
        planned = module.cases(size_of[suite])
        done = cases_from_json(run_pytest(suite, size_of[suite], args.out)) if planned else {}
        result = module.finish(size_of[suite], done, Log(progress, suite))
        result["size"] = size_of[suite]
        result["environment"] = env
        path = args.out / f"{suite}.json"
        path.write_text(json.dumps(result, indent=2, default=float))
        summarize = getattr(module, "summarize", None)
        section = summarize(result, args.out) if summarize else report.write_suite(suite, result, args.out)
        (args.out / f"{suite}.md").write_text(section + "\n")  # read back by _isolated
        summaries.append(section)
        if isinstance(progress, Progress):
            progress.end_suite(suite)
        say(f"wrote {path}")
    if args.child:
        return 0
    (args.out / "summary.md").write_text("\n\n".join(summaries) + "\n")
    progress.close(args.out)
    print(f"\nreport: {args.out / 'summary.md'}", flush=True)
    return 0


def _isolated(suites: Sequence[str], size_of: dict[str, str], args: argparse.Namespace) -> int:
    """One fresh process per suite, then one summary. The peers bring their own thread pools
    (XLA's, NumPy's and SciPy's OpenBLAS copies, torch's): in one long process the pools of
    earlier suites stay alive and compete with the later suites' calls, so a ratio would depend
    on which suites ran before it; each suite gets a clean process.

    A child prints its report lines and tagged case announcements on one pipe; this process
    passes the report lines on and draws the progress from the announcements."""
    import subprocess

    progress = Progress([(s, size_of[s]) for s in suites], load_durations(args.out))
    failed = []
    for suite in suites:
        cmd = [sys.executable, "-m", "bench", "--only", suite, "--out", str(args.out), "--child"]
        if size_of[suite] == "quick":
            cmd.append("--quick")
        else:
            cmd.append("--full")
        progress.begin_suite(suite)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
            for line in child.stdout:
                # A tag can follow text on its line (pytest's progress dots have no newline).
                text, tagged, event = line.rstrip("\n").partition(PROGRESS_TAG)
                if text.strip():
                    progress.message(text)
                if tagged:
                    event = json.loads(event)
                    progress.case(event["suite"], event["case"])
        ok = child.returncode == 0
        if not ok:
            failed.append(suite)
        progress.end_suite(suite, ok)
    summaries = []
    for suite in suites:
        section = args.out / f"{suite}.md"  # each child's summary section (and its plots)
        if suite in failed or not section.exists():
            summaries.append(f"### {suite}: FAILED (see the log)")
            continue
        summaries.append(section.read_text().rstrip("\n"))
    (args.out / "summary.md").write_text("\n\n".join(summaries) + "\n")
    progress.close(args.out)
    print(f"\nreport: {args.out / 'summary.md'}" + (f"; failed suites: {failed}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
