"""Test configuration: float64 in JAX, hypothesis profiles, a seeded RNG fixture."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from hypothesis import settings

from linalg_core import testing as lct

# The float64 oracles and float64 JAX paths need x64; float32 tests pass float32 explicitly.
jax.config.update("jax_enable_x64", True)

lct.register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, and different across tests."""
    seed = np.frombuffer(request.node.nodeid.encode(), dtype=np.uint8).astype(np.uint64).sum()
    return np.random.default_rng(int(seed))


def pytest_collection_modifyitems(config, items):
    """Under LINALG_CORE_PORTABLE=1 the JAX entry points take the portable kernels on the CPU as
    well, so tests that compare against or inspect the C++/FFI path (marked ``ffi_path``) would
    compare the portable kernels with themselves, and tests that reach no JAX entry point
    (marked ``numpy_path``: the NumPy and torch paths, the harnesses) would run exactly what the
    first run ran: both are deselected (and reported so), not skipped. Every other test runs on
    the portable path unchanged."""
    if os.environ.get("LINALG_CORE_PORTABLE") != "1":
        return
    marked = [item for item in items
              if item.get_closest_marker("ffi_path") is not None or item.get_closest_marker("numpy_path") is not None]
    if marked:
        dropped = set(map(id, marked))
        config.hook.pytest_deselected(items=marked)
        items[:] = [item for item in items if id(item) not in dropped]
