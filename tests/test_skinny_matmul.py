"""The dense LOBPCG's A X (cpp/skinny_matmul.h) against a float64 product.

Bound: every entry is a sum of n products accumulated in the input's precision, so
|Y - A X| <= gamma_n (|A| |X|) entrywise with gamma_n = n eps / (1 - n eps) (Higham, Accuracy and
Stability, Sec. 3.5); the test allows n eps (|A| |X|) plus the float64 reference's own rounding.
Sizes straddle the 2-register row tiles (16 rows float64, 32 float32), the 32-column panels of A,
the 8-column register tiles of Y and the two-thread row split.
"""

from __future__ import annotations

import numpy as np
import pytest

from linalg_core._native import cpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 33, 100, 1025])
@pytest.mark.parametrize("c", [1, 3, 7, 8, 9, 16, 17, 33])
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_float64_product(rng, dtype, n, c, threads):
    a = rng.standard_normal((n, n))
    a = (a + a.T).astype(dtype)  # symmetric: row- and column-major storage agree
    x = np.asfortranarray(rng.standard_normal((n, c)).astype(dtype))
    y = cpu._skinny_matmul(a, x, threads)
    assert y.dtype == dtype and y.shape == (n, c)
    a64, x64 = a.astype(np.float64), x.astype(np.float64)
    bound = n * np.finfo(dtype).eps * (np.abs(a64) @ np.abs(x64)) + 1e-300
    assert np.all(np.abs(y - a64 @ x64) <= bound)


def test_non_finite_entries_propagate():
    a = np.eye(40)
    a[3, 5] = a[5, 3] = np.nan
    y = cpu._skinny_matmul(a, np.asfortranarray(np.ones((40, 2))), 2)
    assert np.isnan(y[3]).all() and np.isnan(y[5]).all()
    assert np.isfinite(np.delete(y, [3, 5], axis=0)).all()
