import json
import subprocess
import sys

import numpy as np
import pytest

from linalg_core import stability

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


@pytest.mark.parametrize("primitive", list(stability.PRIMITIVES))
def test_tiny_sweep_records(primitive):
    records = stability.sweep(primitive, [10.0, 1e4], dtypes=[np.float64], seed=0)
    assert len(records) == 2 * len(stability.PRIMITIVES[primitive])
    for r in records:
        assert {"primitive", "method", "kappa", "dtype", "error", "status", "residual",
                "tolerance", "ok_implies_accurate"} <= set(r)
        if r["kappa"] == 10.0:
            # float64 at kappa = 10, n <= 128: eps * kappa * n * c with c = 1e4 covering the
            # constants of the eigensolvers and the randomized top-k (oversampled, 2 power iterations:
            # its spectral error at kappa=10 on a geometric spectrum is ~(sigma_k+1/sigma_k)^5 ~ 5e-5).
            bound = 1e-4 if primitive == "randomized_svd" else np.finfo(np.float64).eps * 10 * 128 * 1e4
            assert r["error"] < bound, r
        assert r["ok_implies_accurate"] is not False, r


def test_main_writes_json(tmp_path):
    stability.main(["--quick", "--out", str(tmp_path)])
    records = json.loads((tmp_path / "stability.json").read_text())
    assert records
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert list(tmp_path.glob("*.png"))


def test_builders_are_the_testing_modules():
    """One builder: the sweep's matrices are linalg_core.testing's, so a user's sweep with
    testing's functions sees the very matrices the library's sweep saw."""
    from linalg_core import testing

    assert stability.matrix_with_spectrum is testing.matrix_with_spectrum
    assert stability.spectrum_values is testing.spectrum_values
    a = testing.matrix_with_spectrum(testing.spectrum_values("geometric", 8, 1e3), seed=3)
    # Q diag(lambda) Q^T in float64: its eigenvalues within 8 n eps64 ||A|| of lambda (Weyl, and
    # the two rounded products forming it).
    np.testing.assert_allclose(np.linalg.eigvalsh(a)[::-1], np.geomspace(1, 1e-3, 8), rtol=0,
                               atol=8 * 8 * np.finfo(np.float64).eps)


def test_stability_imports_without_hypothesis():
    """The sweep runs where only the library is installed: importing it loads no hypothesis."""
    code = "import sys, linalg_core.stability; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_sweep_callable_measures_the_users_function():
    """A backward-stable inverse stays within c n eps kappa of the exact one; a function that
    is wrong by 1e-3 is reported as wrong by 1e-3 at every kappa."""
    kappas = [10.0, 1e6]
    good = stability.sweep_callable(np.linalg.inv, np.linalg.inv, kappas, dtypes=[np.float64], n=16)
    for r in good:
        # Both sides invert the same float64 matrix; they differ by LAPACK's run-to-run
        # rounding only: n eps kappa, with c = 10 for the constants.
        assert r["error"] <= 10 * 16 * np.finfo(np.float64).eps * r["kappa"], r
    bad = stability.sweep_callable(lambda a: 1.001 * np.linalg.inv(a), np.linalg.inv, kappas,
                                   dtypes=[np.float64], n=16)
    for r in bad:
        assert abs(r["error"] - 1e-3) < 1e-6, r
