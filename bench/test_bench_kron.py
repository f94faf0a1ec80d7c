"""Kronecker power iteration under pytest-benchmark: one group per case (steps), linalg_core and
the NumPy peer side by side, the relative error against float64 in extra_info."""

from __future__ import annotations

import pytest

from bench import bench_kron


@pytest.fixture(scope="module")
def cases(request) -> dict[int, bench_kron.Case]:
    g = bench_kron.samples(request.config.getoption("--bench-size") == "quick")
    return {steps: bench_kron.make_case(g, steps) for steps in bench_kron.STEPS}


@pytest.mark.parametrize("method", bench_kron.METHODS)
@pytest.mark.parametrize("steps", bench_kron.STEPS)
def test_kron(benchmark, cases, steps, method):
    case = cases[steps]
    benchmark.group = f"kron {case.label}"
    benchmark.extra_info["rel_err_vs_float64"] = case.accuracy[method]
    benchmark.extra_info["sigma_per_step"] = case.ref_sigmas
    benchmark.pedantic(case.methods[method], rounds=3, warmup_rounds=1)
