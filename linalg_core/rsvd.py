"""Randomized SVD and symmetric eigendecomposition with warm start (Halko-Martinsson-Tropp).

The top of a spectrum, repeatedly, from a good previous guess: FD on dense terms, the ridge of
inverse roots and the shared-basis update all need it. The test matrix Omega is drawn here (a
JAX key on the JAX path; an int seed or ``numpy.random.Generator`` on the NumPy path) and a
previous basis can fill its first columns; the C++ kernel is deterministic given Omega.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _native
from linalg_core import _validation as check
from linalg_core._scaling import power_of_two_scale
from linalg_core._torch import accepts_torch

__all__ = ["RSVD_METHODS", "RSVD_STATUS", "RandomizedInfo", "randomized_eigh", "randomized_svd"]

#: Codes of ``RandomizedInfo.status``; any failure returns zeros. ``non_symmetric`` (JAX path of
#: :func:`randomized_eigh`; the NumPy path raises): ``a`` is not symmetric to
#: :func:`linalg_core._validation.symmetry_tolerance`. ``max_iters``: ``tol`` was given and not met
#: after ``power_iters`` iterations; the answer of the last one is returned (as LOBPCG's
#: ``max_iters``), with ``converged`` false.
RSVD_STATUS: dict[str, int] = dict(_native.cpu.rsvd_status)  # cpp/rsvd.h
#: Codes of ``RandomizedInfo.method`` (cpp/rsvd.h's, read from the compiled module).
RSVD_METHODS: dict[str, int] = dict(_native.cpu.rsvd_methods)
_INT32_MAX = int(np.iinfo(np.int32).max)


class RandomizedInfo(NamedTuple):
    """Diagnostics (arrays of the batch shape; no host sync on the JAX path).

    Attributes
    ----------
    residual : array
        A-posteriori bound on ``||A - Q Q^T A||_2`` from ``probes`` Gaussian probes: it holds with
        probability at least ``1 - 10^-probes`` (Halko et al. 2011, Lemma 4.1). 0 when
        ``probes=0``. Absolute (in the units of ``a``); with ``tol``, ``converged`` means
        ``residual <= tol * ||Q^T A||_2``.
    iterations : array of int32
        Power iterations run: ``power_iters`` without ``tol``; with ``tol`` the first count whose
        bound met it (0 when ``A Omega`` already did), or ``power_iters`` when none did.
    converged : array of bool
        ``status == ok``: the answer was computed and, with ``tol``, meets it.
    method : array of int32
        A :data:`RSVD_METHODS` code: ``rayleigh_ritz`` (:func:`randomized_eigh`) or ``svd``.
    status : array of int32
        A :data:`RSVD_STATUS` code.
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any


def _test_matrices(key: Any, batch: tuple, n: int, l: int, probes: int, dt, warm_start, jax_path: bool):
    """Omega (batch, n, l) with the warm-start basis in its first columns, and the probes."""
    w = 0 if warm_start is None else warm_start.shape[-1]
    if jax_path:
        import jax
        import jax.numpy as jnp

        if key is None or isinstance(key, (int, np.integer, np.random.Generator)):
            raise ValueError("key must be a JAX PRNG key on the JAX path")
        k1, k2 = jax.random.split(key)
        fresh = jax.random.normal(k1, batch + (n, l - w), dt)
        probe = jax.random.normal(k2, batch + (n, probes), dt)
        if w:
            fresh = jnp.concatenate([jnp.broadcast_to(jnp.asarray(warm_start, dt), batch + (n, w)), fresh], -1)
        return fresh, probe
    if isinstance(key, np.random.Generator):
        rng = key
    elif isinstance(key, (int, np.integer)):
        rng = np.random.default_rng(int(key))
    else:
        raise ValueError(f"key must be an int seed or numpy.random.Generator on the NumPy path, got {type(key).__name__}")
    fresh = rng.standard_normal(batch + (n, l - w)).astype(dt)
    probe = rng.standard_normal(batch + (n, probes)).astype(dt)
    if w:
        fresh = np.concatenate([np.broadcast_to(np.asarray(warm_start, dt), batch + (n, w)), fresh], -1)
    return np.ascontiguousarray(fresh), np.ascontiguousarray(probe)


def _raise_on_non_finite(status: np.ndarray) -> None:
    """The NumPy path's contract: non-finite input raises (the kernel reports it as
    ``non_finite_input`` after its own finiteness scan, before any work)."""
    check.raise_if_reported(status, RSVD_STATUS["non_finite_input"], message="a contains NaN or Inf")


def _prepare(a, k, oversample, power_iters, warm_start, probes, tol, square: bool):
    jax_path = _jax.any_jax(a, warm_start)
    if not jax_path:
        a = np.asarray(a)
    check.require_floating(a, "a")
    if a.ndim < 2:
        raise ValueError(f"a must have shape (..., m, n), got {tuple(a.shape)}")
    m, n = a.shape[-2:]
    if square and m != n:
        raise ValueError(f"a must be square (..., n, n) for randomized_eigh, got {tuple(a.shape)}")
    k = check.integer(k, "k")
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k must satisfy 1 <= k <= min(m, n) = {min(m, n)}, got {k}")
    # Default oversampling (None): max(10, k), i.e. l = max(k + 10, 2 k) before the min(m, n) cap.
    oversample = max(10, k) if oversample is None else check.integer(oversample, "oversample", 0)
    check.integer(power_iters, "power_iters", 0)
    check.integer(probes, "probes", 0)
    if tol is not None:
        check.positive_number(tol, "tol")
        if int(probes) == 0:
            raise ValueError("tol needs probes >= 1: the stopping test is the probes' error bound, got probes=0")
    l = min(k + oversample, m, n)
    if warm_start is not None:
        if not _jax.is_jax_array(warm_start):
            warm_start = np.asarray(warm_start)
            check.require_floating(warm_start, "warm_start")
        if warm_start.ndim < 2 or warm_start.shape[-2] != n or warm_start.shape[-1] > l:
            raise ValueError(f"warm_start must have shape (..., {n}, w) with w <= {l}, got {tuple(warm_start.shape)}")
        if not jax_path:
            check.require_finite(warm_start, "warm_start")
    dt = np.dtype(np.float64) if np.dtype(a.dtype) == np.float64 else np.dtype(np.float32)
    return a, k, l, dt, tuple(a.shape[:-2]), warm_start, jax_path


def _finite_warm_start(status: Any, warm_start: Any, batch: tuple) -> Any:
    """JAX path: ``non_finite_input`` where the warm start holds NaN/Inf (the kernel sees only
    ``Omega``, whose non-finite columns it reports as a LAPACK failure)."""
    import jax.numpy as jnp

    if warm_start is None:
        return status
    bad = jnp.broadcast_to(~jnp.all(jnp.isfinite(warm_start), axis=(-2, -1)), batch)
    return jnp.where(bad, RSVD_STATUS["non_finite_input"], status).astype(jnp.int32)


def _attrs(k: int, power_iters: int, method: str, tol: float | None = None) -> dict[str, Any]:
    """The validated options as the one attribute dict (the keys are ``LC_RSVD_OPTIONS`` of
    cpp/rsvd.h, exported as ``rsvd_options``) that the FFI handler, the binding and the portable
    kernel each receive. ``tol=None`` travels as the kernels' 0: fixed ``power_iters``."""
    if int(power_iters) > _INT32_MAX:
        raise ValueError(f"'power_iters' must be <= {_INT32_MAX}, got {power_iters}")
    return dict(k=np.int64(k), power_iters=np.int64(power_iters), tol=np.float64(0.0 if tol is None else tol),
                method=np.int32(RSVD_METHODS[method]))


def _answered(status: Any) -> Any:
    """Where the outputs hold an answer: ``ok``, or ``max_iters`` (the best answer, tol unmet)."""
    return (status == RSVD_STATUS["ok"]) | (status == RSVD_STATUS["max_iters"])


@accepts_torch
def randomized_svd(
    a: Any,
    k: int,
    *,
    key: Any,
    oversample: int | None = None,
    power_iters: int = 2,
    warm_start: Any = None,
    probes: int = 10,
    tol: float | None = None,
) -> tuple[Any, Any, Any, RandomizedInfo]:
    r"""Top-``k`` SVD ``A ~ U diag(s) V^T`` by a randomized range finder.

    ``Q = orth(A Omega)`` with ``Omega`` (n x l, ``l = min(k + oversample, m, n)``) Gaussian, then
    ``power_iters`` QR-normalised power iterations ``Q = orth(A orth(A^T Q))``; ``B = Q^T A``
    (l x n) is decomposed exactly (gesdd) and ``U = Q U_B``. The error is
    ``||A - U S V^T|| <= (1 + c (l/(l-k))^(1/2) ...) sigma_{k+1}`` shrinking like
    ``(sigma_{k+1}/sigma_j)^(2 q + 1)`` with ``q`` power iterations (Halko et al. 2011, Sec. 10).
    Cost ``O(m n l (2 q + 2))`` GEMM flops plus ``O(n l^2)``; the defaults (``l = 2 k``,
    ``q = 2``) cost ``~ 12 m n k`` against sklearn's defaults' ``~ 16 m n (k + 10)``.

    With ``tol`` the power iterations stop at the first ``q = 0, 1, ..., power_iters`` whose basis
    ``Q`` (orthonormal) satisfies

    .. math::

        \varepsilon_Q = 10 \sqrt{2/\pi} \max_j \|(I - Q Q^T) A w_j\| \le
        \mathrm{tol} \, \|Q^T A\|_2 ,

    ``w_j`` the ``probes`` Gaussian probes. ``\varepsilon_Q`` bounds ``||(I - Q Q^T) A||_2``
    except with probability ``10^-probes`` (Halko et al. 2011, Lemma 4.1). The reference
    ``||Q^T A||_2`` is the largest computed singular value ``s[..., 0]``: a lower bound of
    ``||A||_2`` that the power iterations drive to it, so the test is never looser than
    ``varepsilon_Q <= tol ||A||_2`` and costs no pass over ``A`` (``A^T Q`` is the next product anyway).
    Then ``||A - Q Q^T A||_2 <= tol ||A||_2`` with that probability, and the rank-``k``
    truncation adds at most ``sigma_{k+1}``: ``||A - U S V^T||_2 <= tol ||A||_2 + sigma_{k+1}``
    (no second term when ``k = l``; Halko et al. 2011, Sec. 9.3). Each check costs a
    Householder QR of ``Y`` (``~ 4 m l^2`` flops where the fixed mode's LU costs ``~ m l^2``), the
    ``l x l`` Gram of ``A^T Q`` and its eigenvalues (``n l^2 + O(l^3)``) and the probes'
    projection (``4 m l r``): a few per cent of the ``4 m n l`` of one power iteration. Each batch
    element stops on its own.

    Parameters
    ----------
    a : array, shape (..., m, n)
        float32 or float64 (lower precisions computed in float32).
    k : int
        Number of singular triplets, ``1 <= k <= min(m, n)``.
    key : JAX PRNG key (JAX path) or int seed / ``numpy.random.Generator`` (NumPy path)
    oversample : int, optional
        Extra columns of ``Omega``. Default ``None``: ``max(10, k)``, so ``l = max(k + 10, 2 k)``
        (capped at ``min(m, n)``).
    power_iters : int
        Default 2. With ``l = 2 k`` the error of ``sigma_j`` shrinks like
        ``(sigma_{l+1} / sigma_j)^(2 q + 1)`` (Halko et al. 2011, Thm. 10.8 / Sec. 10.4), so
        doubling ``l`` buys more than extra power iterations at the same GEMM cost
        ``~ 2 (q + 1) m n l``: measured on the bench case (float32 4000 x 2000, ``s_i = 1/i``,
        k = 64, 1 BLAS thread) the defaults give ``max|s - s_exact| / s_1 = 1.2e-5`` in 209 ms
        against sklearn's defaults (``n_iter=7``, 10 oversamples, LU) 1.6e-5 in 294 ms; the
        previous defaults (10, 2) gave 7.2e-4 in 138 ms. For small ``k`` (measured k = 32,
        n = 600) sklearn's seven iterations are more accurate (3.9e-6 vs 2.6e-5) at more cost;
        pass ``power_iters`` for that regime.
    warm_start : array, shape (..., n, w), optional
        A previous right basis (e.g. last step's ``vt.T``), ``w <= l``: it fills the first
        columns of ``Omega``, the rest stays random.
    probes : int
        Gaussian probes for the a-posteriori error bound ``info.residual``.
    tol : float, optional
        Default ``None``: exactly ``power_iters`` iterations. A positive number: stop once
        ``info.residual <= tol * s[..., 0]`` (see above), ``power_iters`` being the maximum;
        needs ``probes >= 1``. It cannot be met below the dtype's rounding floor (a small
        multiple of ``sqrt(n) eps``), nor (with ``l`` columns) below ``sigma_{l+1} / sigma_1``.

    Returns
    -------
    u : (..., m, k), s : (..., k) descending, vt : (..., k, n), info : RandomizedInfo
        On ``lapack_failure`` (``info.status``; e.g. ``A Omega`` overflowing for a huge
        ``warm_start``) every output is zero. With ``tol`` unmet after ``power_iters``
        (``max_iters``, ``converged`` false) the answer of the last iteration is returned.

    Raises
    ------
    ValueError
        (NumPy path) NaN/Inf in ``a`` or ``warm_start``, wrong shapes or dtypes, ``k`` or an
        integer option out of range, a key of the wrong kind, ``tol`` not a positive finite
        number or given with ``probes=0``; the message names the argument.

    References
    ----------
    N. Halko, P. G. Martinsson, J. A. Tropp, "Finding structure with randomness", SIAM Review
    53 (2011).
    """
    a, k, l, dt, batch, warm_start, jax_path = _prepare(a, k, oversample, power_iters, warm_start, probes, tol, False)
    attrs = _attrs(k, power_iters, "svd", tol)
    m, n = a.shape[-2:]
    omega, probe = _test_matrices(key, batch, n, l, int(probes), dt, warm_start, jax_path)
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import rsvd as portable

        a = jnp.asarray(a, dt)
        scale = power_of_two_scale(a, jnp)
        u, s, vt, err, iters, status = _jax.call(
            "linalg_core_randomized_svd",
            [(batch + (m, k), dt), (batch + (k,), dt), (batch + (k, n), dt), (batch, dt), (batch, np.int32),
             (batch, np.int32)],
            a * scale[..., None, None], omega, probe, portable=portable.randomized_svd, **attrs)
        status = _finite_warm_start(status, warm_start, batch)
        good = _answered(status)
        u, vt = (jnp.where(good[..., None, None], x, 0.0) for x in (u, vt))
        s, err = jnp.where(good[..., None], s, 0.0), jnp.where(good, err, 0.0)
        xp = jnp
    else:
        from linalg_core._native import cpu

        a = np.ascontiguousarray(a, dtype=dt)
        scale = power_of_two_scale(a, np)
        # The kernel checks finiteness first (status 1, nothing computed): no second pass here.
        u, s, vt, err, iters, status = cpu.randomized_svd(a * scale[..., None, None], omega, probe, attrs)
        _raise_on_non_finite(status)
        xp = np
    # The kernel ran on c A with max|c A| in [1/2, 1) (c a power of two: exact), so its Gram
    # products and error norms cannot overflow or underflow; singular values scale back by 1/c.
    s, err = s / scale[..., None], err / scale
    info = RandomizedInfo(status, status == RSVD_STATUS["ok"], iters, err, xp.full(batch, RSVD_METHODS["svd"], xp.int32))
    return u, s, vt, info


@accepts_torch
def randomized_eigh(
    a: Any,
    k: int,
    *,
    key: Any,
    oversample: int | None = None,
    power_iters: int = 2,
    warm_start: Any = None,
    probes: int = 10,
    tol: float | None = None,
    method: str = "rayleigh_ritz",
) -> tuple[Any, Any, RandomizedInfo]:
    r"""Top-``k`` eigenpairs of a symmetric (PSD) matrix by a randomized range finder and
    Rayleigh-Ritz or the Nystrom approximation.

    ``Q`` as in :func:`randomized_svd` (``A^T = A``), then ``T = Q^T A Q`` (l x l) is
    diagonalised exactly: the Ritz pairs ``(mu_i, Q w_i)``, the ``k`` largest returned. For PSD
    ``A`` they are the top eigenpairs up to the range error ``info.residual``; a warm start from
    last step's eigenvectors makes one power iteration enough when the matrix changed little.

    Parameters
    ----------
    a : array, shape (..., n, n)
        Symmetric; only its action ``A X`` is used.
    k, key, oversample, power_iters, warm_start, probes
        As in :func:`randomized_svd` (``warm_start``: previous eigenvectors, (..., n, w)).
    tol : float, optional
        As in :func:`randomized_svd`: stop once ``info.residual <= tol ||A Q||_2``. For symmetric
        ``A``, ``||A Q||_2`` lies between the largest ``|mu_i|`` over the ``l`` Ritz values and
        ``||A||_2 = max |lambda_i|``, so again the test is never looser than one relative to
        ``||A||_2``; it is met for the range of ``Q``, the Ritz pairs then satisfy
        ``||A - Q T Q^T||_2 <= 2 tol ||A||_2`` (the Rayleigh-Ritz error of a basis whose range
        error is ``tol ||A||_2``). Same cost per check; ``A Q`` is the Rayleigh-Ritz product.
    method : {"rayleigh_ritz", "nystrom"}
        ``nystrom`` (PSD ``A`` only): the stabilised Nystrom approximation
        ``A Q (Q^T A Q)^+ Q^T A`` (Tropp et al. 2017, Alg. 3; shift ``nu = sqrt(n) eps ||A Q||_F``
        removed afterwards), closer to ``A`` than Rayleigh-Ritz for the same ``Q``; falls back to
        Rayleigh-Ritz when ``Q^T A Q`` is numerically not positive definite
        (``info.method`` says which answered).

    Returns
    -------
    eigvals : (..., k) descending, eigvecs : (..., n, k), info : RandomizedInfo
        Zero on ``lapack_failure``, as in :func:`randomized_svd`.

    Raises
    ------
    ValueError
        As :func:`randomized_svd`, and (NumPy path) an ``a`` that is not symmetric.
    """
    if method not in ("rayleigh_ritz", "nystrom"):
        raise ValueError(f"method must be 'rayleigh_ritz' or 'nystrom', got {method!r}")
    a, k, l, dt, batch, warm_start, jax_path = _prepare(a, k, oversample, power_iters, warm_start, probes, tol, True)
    attrs = _attrs(k, power_iters, method, tol)
    n = a.shape[-1]
    omega, probe = _test_matrices(key, batch, n, l, int(probes), dt, warm_start, jax_path)
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import rsvd as portable

        a = jnp.asarray(a, dt)
        scale = power_of_two_scale(a, jnp)
        w, v, err, iters, status, used = _jax.call(
            "linalg_core_randomized_eigh",
            [(batch + (k,), dt), (batch + (n, k), dt), (batch, dt), (batch, np.int32), (batch, np.int32),
             (batch, np.int32)],
            a * scale[..., None, None], omega, probe, portable=portable.randomized_eigh, **attrs)
        status = _finite_warm_start(status, warm_start, batch)
        scaled = a * scale[..., None, None]
        asym = jnp.max(jnp.abs(scaled - jnp.swapaxes(scaled, -1, -2)), axis=(-2, -1))
        asym_bad = jnp.isfinite(asym) & (asym > check.symmetry_tolerance(dt, n) * jnp.max(jnp.abs(scaled), axis=(-2, -1)))
        status = jnp.where(asym_bad & _answered(status), RSVD_STATUS["non_symmetric"], status)
        good = _answered(status)
        w, v, err = jnp.where(good[..., None], w, 0.0), jnp.where(good[..., None, None], v, 0.0), jnp.where(good, err, 0.0)
        xp = jnp
    else:
        from linalg_core._native import cpu

        a = np.ascontiguousarray(a, dtype=dt)
        # NaN compares false, so a non-finite a passes here and is reported by the kernel.
        check.require_symmetric(a, "a")
        scale = power_of_two_scale(a, np)
        w, v, err, iters, status, used = cpu.randomized_eigh(a * scale[..., None, None], omega, probe, attrs)
        _raise_on_non_finite(status)
        xp = np
    # As in randomized_svd: the kernel ran on c A (c a power of two), eigenvalues scale by 1/c.
    w, err = w / scale[..., None], err / scale
    info = RandomizedInfo(status, status == RSVD_STATUS["ok"], iters, err, used)
    return w, v, info
