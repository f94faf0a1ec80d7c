"""pytest-benchmark as a timing backend for the benchmark suites (bench/test_bench_*.py).

    pytest bench/test_bench_kron.py --benchmark-only --benchmark-json=kron.json [--bench-size full]

Each case is a benchmark group with linalg_core and its peers side by side; accuracy goes into
each benchmark's extra_info. The cases come from the suite module itself (the same builders
`python -m bench` times), so the two backends cannot measure different things. The repository's
own test run (`python -m pytest`, testpaths = tests) does not collect this folder.
"""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=("quick", "full"), default="quick",
                     help="suite size for bench/test_bench_*.py (default: quick)")
