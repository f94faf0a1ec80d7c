"""The benchmark's progress display (bench/harness.py): what `python -m bench` shows while it runs.

`test_kron_quick_run` and `test_isolated_run` run the benchmark itself (the kron suite at its
--quick size, a few seconds) as a subprocess and read the progress lines; they assert on the
lines' fields, never on timings."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import harness

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^progress \[[#-]{20}\] (\d+)/(\d+) cases \| (\w+): (.*) \| elapsed (\d+:\d\d) \| eta (\d+:\d\d)$")


def _bench(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LINALG_CORE_PORTABLE"}
    return subprocess.run([sys.executable, "-m", "bench", *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _progress(stderr: str) -> list[tuple[int, int, str, str, str]]:
    lines = [line for line in stderr.splitlines() if line.startswith("progress ")]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m[1]), int(m[2]), m[3], m[4], m[6]) for m in parsed]


@pytest.mark.bench
def test_kron_quick_run(tmp_path):
    """One suite in this process: a line per case (stderr is not a terminal), counts that only
    grow up to the total, and the report's path printed last."""
    proc = _bench("--only", "kron", "--quick", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = _progress(proc.stderr)
    cases = [case for _, _, suite, case, _ in events if suite == "kron"]
    assert any("steps=1" in c for c in cases) and any("steps=5" in c for c in cases), cases
    done = [d for d, _, _, _, _ in events]
    assert done == sorted(done) and events[-1][0] == events[-1][1]  # finished: all cases done
    assert events[-1][4] == "0:00"  # nothing left
    assert proc.stdout.rstrip().splitlines()[-1] == f"report: {tmp_path / 'summary.md'}"
    assert (tmp_path / "summary.md").exists()
    measured = json.loads((tmp_path / "durations.json").read_text())  # read by the next run's estimate
    assert measured["kron"]["quick"]["cases"] == 4  # one per benchmark: 2 cases x 2 methods


@pytest.mark.bench
def test_isolated_run(tmp_path):
    """Two suites, each in its own process: the children's case announcements reach the parent's
    display through their stdout pipe, and their report lines are passed on untagged."""
    proc = _bench("--only", "kron", "--only", "shared_basis", "--quick", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = _progress(proc.stderr)
    suites = [suite for _, _, suite, _, _ in events]
    assert suites.index("kron") < suites.index("shared_basis")
    assert any("steps=5" in case for _, _, _, case, _ in events)
    assert harness.PROGRESS_TAG not in proc.stdout
    assert "== kron (quick size) ==" in proc.stdout and "== shared_basis (quick size) ==" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == f"report: {tmp_path / 'summary.md'}"


def test_estimate_from_table():
    """The estimate: the table's seconds for what is left, scaled by this run's speed so far."""
    durations = {"a": {"quick": {"seconds": 10.0, "cases": 2}}, "b": {"quick": {"seconds": 30.0, "cases": 3}}}
    progress = harness.Progress([("a", "quick"), ("b", "quick")], durations, stream=io.StringIO())
    assert progress.total == 5
    progress.case("a", "a1")
    assert progress.done == 0 and progress.eta() == pytest.approx(40.0)  # nothing measured yet
    progress.case("a", "a2")
    assert progress.done == 1
    progress.end_suite("a")
    progress.start -= 20.0  # suite a "took" 20 s against 10 s expected: twice as slow
    progress.case("b", "b1")
    assert progress.done == 2
    assert progress.eta() == pytest.approx(60.0, rel=0.05)
    progress.case("b", "b2"), progress.case("b", "b3"), progress.case("b", "b4")  # one more than the table
    assert progress.total == 6
    assert "b: b4" in progress.line()
