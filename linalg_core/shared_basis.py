r"""Shared-basis block low-rank preconditioner (Yen et al., NeurIPS 2023, Algorithm 1).

The m diagonal blocks (b x b) of a layer's AdaGrad statistic are approximated by
``B R_i B^T + rho_i I`` with one orthonormal basis ``B`` (b x k) shared by all blocks, a symmetric
``R_i`` (k x k) per block and an escaped mass ``rho_i``: ``b k + m k^2 + m`` numbers instead of
``m b^2``. The preconditioner ``P_i = (B R_i B^T + (rho_i + eps) I)^(-1/2)`` is applied to ``g_i``
in factored form and ``P_i g_i`` returned, the sign of :func:`~linalg_core.fd_apply_inverse_root`
(the descent step is ``-lr P_i g_i``). With ``k = b`` the method is exactly block-diagonal AdaGrad.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from linalg_core import _jax
from linalg_core import _native
from linalg_core import _validation as check
from linalg_core._torch import accepts_torch

__all__ = ["SHARED_BASIS_STATUS", "SharedBasisInfo", "SharedBasisState", "shared_basis_init", "shared_basis_update"]


#: Status codes (shared with ``shared_basis::Status`` in cpp/shared_basis.h and the portable
#: kernel). On every code but ``ok`` the state is returned unchanged and the direction is zero.
SHARED_BASIS_STATUS: dict[str, int] = dict(_native.cpu.shared_basis_status)  # cpp/shared_basis.h


class SharedBasisState(NamedTuple):
    """Attributes: ``basis`` (b, k) orthonormal (zeros before the first update), ``coeffs``
    (m, k, k) symmetric PSD, ``escaped_mass`` (m,)."""

    basis: Any
    coeffs: Any
    escaped_mass: Any


class SharedBasisInfo(NamedTuple):
    """Attributes: ``status`` a :data:`SHARED_BASIS_STATUS` code (``ok`` only after the kernel
    checked its outputs: finite, ``B`` orthonormal, ``rho_i`` not decreasing, the new state inside
    the dtype's normal range; otherwise the state is returned unchanged and the direction is
    zero); ``converged`` status ``ok``; ``iterations`` the power iterations; ``residual``
    (scalar) the largest increment relative to ``max_i ||g_i||^2`` (0 for zero gradients or a
    failed update); ``method`` 0; ``step_escaped_mass`` (m,) the increments
    ``||M_i - B R_i B^T||_2``."""

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    step_escaped_mass: Any


def _relative_increment(step, grads, status, xp):
    """max_i step_i / max_i ||g_i||^2 without overflow or underflow: both are scaled by 2^-2e,
    2^e of the order of max|g| (ldexp, which no compiler re-associates into a subnormal)."""
    amax = xp.max(xp.abs(grads))
    e = xp.frexp(amax)[1]
    top = xp.max(xp.sum(xp.ldexp(grads, -e) ** 2, axis=1))
    value = xp.ldexp(xp.max(step), -2 * e) / xp.where(top > 0, top, 1)
    return xp.where((status == SHARED_BASIS_STATUS["ok"]) & (amax > 0), value, 0).astype(grads.dtype)


def _require_valid_state(parts) -> None:
    if (parts[2] < 0).any():
        raise ValueError(f"state.escaped_mass must be >= 0, got min {parts[2].min()!r}")
    check.require_symmetric(parts[1], "state.coeffs")


@accepts_torch
def shared_basis_init(blocks: int, block_dim: int, rank: int, *, dtype: Any = np.float32,
                      backend: str = "numpy") -> SharedBasisState:
    """The empty state: ``B = 0``, ``R_i = 0``, ``rho_i = 0`` (the paper's initialisation).

    ``backend``: ``"numpy"``, ``"jax"`` or ``"torch"`` (CPU tensors, also what a torch ``dtype``
    gives when ``backend`` is not passed), as in :func:`linalg_core.fd_init`.
    """
    dt = check.state_dtype(dtype)
    blocks, block_dim = check.integer(blocks, "blocks"), check.integer(block_dim, "block_dim")
    rank = check.integer(rank, "rank")
    if blocks < 1 or block_dim < 1:
        raise ValueError(f"blocks and block_dim must be >= 1, got {blocks}, {block_dim}")
    if not 1 <= rank <= block_dim:
        raise ValueError(f"rank must satisfy 1 <= rank <= block_dim = {block_dim}, got {rank}")
    state = SharedBasisState(np.zeros((block_dim, rank), dt), np.zeros((blocks, rank, rank), dt),
                             np.zeros(blocks, dt))
    if backend == "jax":
        import jax.numpy as jnp

        return SharedBasisState(*(jnp.asarray(x) for x in state))
    if backend != "numpy":
        raise ValueError(f"backend must be 'numpy', 'jax' or 'torch', got {backend!r}")
    return state


@accepts_torch
def shared_basis_update(
    state: SharedBasisState,
    grads: Any,
    *,
    key: Any,
    eps: float,
    power_iters: int = 1,
    oversample: int = 0,
) -> tuple[SharedBasisState, Any, SharedBasisInfo]:
    r"""One step of Algorithm 1: new shared basis, coefficients, escaped masses and the direction.

    With ``M_i = B R_i B^T + g_i g_i^T`` (never formed):

    1. ``B`` = top-k eigenvectors of ``A = sum_i M_i M_i^T`` by ``power_iters`` QR power steps
       from the previous basis (plus ``oversample`` random columns; random on the first call),
       with ``A Y`` through the paper's expansion in ``O(m k^3 + m b k + b k^2)``, then
       Rayleigh-Ritz;
    2. ``R_i = B^T M_i B - lambda_min(B^T M_i B) I``;
    3. ``rho_i += ||M_i - B R_i B^T||_2`` (power iteration on the factored difference);
    4. ``u_i = P_i g_i`` with ``P_i = (B R_i B^T + (rho_i + eps) I)^(-1/2)``, in factored form:
       the preconditioned gradient, not the descent step ``-P_i g_i`` (as
       :func:`~linalg_core.fd_apply_inverse_root` returns ``P x``).

    Parameters
    ----------
    state : SharedBasisState
    grads : array, shape (m, b)
        Per-block gradients (rows).
    key : JAX PRNG key (JAX path) or int seed / numpy.random.Generator (NumPy path)
        Random columns of the starting block (first call, oversampling).
    eps : float
        Ridge ``> 0``.
    power_iters, oversample : int

    Returns
    -------
    state : SharedBasisState, direction : (m, b), info : SharedBasisInfo
        ``direction[i] = P_i g_i`` (step 4). On any status but ``ok`` (``info.status``) the input
        state and a zero direction.

    Raises
    ------
    ValueError
        (NumPy path) NaN/Inf in ``grads`` or a state field, a negative escaped mass, non-symmetric
        coefficients, wrong shapes, non-integer ``power_iters``/``oversample``. The JAX path
        reports the value-dependent ones as a status instead.

    Notes
    -----
    Scale safety: the update is homogeneous (``g -> s g`` with the state and ``eps`` scaled by
    ``s^2`` gives the same basis and direction and the state scaled by ``s^2``); gradients and
    state far from unit size are scaled by a power of two first. A state whose size leaves the
    dtype's normal range cannot be stored at full precision: status ``out_of_range``.

    Accuracy of the direction: every ``R_i`` has a zero eigenvalue (the shift by
    ``lambda_min``), so where ``rho_i + eps = c`` is small against ``lambda_max(R_i)`` the exact
    formula on the stored state is sensitive to one rounding of ``R_i`` by the amplification
    ``A = (lambda_max / c)^(1/2)``; the direction is within ``4 (b + k) eps A`` (relative) of it.

    References
    ----------
    J. Yen, S. Yen, H. Chen, Y. Sun, C. Hsieh, "Block low-rank preconditioner with shared basis
    for stochastic optimization", NeurIPS 2023 (eq. 5-6, Algorithm 1).
    """
    jax_path = _jax.any_jax(*state, grads)
    basis, coeffs, escaped = state
    if not jax_path:
        basis, coeffs, escaped, grads = (np.asarray(x) for x in (basis, coeffs, escaped, grads))
    check.require_floating(grads, "grads")
    dt = check.state_dtype(basis.dtype, "state.basis dtype")
    if basis.ndim != 2 or coeffs.ndim != 3 or escaped.ndim != 1:
        raise ValueError("state must hold basis (b, k), coeffs (m, k, k), escaped_mass (m,)")
    b, k = basis.shape
    m = coeffs.shape[0]
    if tuple(coeffs.shape) != (m, k, k) or tuple(escaped.shape) != (m,):
        raise ValueError(f"state.coeffs must be ({m}, {k}, {k}) and escaped_mass ({m},), got "
                         f"{tuple(coeffs.shape)}, {tuple(escaped.shape)}")
    if tuple(grads.shape) != (m, b):
        raise ValueError(f"grads must have shape (m, b) = ({m}, {b}), got {tuple(grads.shape)}")
    eps = check.positive_number(eps, "eps")
    power_iters = check.integer(power_iters, "power_iters", minimum=0)
    oversample = check.integer(oversample, "oversample", minimum=0)
    s = min(k + oversample, b)
    if jax_path:
        import jax
        import jax.numpy as jnp

        if isinstance(key, (int, np.integer, np.random.Generator)):
            raise ValueError("key must be a JAX PRNG key on the JAX path")
        fresh = jax.random.normal(key, (b, s), dt)
        basis = jnp.asarray(basis, dt)
        # The previous basis starts the power steps; a zero basis (first call) is replaced by
        # random columns.
        start = jnp.where(jnp.any(basis != 0), basis, fresh[:, :k])
        y0 = jnp.concatenate([start, fresh[:, k:]], axis=1)
        results = [((b, k), dt), ((m, k, k), dt), ((m,), dt), ((m, b), dt), ((m,), dt), ((), np.int32)]
        from linalg_core.portable import shared_basis as portable

        new_basis, new_coeffs, new_escaped, direction, step, status = _jax.call(
            "linalg_core_shared_basis_update", results, basis, jnp.asarray(coeffs, dt),
            jnp.asarray(escaped, dt), jnp.asarray(grads, dt), y0, portable=portable.update,
            eps=np.float64(eps), power_iters=np.int64(power_iters))
        info = SharedBasisInfo(status, status == SHARED_BASIS_STATUS["ok"], jnp.int32(power_iters),
                               _relative_increment(step, jnp.asarray(grads, dt), status, jnp), jnp.int32(0), step)
        return SharedBasisState(new_basis, new_coeffs, new_escaped), direction, info
    rng = key if isinstance(key, np.random.Generator) else np.random.default_rng(int(key))
    y0 = rng.standard_normal((b, s)).astype(dt)
    if np.any(basis):
        y0[:, :k] = basis
    grads = np.ascontiguousarray(grads, dtype=dt)
    parts = [np.ascontiguousarray(x, dt) for x in (basis, coeffs, escaped)]
    from linalg_core._native import cpu

    new_basis, new_coeffs, new_escaped, direction, step, status = cpu.shared_basis_update(
        *parts, grads, np.ascontiguousarray(y0), eps, power_iters)
    status = np.int32(status)
    # The kernel checked the input contract (finite; rho >= 0; R_i symmetric, cpp/symmetry.h).
    fields = [f"state.{field}" for field in SharedBasisState._fields]
    check.raise_if_reported(status, SHARED_BASIS_STATUS["non_finite_input"],
                            lambda: check.require_finite(grads, "grads"),
                            *[lambda x=x, f=f: check.require_finite(x, f) for x, f in zip(parts, fields)],
                            message="grads or the state contains NaN or Inf")
    check.raise_if_reported(status, SHARED_BASIS_STATUS["invalid_state"], lambda: _require_valid_state(parts),
                            message="state.escaped_mass must be >= 0 and state.coeffs symmetric")
    info = SharedBasisInfo(status, np.bool_(status == SHARED_BASIS_STATUS["ok"]), np.int32(power_iters),
                           _relative_increment(step, grads, status, np), np.int32(0), step)
    return SharedBasisState(new_basis, new_coeffs, new_escaped), direction, info
