r"""Kronecker power iteration: the best Frobenius-norm Kronecker approximation of a covariance.

Convention, stated once: ``vec`` stacks columns (column-major), so
``(A (x) B) vec(G) = vec(B G A^T)``. For ``H = E[vec(G) vec(G)^T]`` with ``G`` of shape (m, n),
the approximation is ``H ~ right (x) left`` with ``left`` (m x m) acting on the rows of ``G`` and
``right`` (n x n) on its columns: ``H vec(G') ~ vec(left G' right)``. With NumPy's row-major
flattening ``g = G.reshape(-1)`` the same pair reads ``E[g g^T] ~ np.kron(left, right)``.
One step from the identity gives ``left ~ E[G G^T]``, ``right ~ E[G^T G]`` (Shampoo's
statistics, up to scale); more steps converge to the optimum (Van Loan and Pitsianis 1993).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _native
from linalg_core import _validation as check
from linalg_core._torch import accepts_torch

__all__ = ["KRON_STATUS", "KronInfo", "kron_approx", "kron_approx_dense", "kron_cosine"]

#: Status codes (shared with ``kron::Status`` in cpp/kron.h and the portable kernel):
#: ``ok`` the answer passed its checks; ``non_finite_input`` NaN/Inf in the samples or ``h`` (JAX
#: path; zero outputs); ``out_of_range`` ``sigma`` (quadratic in the samples) lies outside the
#: dtype's normal range and is clamped to it, the factors are accurate (zero if they overflow
#: themselves); ``failed`` an eigensolver failed or the a-posteriori check did not hold (zero
#: outputs).
KRON_STATUS: dict[str, int] = dict(_native.cpu.kron_status)  # cpp/kron.h
_INT32_MAX = int(np.iinfo(np.int32).max)

_CONVERGED_CHANGE = 1e-3


class KronInfo(NamedTuple):
    """Diagnostics of the Kronecker approximation (arrays of the batch shape).

    Attributes
    ----------
    status : array of int32
        A :data:`KRON_STATUS` code. ``ok`` only when the outputs are finite and ``sigma`` lies in
        the bounds every step of the iteration obeys, ``tr(H) / sqrt(m n) <= sigma <= tr(H)``.
    converged : array of bool
        Status ``ok`` and ``residual <= 1e-3`` (the factors' directions stopped moving), or the
        dense SVD path with status ``ok``.
    iterations : array of int32
        Steps taken (0 for non-finite input).
    residual : array
        ``||R_k - R_{k-1}||_F`` of the unit-norm right factors over the last step (0 for the
        exact dense path): how far from a fixed point the iteration stopped.
    method : array of int32
        0 power iteration on samples, 1 exact SVD of the rearranged dense ``H``.
    sigma : array
        Estimate of the top singular value ``sigma_1`` of the rearranged ``H``
        (``||H - right (x) left||_F^2 = ||H||_F^2 - sigma_1^2`` at the optimum).
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    sigma: Any


def _samples(samples):
    jax_path = _jax.is_jax_array(samples)
    if not jax_path:
        samples = np.asarray(samples)
    check.require_floating(samples, "samples")
    if samples.ndim < 3:
        raise ValueError(f"samples must have shape (..., N, m, n), got {tuple(samples.shape)}")
    if min(samples.shape[-3:]) < 1:
        raise ValueError(f"samples must be non-empty, got shape {tuple(samples.shape)}")
    dt = np.dtype(np.float64) if np.dtype(samples.dtype) == np.float64 else np.dtype(np.float32)
    return samples, dt, jax_path


def _info(status, change, sigma, steps, method, xp):
    ok = status == KRON_STATUS["ok"]
    iterations = xp.where(status == KRON_STATUS["non_finite_input"], 0, steps).astype(xp.int32)
    return KronInfo(status, ok & (change <= _CONVERGED_CHANGE), iterations, change,
                    xp.full(status.shape, method, xp.int32), sigma)


def _attrs(steps: int) -> dict[str, Any]:
    """:func:`kron_approx`'s options, validated, as the one attribute dict (the keys are
    ``LC_KRON_OPTIONS`` of cpp/kron.h, exported as ``kron_options``) that the FFI handler, the
    binding and the portable kernel each receive."""
    steps = check.integer(steps, "steps", minimum=1)
    if steps > _INT32_MAX:
        raise ValueError(f"'steps' must be <= {_INT32_MAX}, got {steps}")
    return dict(steps=np.int64(steps))


@accepts_torch
def kron_approx(samples: Any, *, steps: int = 1) -> tuple[Any, Any, KronInfo]:
    r"""Best Kronecker approximation ``right (x) left`` of ``H = E[vec(G) vec(G)^T]`` from samples.

    Power iteration on the rearranged ``H`` without forming it (``mn x mn``):

    .. math:: L \leftarrow \tfrac1N \sum_i G_i R G_i^\top,\quad
              R \leftarrow \tfrac1N \sum_i G_i^\top L G_i,

    each normalised to unit Frobenius norm. The first step takes both factors from identities
    (so ``steps=1`` is exactly Shampoo's ``E[G G^T]``, ``E[G^T G]``); later steps alternate, so
    the cosine similarity to ``H`` (:func:`kron_cosine`) does not decrease after the first. Returned scaled so that
    ``right (x) left = sigma R (x) L``. ``L`` and ``R`` stay PSD (sums of congruences of PSD
    matrices). On the CPU each sum is one GEMM and one SYRK per sample with the other factor's
    PSD square root (``G_i R G_i^T = (G_i R^(1/2)) (G_i R^(1/2))^T``), the samples split across
    the cores: ``3 N m n (m + n)`` flops a step (the textbook ``4 N m n (m + n)``) plus two
    symmetric eigendecompositions; the first step needs no products.

    Scale safety: samples outside a safe range are scaled by a power of two first (exact), so
    samples scaled by ``s`` give factors scaled by ``s`` and ``sigma`` by ``s^2`` wherever the
    dtype can hold them (status ``out_of_range`` where ``sigma`` cannot).

    Parameters
    ----------
    samples : array, shape (..., N, m, n)
        Finite (``ValueError`` on the NumPy path, status ``non_finite_input`` on the JAX path).
    steps : int
        ``1`` gives Shampoo's ``E[G G^T]``, ``E[G^T G]`` (up to scale).

    Returns
    -------
    left : (..., m, m), right : (..., n, n), info : KronInfo

    References
    ----------
    C. F. Van Loan, N. Pitsianis, "Approximation with Kronecker products", 1993.
    D. Morwani, I. Shapira, N. Vyas, E. Malach, S. Kakade, L. Janson, "A new perspective on
    Shampoo's preconditioner", 2024, Sec. 3.
    """
    samples, dt, jax_path = _samples(samples)
    attrs = _attrs(steps)
    steps = int(attrs["steps"])
    n_, m, n = samples.shape[-3:]
    batch = tuple(samples.shape[:-3])
    if jax_path:
        import jax.numpy as jnp

        from linalg_core.portable import kron as portable

        left, right, sigma, change, status = _jax.call(
            "linalg_core_kron_approx",
            [(batch + (m, m), dt), (batch + (n, n), dt), (batch, dt), (batch, dt), (batch, np.int32)],
            jnp.asarray(samples, dt), portable=portable.approx, **attrs)
        xp = jnp
    else:
        from linalg_core._native import cpu

        samples = np.ascontiguousarray(samples, dtype=dt)
        left, right, sigma, change, status = cpu.kron_approx(samples, attrs)
        check.raise_if_reported(status, KRON_STATUS["non_finite_input"], message="samples contains NaN or Inf")
        xp = np
    return left, right, _info(status, change, sigma, steps, 0, xp)


@accepts_torch
def kron_approx_dense(h: Any, m: int, n: int, *, steps: int | None = None) -> tuple[Any, Any, KronInfo]:
    r"""Best Kronecker approximation ``right (x) left`` of an explicit ``H`` (mn x mn), exactly.

    The rearrangement operator maps ``right (x) left`` to ``vec(right) vec(left)^T`` (n^2 x m^2);
    its top singular pair ``(sigma, u, v)`` gives ``right = sqrt(sigma) mat(u)``,
    ``left = sqrt(sigma) mat(v)`` (Van Loan and Pitsianis 1993), with signs chosen so that both
    traces are nonnegative. For testing and small problems: ``O(m^2 n^2 min(m, n)^2)``. ``H`` is
    scaled by a power of two to a largest entry in ``[1/4, 1)`` before the SVD and the results
    scaled back (exact).

    Parameters
    ----------
    h : array, shape (..., m n, m n)
        Symmetric (:func:`linalg_core._validation.symmetry_tolerance`) and finite: ``ValueError``
        on the NumPy path; on the JAX path non-finite slices get status ``non_finite_input`` and
        zero outputs. Column-major ``vec`` convention (module docstring). bfloat16/float16 are
        computed, and returned, in float32.
    m, n : int
    steps : None
        Reserved; the dense path is exact (an SVD).
    """
    if steps is not None:
        raise ValueError("kron_approx_dense is exact (an SVD of the rearranged matrix): steps must be None")
    jax_path = _jax.is_jax_array(h)
    xp = np
    if jax_path:
        import jax.numpy as xp  # noqa: F811
    else:
        h = np.asarray(h)
    check.require_floating(h, "h")
    h = check.at_least_float32(h)
    m, n = check.integer(m, "m", minimum=1), check.integer(n, "n", minimum=1)
    if h.ndim < 2 or h.shape[-1] != m * n or h.shape[-2] != m * n:
        raise ValueError(f"h must have shape (..., {m * n}, {m * n}) for m={m}, n={n}, got {tuple(h.shape)}")
    batch = tuple(h.shape[:-2])
    finite = xp.all(xp.isfinite(h), axis=(-2, -1))
    if not jax_path:
        check.require_finite(h, "h")
        check.require_symmetric(h, "h")
    else:
        h = xp.where(finite[..., None, None], h, 0)  # an SVD of NaN/Inf may not return
    # A power of two 2^e (e even, so that sqrt(2^e) is one too) with max|h| 2^-e in [1/4, 1).
    amax = xp.max(xp.abs(h), axis=(-2, -1))
    e = xp.frexp(amax)[1]
    e = e + (e % 2)
    h = xp.ldexp(h, -e[..., None, None])
    # Column-major vec: entry (i + m j, k + m l) of right (x) left is right[j, l] left[i, k].
    # As an array indexed [j, i, l, k] (h reshaped (n, m, n, m) in column-major order = the
    # row-major reshape of h^T ... written out explicitly): R(H)[(j, l), (i, k)] = H[i + m j, k + m l].
    h4 = h.reshape(batch + (n, m, n, m))  # row-major: h4[..., j, i, l, k] = H[j m + i, l m + k]
    rearranged = xp.moveaxis(h4, (-4, -3, -2, -1), (-4, -2, -3, -1)).reshape(batch + (n * n, m * m))
    u, s, vt = xp.linalg.svd(rearranged, full_matrices=False)
    right = u[..., :, 0].reshape(batch + (n, n))
    left = vt[..., 0, :].reshape(batch + (m, m))
    sign = xp.where(xp.trace(left, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(h.dtype)[..., None, None]
    root = xp.ldexp(xp.sqrt(s[..., 0]), e // 2)[..., None, None]
    left, right = sign * root * left, sign * root * right
    with np.errstate(over="ignore"):  # a sigma beyond the dtype is status out_of_range, not a warning
        sigma = xp.ldexp(s[..., 0], e)
    tiny, big = np.finfo(h.dtype).tiny, np.finfo(h.dtype).max
    status = xp.where(finite, KRON_STATUS["ok"], KRON_STATUS["non_finite_input"])
    in_range = (sigma <= big) & ((sigma >= tiny) | (amax == 0))
    status = xp.where(finite & ~in_range, KRON_STATUS["out_of_range"], status)
    fine = xp.all(xp.isfinite(left), axis=(-2, -1)) & xp.all(xp.isfinite(right), axis=(-2, -1))
    status = xp.where(finite & ~fine, KRON_STATUS["failed"], status).astype(np.int32)
    good = (status == KRON_STATUS["ok"]) | (status == KRON_STATUS["out_of_range"])
    left = xp.where((good & fine)[..., None, None], left, 0)
    right = xp.where((good & fine)[..., None, None], right, 0)
    sigma = xp.where(finite, xp.clip(sigma, xp.where(amax > 0, tiny, 0), big), 0).astype(h.dtype)
    return left, right, _info(status, xp.zeros(batch, h.dtype), sigma, 0, 1, xp)


@accepts_torch
def kron_cosine(samples: Any, left: Any, right: Any) -> Any:
    r"""Cosine similarity ``tr(H K) / (||H||_F ||K||_F)`` of ``H = E[vec(G) vec(G)^T]`` and
    ``K = right (x) left``, from the samples, never forming an ``mn x mn`` matrix:
    ``tr(H K) = (1/N) sum_i <G_i, left G_i right>_F``, ``||K||_F = ||left||_F ||right||_F``,
    ``||H||_F = ||Gram||_F / N`` with ``Gram_ij = <G_i, G_j>_F``.

    Invariant under scaling of each argument (each is scaled by a power of two first). NaN/Inf
    arguments: ``ValueError`` naming them on the NumPy path, a NaN cosine on the JAX path.
    """
    samples, dt, jax_path = _samples(samples)
    _, m, n = samples.shape[-3:]
    batch = tuple(samples.shape[:-3])
    for name, x, d in (("left", left, m), ("right", right, n)):
        if tuple(np.shape(x)) != batch + (d, d):
            raise ValueError(f"{name} must have shape {batch + (d, d)}, got {tuple(np.shape(x))}")
    if jax_path or _jax.any_jax(left, right):
        import jax.numpy as jnp

        from linalg_core.portable import kron as portable

        (out,) = _jax.call("linalg_core_kron_cosine", [(batch, dt)], jnp.asarray(samples, dt),
                           jnp.asarray(left, dt), jnp.asarray(right, dt), portable=portable.cosine)
        return out
    from linalg_core._native import cpu

    left, right = np.asarray(left), np.asarray(right)
    for name, x in (("samples", samples), ("left", left), ("right", right)):
        check.require_finite(np.asarray(x), name)
    return cpu.kron_cosine(np.ascontiguousarray(samples, dtype=dt), np.ascontiguousarray(left, dtype=dt),
                           np.ascontiguousarray(right, dtype=dt))
