"""The kernel-internal symmetric eigensolvers against float64 LAPACK (numpy.linalg.eigh):
cpp/small_eigh.h (LAPACK-free, for the shared-basis update's k x k blocks) and
cpp/tridiagonal_eigh.h (sytrd + stedc + a blocked back-transformation, for the eigh root).

Tolerances: Householder tridiagonalisation, implicit QL and divide and conquer are backward
stable, so the computed
pairs are exact for A + E with ||E||_2 <= c n eps ||A||_2; by Weyl every eigenvalue is within that
of the oracle's (`lct.eigen_tolerance`), the residual ||A V - V diag(w)|| is of the same size, and
V^T V - I is O(n eps) (orthogonal transformations only). Eigenvectors themselves are compared only
through those: in clusters they are not unique.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linalg_core import testing as lct
from linalg_core._native import cpu

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path


SOLVERS = {"small_eigh": cpu._small_eigh, "tridiagonal_eigh": cpu._tridiagonal_eigh}


@pytest.fixture(params=sorted(SOLVERS))
def solver(request):
    return SOLVERS[request.param]


def check_decomposition(a: np.ndarray, w: np.ndarray, v: np.ndarray, ok: np.ndarray, c: float = 10.0) -> None:
    dtype = a.dtype
    n = a.shape[-1]
    assert ok.all()
    a64 = a.astype(np.float64)
    norm = max(float(np.abs(np.linalg.eigvalsh(a64)).max(initial=0.0)), np.finfo(dtype).tiny)
    tol = lct.eigen_tolerance(dtype, n, norm, c)
    ref = np.linalg.eigvalsh(a64)
    assert np.all(np.diff(w.astype(np.float64), axis=-1) >= 0)  # ascending
    np.testing.assert_allclose(w, ref, rtol=0, atol=tol)
    v64 = v.astype(np.float64)
    resid = a64 @ v64 - v64 * w.astype(np.float64)[..., None, :]
    assert np.abs(resid).max(initial=0.0) <= tol
    orth = np.swapaxes(v64, -1, -2) @ v64 - np.eye(n)
    assert np.abs(orth).max(initial=0.0) <= c * n * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 32, 64, 128])
def test_random_psd_batch(rng, solver, dtype, n):
    g = rng.standard_normal((8, n, n))
    a = (g @ np.swapaxes(g, 1, 2)).astype(dtype)
    w, v, ok = solver(a)
    assert w.dtype == dtype and v.dtype == dtype
    check_decomposition(a, w, v, ok)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [129, 130, 258, 300])
def test_reflector_blocks(rng, dtype, n):
    """tridiagonal_eigh applies n - 1 reflectors in blocks of 128: one full block (n = 129), a
    full block and one reflector (130), two full blocks and one (258), a partial last block."""
    g = rng.standard_normal((2, n, n))
    a = (g + np.swapaxes(g, 1, 2)).astype(dtype)  # indefinite, Wigner-like: little deflation
    check_decomposition(a, *cpu._tridiagonal_eigh(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_matrices(rng, solver, dtype):
    n = 12
    big = 1e30 if dtype == np.float64 else 1e36  # near the top and bottom of the dtype's range
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    cases = {
        "zero": np.zeros((n, n)),
        "identity": np.eye(n),
        "diagonal": np.diag(rng.standard_normal(n)),
        "repeated": (q * np.repeat([3.0, -1.0, 0.5], 4)) @ q.T,
        "rank one": np.outer(q[:, 0], q[:, 0]) * 7.0,
        "indefinite": (q * np.linspace(-5, 5, n)) @ q.T,
        "tridiagonal": np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1),
        "graded": (q * np.geomspace(1, 1e-6, n)) @ q.T,
        "tiny scale": ((q * np.linspace(1, 2, n)) @ q.T) / big,
        "huge scale": ((q * np.linspace(1, 2, n)) @ q.T) * big,
        "outlier": (q * np.r_[1e6, np.ones(n - 1)]) @ q.T,
    }
    for name, a in cases.items():
        a = ((a + a.T) / 2).astype(dtype)
        w, v, ok = solver(a[None])
        try:
            check_decomposition(a[None], w, v, ok)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from err


def test_non_finite_input_is_declined(solver):
    a = np.eye(4)
    a[1, 2] = a[2, 1] = np.nan
    b = np.eye(4)
    b[0, 0] = np.inf
    _, _, ok = solver(np.stack([a, b, np.eye(4)]))
    assert ok.tolist() == [False, False, True]


@given(data=st.data(), n=st.integers(1, 40), dtype=lct.dtypes())
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_prescribed_spectra(data, n, dtype, name):
    """Every spectrum profile, condition numbers up to the dtype's cap, scales 1e-12..1e12."""
    a, lam = data.draw(lct.psd_matrices_with_spectrum(n, dtype=dtype, scale="wide"))
    w, v, ok = SOLVERS[name](a[None])
    check_decomposition(a[None], w, v, ok)


@given(data=st.data(), n=st.integers(2, 24))
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_equivariant_under_orthogonal_similarity(data, n, name):
    """(Q A Q^T) has A's eigenvalues, and its eigenvectors are Q times A's (up to sign) where the
    eigenvalues are simple; compared through the projectors of well-separated eigenvalues."""
    a, lam = data.draw(lct.psd_matrices_with_spectrum(n, kind="linear", condition=10.0))
    q = data.draw(lct.orthogonal_matrices(n))
    b = q @ a @ q.T
    b = (b + b.T) / 2
    wa, va, oka = SOLVERS[name](a[None])
    wb, vb, okb = SOLVERS[name](b[None])
    assert oka.all() and okb.all()
    tol = lct.eigen_tolerance(np.float64, n, 1.0)
    np.testing.assert_allclose(wa, wb, atol=tol)
    # linear spectrum in [0.1, 1]: gaps >= 0.9 / (n - 1), so each eigenvector is determined up to
    # sign with error <= tol / gap (Davis-Kahan).
    gap = 0.9 / (n - 1)
    mapped = np.einsum("ij,jk->ik", q, va[0])
    pb = np.einsum("ij,kj->jik", vb[0], vb[0])
    pm = np.einsum("ij,kj->jik", mapped, mapped)
    assert np.abs(pb - pm).max() <= 10 * tol / gap
