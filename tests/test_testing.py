"""The public hypothesis strategies of linalg_core.testing keep their promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linalg_core import testing as lct

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


@given(st.data(), st.integers(1, 40), st.sampled_from(lct.SPECTRUM_KINDS), lct.dtypes())
def test_spectra_are_descending_nonnegative(data, n, kind, dtype):
    lam = data.draw(lct.spectra(n, kind=kind, dtype=dtype))
    assert lam.shape == (n,) and lam.dtype == np.float64
    assert np.all(lam >= 0) and np.all(np.diff(lam) <= 0) and np.all(np.isfinite(lam))
    assert lam[0] > 0


@given(st.data(), st.integers(2, 40), st.sampled_from(["geometric", "linear", "outlier"]),
       st.floats(1.0, 1e10))
def test_spectra_honour_condition_number(data, n, kind, condition):
    lam = data.draw(lct.spectra(n, kind=kind, condition=condition))
    # Built from geomspace/linspace endpoints: exact up to a few ulps of the ratio.
    assert lam[0] / lam[-1] == pytest.approx(condition, rel=1e-9)


@given(st.data(), st.integers(2, 30))
def test_rank_deficient_spectra_honour_rank(data, n):
    rank = data.draw(st.integers(1, n - 1))
    lam = data.draw(lct.spectra(n, kind="rank_deficient", rank=rank, scale=3.0))
    assert np.count_nonzero(lam) == rank and lam[0] == pytest.approx(3.0)


@given(st.data())
def test_wide_scale_stays_in_range(data):
    lam = data.draw(lct.spectra(8, kind="flat", scale="wide"))
    assert 1e-12 <= lam[0] <= 1e12


@given(st.data(), st.integers(1, 32), lct.dtypes())
def test_orthogonal_matrices_are_orthogonal(data, n, dtype):
    q = data.draw(lct.orthogonal_matrices(n, dtype=dtype))
    assert q.dtype == np.dtype(dtype)
    # Householder QR in float64, then one rounding to dtype per entry: ||Q^T Q - I|| <= c n eps.
    err = np.abs(q.astype(np.float64).T @ q.astype(np.float64) - np.eye(n)).max()
    assert err <= 4 * n * np.finfo(dtype).eps


@given(st.data(), st.integers(1, 24), lct.dtypes(), lct.batch_shapes())
def test_psd_matrices_match_their_spectrum(data, n, dtype, batch):
    a, lam = data.draw(lct.psd_matrices_with_spectrum(n, dtype=dtype, batch_shape=batch))
    assert a.shape == batch + (n, n) and lam.shape == batch + (n,) and a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, np.swapaxes(a, -1, -2))
    computed = np.linalg.eigvalsh(a.astype(np.float64))[..., ::-1]
    # Forming Q diag(l) Q^T in float64 (backward error ~ n eps64 ||A||), rounding to dtype
    # (entrywise eps(dtype) |a_ij|, spectral norm <= n eps ||A||), then eigvalsh (Weyl).
    tol = lct.eigen_tolerance(dtype, n, 1.0) * lam.max(axis=-1, keepdims=True)
    assert np.all(np.abs(computed - lam) <= tol)


@given(st.data(), st.integers(1, 16))
def test_spd_matrices_are_definite(data, n):
    a, lam = data.draw(lct.spd_matrices_with_spectrum(n))
    assert lam[-1] > 0
    np.linalg.cholesky(a)


@given(st.data(), st.integers(1, 20), lct.dtypes(), st.sampled_from(["factor", "matrix"]))
def test_fd_streams_shapes(data, d, dtype, form):
    stream = data.draw(lct.fd_streams(d, steps=st.integers(1, 4), dtype=dtype, form=form,
                                      term_rank=st.integers(1, 3)))
    assert stream.form == form and 1 <= len(stream.terms) <= 4
    for t in stream.terms:
        assert t.dtype == np.dtype(dtype) and t.shape[0] == d and np.all(np.isfinite(t))
        if form == "matrix":
            assert t.shape == (d, d)
            np.testing.assert_array_equal(t, t.T)
        else:
            assert 1 <= t.shape[1] <= 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="form"):
        given(lct.fd_streams(4, steps=1, form="dense"))(lambda s: None)()
    with pytest.raises(ValueError, match="rank_deficient"):
        lct.spd_matrices(4, kind="rank_deficient")
