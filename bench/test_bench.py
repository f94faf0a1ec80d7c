"""Every timed case of every suite under pytest-benchmark (see bench/conftest.py)."""

from __future__ import annotations

from bench import harness


class _Current:
    """The case being timed. Its methods' tests run one after another, so one case is built at a
    time and dropped when the next begins (the full-size inputs of two cases need not fit)."""

    key: tuple | None = None
    built: harness.Built | None = None


def _built(suite: str, case: harness.Case) -> harness.Built:
    key = (suite, case.label)
    if _Current.key != key:
        _Current.key, _Current.built = None, None
        _Current.built, _Current.key = case.build(), key
    return _Current.built


def test_case(benchmark, bench_method):
    suite, case, method = bench_method
    # One progress step per benchmark: a case's build counts towards its first method, and a
    # suite of few long benchmarks (the training runs) still moves the display.
    harness.announce(suite, f"{case.label}: {method}")
    built = _built(suite, case)
    benchmark.group = f"{suite}: {case.label}"
    benchmark.extra_info.update(suite=suite, case=case.label, method=method, record=built.record)
    benchmark.pedantic(built.fns[method], rounds=case.rounds, warmup_rounds=case.warmup, iterations=1)
