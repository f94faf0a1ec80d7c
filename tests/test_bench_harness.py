"""The benchmark harness's bookkeeping (bench/harness.py): floors, the in-process runner and the
reading of pytest-benchmark's JSON. No timing is asserted, only what is done with the times."""

from __future__ import annotations

import json
import types

import pytest

from bench import harness

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


def _t(seconds: float) -> dict:
    return {"median_s": seconds, "min_s": seconds, "samples_s": [seconds]}


def test_floor_multiples_sum_each_methods_own_floor():
    """A shared floor counts for every method, a method's own floor for it alone:
    eigh = 6 / (1 + 2) = 2, newton = 12 / (1 + 3) = 3; a peer gets no multiple."""
    times = {"ours eigh": _t(6.0), "ours newton": _t(12.0), "peer": _t(1.0),
             "floor: syrk": _t(1.0), "floor: ours eigh: syevd": _t(2.0), "floor: ours newton: gemm x9": _t(3.0)}
    assert harness.floor_owner("floor: syrk") is None
    assert harness.floor_owner("floor: ours eigh: syevd") == "ours eigh"
    assert harness.floor_multiples(times, ["ours eigh", "ours newton"]) == {"ours eigh": 2.0, "ours newton": 3.0}
    assert harness.floor_multiples({"ours eigh": _t(1.0)}, ["ours eigh"]) == {}


def test_run_cases_builds_each_case_once_and_hands_finish_its_record():
    built = []

    def build(label):
        built.append(label)
        record = {"label": label, "calls": 0}

        def ours():
            record["calls"] += 1  # a callable may add to its record while it runs

        return harness.Built({"ours": ours, "peer": lambda: None}, record)

    module = types.SimpleNamespace(
        cases=lambda size: [harness.Case(f"{size} {i}", ("ours", "peer"), lambda i=i: build(f"{size} {i}"),
                                         rounds=2, warmup=1) for i in range(2)],
        finish=lambda size, done, log: done)
    done = harness.run_cases(module, "quick", lambda msg: None)
    assert built == ["quick 0", "quick 1"]
    assert list(done) == ["quick 0", "quick 1"]
    for entry in done.values():
        assert set(entry["times"]) == {"ours", "peer"}
        assert len(entry["times"]["ours"]["samples_s"]) == 2  # rounds
        # time_methods: two passes in opposite orders, each warm-up + rounds calls.
        assert entry["calls"] == 2 * (1 + 2)


def test_cases_from_json_reads_pytest_benchmarks_format(tmp_path):
    """Groups back per case label in run order, each method's median/min/rounds, and the record as
    the case's last benchmark saw it."""
    def bench(case, method, data, record):
        return {"group": f"s: {case}", "name": f"test_case[s|{case}|{method}]",
                "extra_info": {"suite": "s", "case": case, "method": method, "record": record},
                "stats": {"median": sorted(data)[len(data) // 2], "min": min(data), "data": data}}

    doc = {"benchmarks": [bench("b", "ours", [3.0, 1.0, 2.0], {"k": 1}),
                          bench("b", "peer", [5.0], {"k": 1, "added": True}),
                          bench("a", "ours", [4.0], {"k": 2})]}
    path = tmp_path / "s.benchmark.json"
    path.write_text(json.dumps(doc))
    done = harness.cases_from_json(path)
    assert list(done) == ["b", "a"]
    assert done["b"]["times"]["ours"] == {"median_s": 2.0, "min_s": 1.0, "samples_s": [3.0, 1.0, 2.0]}
    assert done["b"]["added"] is True and done["a"]["k"] == 2


def test_lobpcg_case_keeps_x64_to_itself(monkeypatch):
    """The LOBPCG case is float64 for every peer, JAX's included, but `pytest bench/` runs every
    suite in one process: the case must not turn x64 on for the suites after it (their JAX
    arrays would silently become float64). Built at a small size; x64 off around it, as in a
    process that did not ask for it."""
    import jax
    import numpy as np

    from bench import bench_eig

    if "jax lobpcg_standard" not in bench_eig.lobpcg_names():
        pytest.skip("jax.experimental.sparse.linalg.lobpcg_standard unavailable")
    monkeypatch.setattr(bench_eig, "lobpcg_shape", lambda size: (80, 4))
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        built = bench_eig.lobpcg_build(np.random.default_rng(0), "quick")
        leaked = jax.config.jax_enable_x64
        eigvals, _ = built.fns["jax lobpcg_standard"]()
        leaked_by_call = jax.config.jax_enable_x64
    finally:
        jax.config.update("jax_enable_x64", before)
    assert not leaked and not leaked_by_call
    assert eigvals.dtype == np.float64  # the JAX peer still ran in float64
