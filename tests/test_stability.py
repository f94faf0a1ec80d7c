import json

import numpy as np
import pytest

from linalg_core import stability


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
