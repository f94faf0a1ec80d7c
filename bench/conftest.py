"""pytest-benchmark as the timing backend of the benchmark report (bench/test_bench.py).

    pytest bench/ --benchmark-only --benchmark-json=run.json [--bench-size full] [--bench-suite fd]
    pytest bench/ --benchmark-only --benchmark-autosave          # then, on another commit:
    pytest bench/ --benchmark-only --benchmark-compare

One test per (suite, case, method); each case is a benchmark group with linalg_core and its
peers side by side, and the case's untimed results (accuracy against the float64 oracle, state
bytes, targets) in every benchmark's ``extra_info["record"]``. The cases come from the suite
modules (``bench_X.cases``), the same ones ``python -m bench`` times and renders. The
repository's own test run (``python -m pytest``, testpaths = tests) does not collect this folder.
"""

from __future__ import annotations

import importlib

from bench.harness import SUITES


def pytest_addoption(parser):
    parser.addoption("--bench-size", default="quick",
                     help="suite size for bench/test_bench.py: quick (default), full, or a size a suite defines")
    parser.addoption("--bench-suite", action="append", choices=SUITES,
                     help="time these suites only (default: every suite)")


def suite_cases(config) -> list[tuple[str, object]]:
    """(suite, Case) for every case of the selected suites, in report order; nothing is built."""
    size = config.getoption("--bench-size")
    found = []
    for suite in config.getoption("--bench-suite") or SUITES:
        module = importlib.import_module(f"bench.bench_{suite}")
        if hasattr(module, "cases"):
            found += [(suite, c) for c in module.cases(size)]
    return found


def pytest_generate_tests(metafunc):
    if "bench_method" in metafunc.fixturenames:
        params = [(suite, c, method) for suite, c in suite_cases(metafunc.config) for method in c.methods]
        metafunc.parametrize("bench_method", params, ids=[f"{s}|{c.label}|{m}" for s, c, m in params])
