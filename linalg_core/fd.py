"""Frequent Directions (FD) sketches with escaped-mass tracking, plain and exponentially weighted.

An FD sketch summarises a stream of PSD terms ``A_T = sum_t beta^(T-t) term_t`` (d x d) by an
orthonormal basis ``U`` (d x l), eigenvalues ``lambda`` (l, descending, >= 0) and the cumulative
escaped mass ``rho`` such that

    0  <=  A_T - U diag(lambda) U^T  <=  rho I           (Loewner order)
    rho <= min_{k <= l} sum_{i > k} lambda_i(A_T) / (l + 1 - k).

Memory is d*l + l + 1 numbers per sketch instead of d^2. This is the statistic behind Sketchy
(Feinberg et al., 2023): ``fd_apply_inverse_root`` applies the escaped-mass compensated
preconditioner ``(U diag(lambda) U^T + (rho + eps) I)^(-1/p)`` without forming a d x d matrix.

Every function takes NumPy arrays (C++ kernels through pybind11, GIL released) or JAX arrays
(XLA FFI custom calls; ``jit``, ``vmap`` and leading batch axes work), with the same signature.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from linalg_core import _jax
from linalg_core import _native
from linalg_core import _validation as check
from linalg_core._torch import accepts_torch

__all__ = [
    "FDState",
    "FDInfo",
    "FD_METHODS",
    "FD_STATUS",
    "fd_init",
    "fd_update",
    "fd_apply_inverse_root",
    "fd_merge",
    "fd_state_bytes",
]

#: Codes of ``FDInfo.method``: the algorithm that produced the update. ``thin_stack_householder``
#: is the thin stack's exact fallback (and its only form when ``l + r > d``).
FD_METHODS: dict[str, int] = {k: v for k, v in _native.cpu.fd_methods.items() if v >= 0}
#: Codes of ``FDInfo.status``. Any status but ``ok`` leaves the state unchanged.
#:
#: - ``non_finite_input``: NaN/Inf in the term, a state field or ``x``;
#: - ``bad_beta``: ``beta`` outside ``(0, 1]``;
#: - ``eigensolver_failure``: LAPACK reported failure, or the answer failed the a-posteriori check
#:   (finite, ``lambda`` descending ``>= 0``, ``rho >= 0``);
#: - ``invalid_state``: a finite state out of contract (``lambda`` negative or not descending,
#:   ``rho < 0``);
#: - ``non_symmetric_term``: ``max|M - M^T| > 8 d eps max|M|`` (:func:`~linalg_core._validation.symmetry_tolerance`);
#: - ``indefinite_term``: a diagonal entry of ``M`` below ``-tau max|M|``, or an eigenvalue of
#:   ``C = beta S + M`` below ``-tau ||C||``, ``tau = sqrt(eps) + 16 d eps`` (never clipped);
#: - ``not_representable``: the new eigenvalues or escaped mass overflow the dtype, or the largest
#:   eigenvalue of ``C`` is positive but below ``tiny / eps`` (``tiny`` the smallest normal
#:   number: the smaller eigenvalues would be subnormal, flushed to zero under XLA).
#: (The codes are cpp/fd.h's, read from the compiled module.)
FD_STATUS: dict[str, int] = dict(_native.cpu.fd_status)
_METHOD_REQUEST = dict(_native.cpu.fd_methods)


class FDState(NamedTuple):
    """An FD sketch (a pytree). Batched sketches carry leading batch axes on every field.

    Attributes
    ----------
    basis : array, shape (..., d, l)
        Orthonormal columns ``U``.
    eigvals : array, shape (..., l)
        Sketch eigenvalues ``lambda``, descending, ``>= 0``.
    escaped_mass : array, shape (...)
        Cumulative escaped mass ``rho`` (decayed by ``beta`` like the stream).
    """

    basis: Any
    eigvals: Any
    escaped_mass: Any


class FDInfo(NamedTuple):
    """Diagnostics of one FD update (arrays of the batch shape; no host sync on the JAX path).

    Attributes
    ----------
    step_escaped_mass : array
        ``rho_t``, the (l+1)-th eigenvalue of ``beta U diag(lambda) U^T + term`` removed this step.
    residual : array
        ``rho_t / mu_1``: the spectral-norm error of this step's truncation relative to the norm of
        the matrix it truncated. Near 1 means the rank ``l`` is too small for this stream.
    iterations : array of int32
        Iterations of the eigensolver; 0, both methods are direct (LAPACK).
    converged : array of bool
        ``status == 0``.
    method : array of int32
        A value of :data:`FD_METHODS`.
    status : array of int32
        A value of :data:`FD_STATUS`. On any failure the state is returned unchanged.
    """

    status: Any
    converged: Any
    iterations: Any
    residual: Any
    method: Any
    step_escaped_mass: Any


@accepts_torch
def fd_state_bytes(dim: int, rank: int, *, dtype: Any = np.float32, batch_shape: Sequence[int] = ()) -> int:
    """Bytes of an FD state: ``(d*l + l + 1) * itemsize`` per sketch (vs ``d*d`` for the full statistic)."""
    per = (dim * rank + rank + 1) * np.dtype(dtype).itemsize
    return int(per * int(np.prod(batch_shape, dtype=np.int64)))


@accepts_torch
def fd_init(
    dim: int,
    rank: int,
    *,
    dtype: Any = np.float32,
    batch_shape: Sequence[int] = (),
    backend: str = "numpy",
) -> FDState:
    """An empty FD sketch: ``U`` = the first ``rank`` columns of the identity, ``lambda = 0``, ``rho = 0``.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of the sketched matrices.
    rank : int
        Sketch rank ``l``, ``1 <= l <= d`` (``l = d`` keeps the stream exactly).
    dtype : float32 or float64
        Dtype of the state; terms of other floating dtypes are cast to it by :func:`fd_update`.
    batch_shape : tuple of int
        Leading batch axes (one independent sketch per element, e.g. per parameter block).
    backend : {"numpy", "jax", "torch"}
        Array type of the returned state; ``"torch"``: CPU tensors, also what a torch ``dtype``
        gives when ``backend`` is not passed (:mod:`linalg_core._torch`).

    Returns
    -------
    FDState
        Shapes ``batch_shape + (d, l)``, ``batch_shape + (l,)`` and ``batch_shape``.
    """
    dt = check.state_dtype(dtype)
    dim, rank = int(dim), int(rank)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not 1 <= rank <= dim:
        raise ValueError(f"rank must satisfy 1 <= rank <= dim = {dim}, got {rank}")
    batch_shape = tuple(int(b) for b in batch_shape)
    basis = np.broadcast_to(np.eye(dim, rank, dtype=dt), batch_shape + (dim, rank)).copy()
    state = FDState(basis, np.zeros(batch_shape + (rank,), dt), np.zeros(batch_shape, dt))
    if backend == "jax":
        import jax.numpy as jnp

        return FDState(*(jnp.asarray(a) for a in state))
    if backend != "numpy":
        raise ValueError(f"backend must be 'numpy', 'jax' or 'torch', got {backend!r}")
    return state


def _state_parts(state: FDState) -> tuple[int, int, tuple[int, ...], np.dtype]:
    if not isinstance(state, tuple) or len(state) != 3:
        raise ValueError("state must be an FDState(basis, eigvals, escaped_mass)")
    basis, eigvals, escaped = state
    check.require_ndim(basis, 2, "state.basis", "(..., d, l)")
    dim, rank = basis.shape[-2:]
    batch = tuple(basis.shape[:-2])
    dt = check.state_dtype(basis.dtype, "state.basis dtype")
    if tuple(eigvals.shape) != batch + (rank,):
        raise ValueError(f"state.eigvals must have shape {batch + (rank,)}, got {tuple(eigvals.shape)}")
    if tuple(escaped.shape) != batch:
        raise ValueError(f"state.escaped_mass must have shape {batch}, got {tuple(escaped.shape)}")
    for name, a in (("state.eigvals", eigvals), ("state.escaped_mass", escaped)):
        if np.dtype(a.dtype) != dt:
            raise ValueError(f"{name} dtype {np.dtype(a.dtype)} differs from state.basis dtype {dt}")
    if rank > dim:
        raise ValueError(f"state.basis must have l <= d, got shape {tuple(basis.shape)}")
    return dim, rank, batch, dt


@accepts_torch
def fd_update(
    state: FDState,
    *,
    factor: Any = None,
    matrix: Any = None,
    beta: Any = 1.0,
    method: str = "auto",
) -> tuple[FDState, FDInfo]:
    r"""One Frequent Directions update of a sketch by a PSD term, with decay ``beta``.

    Computes the top ``l+1`` eigenpairs ``(mu_i, v_i)`` of

    .. math:: C = \beta\, U \operatorname{diag}(\lambda) U^\top + \text{term}

    and returns ``U' = [v_1..v_l]``, ``lambda'_i = mu_i - rho_t``, ``rho' = beta*rho + rho_t`` with
    ``rho_t = mu_{l+1}`` (Alg. 1 of Feinberg et al. 2023 with a sketch of ``l+1`` columns whose last
    is zero; ``beta < 1`` is the exponentially weighted variant, their Observation 6). Invariants,
    for the stream ``A_T = sum_t beta^(T-t) term_t``: ``0 <= A_T - U' diag(lambda') U'^T <= rho' I``
    and ``rho' <= min_{k<=l} sum_{i>k} lambda_i(A_T) / (l+1-k)``.

    Parameters
    ----------
    state : FDState
        The sketch, shapes ``(..., d, l)``, ``(..., l)``, ``(...)``.
    factor : array, shape (..., d, r), optional
        The term as ``G G^T``. Exactly one of ``factor`` and ``matrix`` is given.
    matrix : array, shape (..., d, d), optional
        The term as a dense symmetric PSD matrix (symmetrised as ``(M + M^T)/2``).
    beta : float or array broadcastable to the batch shape
        Decay in ``(0, 1]``. May be traced on the JAX path (a value outside ``(0, 1]`` then leaves
        the state unchanged with ``status = bad_beta``).
    method : {"auto", "thin_stack", "dense_eigh", "thin_stack_householder"}
        ``thin_stack``: the thin stack ``Z = [sqrt(beta) U diag(lambda)^(1/2), G]`` (d x n,
        n = l + r) is ``[U, Q2] F`` with ``Q2`` the part of ``G`` orthogonal to ``U`` (two
        Gram-Schmidt passes and an LQ factorisation of an r x d block), so the eigenvectors of
        ``C = Z Z^T`` are ``[U, Q2]`` times those of the n x n matrix ``F F^T``. All large work is
        GEMM: O(d n l) flops plus one n x n eigh. One Cholesky-QR step re-orthonormalises the new
        basis every update, so no loss of orthogonality accumulates over a stream; if
        ``[U, Q2]`` is found far from orthonormal (a term inside ``span(U)``), the update is redone
        by ``thin_stack_householder``: Householder QR of ``Z``, the eigendecomposition of
        ``R R^T`` and the basis applied through the reflectors (exact, ~3x slower; also used when
        ``n > d``). ``dense_eigh``: C formed with SYRK, tridiagonal reduction, divide and conquer,
        back-transformation of the top ``l+1`` vectors; O(d^3). ``auto`` takes the thin stack for
        factors with ``4 (l + r) <= 3 d``, else ``dense_eigh``.

    Returns
    -------
    state : FDState
        The updated sketch (same dtype as ``state``; batch shape broadcast with the term's).
    info : FDInfo
        Diagnostics per batch element.

    Raises
    ------
    ValueError
        Wrong shapes or dtypes (the message names the argument), both or neither of
        ``factor``/``matrix``, ``beta`` outside ``(0, 1]``, a non-finite term or state field,
        ``state.eigvals`` negative or not descending, ``state.escaped_mass < 0``, a ``matrix``
        that is not symmetric (:func:`~linalg_core._validation.symmetry_tolerance`). NumPy path;
        on the JAX path each of these leaves that sketch unchanged with its status code, so NaN
        never enters a state. What the computation finds (``indefinite_term``,
        ``not_representable``, ``eigensolver_failure``) is a status on both paths, the sketch
        unchanged (the failure policy of :mod:`linalg_core`).

    Notes
    -----
    Terms of any floating dtype are cast to the state's dtype (bfloat16 gradients accumulate in a
    float32 state). Cost per element: thin stack ``8 d l r + 2 d n l + 3 d l^2`` GEMM flops plus an
    ``n x n`` eigh, ``n = l + r``; dense ``d^2 (l + r) + 4/3 d^3 + O(d^2) + 2 d^2 l``.

    References
    ----------
    E. Liberty, "Simple and deterministic matrix sketching", KDD 2013.
    V. Feinberg, X. Chen, Y. J. Sun, R. Anil, E. Hazan, "Sketchy: Memory-efficient adaptive
    regularization with Frequent Directions", NeurIPS 2023.

    Examples
    --------
    >>> import numpy as np, linalg_core as lc
    >>> state = lc.fd_init(64, 8, dtype=np.float64)
    >>> g = np.random.default_rng(0).standard_normal((64, 4))
    >>> state, info = lc.fd_update(state, factor=g, beta=0.99)
    >>> bool(info.converged)
    True
    """
    if (factor is None) == (matrix is None):
        raise ValueError("pass exactly one of factor= and matrix=")
    if method not in _METHOD_REQUEST:
        raise ValueError(f"method must be one of {sorted(_METHOD_REQUEST)}, got {method!r}")
    is_matrix = matrix is not None
    term = matrix if is_matrix else factor
    if not _jax.is_jax_array(term):
        term = np.asarray(term)
    name = "matrix" if is_matrix else "factor"
    if is_matrix and method.startswith("thin_stack"):
        raise ValueError(f"method={method!r} needs a factor term; got matrix=")

    dim, rank, state_batch, dt = _state_parts(state)
    check.require_floating(term, name)
    check.require_ndim(term, 2, name, "(..., d, d)" if is_matrix else "(..., d, r)")
    if term.shape[-2] != dim:
        raise ValueError(f"{name} must have d = {dim} rows like state.basis, got shape {tuple(term.shape)}")
    if is_matrix and term.shape[-1] != dim:
        raise ValueError(f"matrix must be square (..., {dim}, {dim}), got shape {tuple(term.shape)}")
    if term.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(term.shape)}")
    beta_shape = tuple(np.shape(beta))
    batch = check.broadcast_batch(
        {"state": state_batch, name: tuple(term.shape[:-2]), "beta": beta_shape}
    )
    flags = dict(term_is_matrix=np.int32(is_matrix), method=np.int32(_METHOD_REQUEST[method]))

    if _jax.any_jax(*state, term, beta):
        return _update_jax(state, term, beta, batch, dt, flags)
    return _update_numpy(state, term, beta, batch, dt, name, flags)


def _broadcast_state(state: FDState, batch: tuple[int, ...], xp: Any) -> list:
    basis, eigvals, escaped = state
    dim, rank = basis.shape[-2:]
    return [
        xp.broadcast_to(basis, batch + (dim, rank)),
        xp.broadcast_to(eigvals, batch + (rank,)),
        xp.broadcast_to(escaped, batch),
    ]


def _require_state_values(parts, name: str = "state") -> None:
    """``ValueError`` naming the field unless the (NumPy) state is finite, ``lambda`` descending
    and ``>= 0`` and ``rho >= 0``: the invariants every update keeps."""
    parts = [np.asarray(a) for a in parts]
    for field, a in zip(FDState._fields, parts):
        check.require_finite(a, f"{name}.{field}")
    _, eigvals, escaped = parts
    if eigvals.size and not ((eigvals[..., -1] >= 0).all() and (np.diff(eigvals, axis=-1) <= 0).all()):
        raise ValueError(f"{name}.eigvals must be descending and >= 0, got e.g. "
                         f"{eigvals.reshape(-1, eigvals.shape[-1])[0][:6]}")
    if not (escaped >= 0).all():
        raise ValueError(f"{name}.escaped_mass must be >= 0, got min {escaped.min()}")


def _info(step, residual, method, status, xp: Any) -> FDInfo:
    return FDInfo(status=status, converged=status == 0, iterations=xp.zeros(status.shape, xp.int32),
                  residual=residual, method=method, step_escaped_mass=step)


def _update_numpy(state, term, beta, batch, dt, name, flags) -> tuple[FDState, FDInfo]:
    parts = [np.ascontiguousarray(a, dtype=dt) for a in _broadcast_state(state, batch, np)]
    term = np.asarray(term)
    term = np.ascontiguousarray(np.broadcast_to(term, batch + term.shape[-2:]), dtype=dt)
    beta = np.ascontiguousarray(np.broadcast_to(np.asarray(beta, dtype=dt), batch))
    if not ((beta > 0) & (beta <= 1)).all():
        raise ValueError(f"beta must lie in (0, 1], got {beta.ravel()[:4]}")
    check.require_finite(term, name)
    _require_state_values(parts)
    basis, eigvals, escaped, step, residual, method, status = _native().fd_update(
        *parts, term, beta, bool(flags["term_is_matrix"]), int(flags["method"])
    )
    # The kernel checked the matrix's symmetry (the rule of _validation.symmetry_tolerance).
    check.raise_if_reported(status, FD_STATUS["non_symmetric_term"], lambda: check.require_symmetric(term, "matrix"),
                            message=f"matrix must be symmetric (to {check.symmetry_tolerance(dt, term.shape[-1]):.3g} relative)")
    return FDState(basis, eigvals, escaped), _info(step, residual, method, status, np)


def _update_jax(state, term, beta, batch, dt, flags) -> tuple[FDState, FDInfo]:
    import jax.numpy as jnp

    parts = [jnp.asarray(a, dtype=dt) for a in _broadcast_state(state, batch, jnp)]
    term = jnp.asarray(term, dtype=dt)
    term = jnp.broadcast_to(term, batch + term.shape[-2:])
    beta = jnp.broadcast_to(jnp.asarray(beta, dtype=dt), batch)
    dim, rank = parts[0].shape[-2:]
    results = [
        (batch + (dim, rank), dt),
        (batch + (rank,), dt),
        (batch, dt),
        (batch, dt),
        (batch, dt),
        (batch, np.int32),
        (batch, np.int32),
    ]
    from linalg_core.portable import fd as portable

    basis, eigvals, escaped, step, residual, method, status = _jax.call(
        "linalg_core_fd_update", results, *parts, term, beta, portable=portable.update, **flags
    )
    return FDState(basis, eigvals, escaped), _info(step, residual, method, status, jnp)


@accepts_torch
def fd_apply_inverse_root(state: FDState, x: Any, *, p: float, eps: float,
                          return_status: bool = False) -> Any:
    r"""Applies the escaped-mass compensated preconditioner of a sketch to ``x``.

    .. math::
        y = (U \Lambda U^\top + f I)^{-1/p} x
          = f^{-1/p} x + U \operatorname{diag}(\delta) U^\top x,
        \quad \delta_j = (\lambda_j + f)^{-1/p} - f^{-1/p},\ f = \rho + \epsilon

    in factored form: two GEMMs of ``d x l`` by ``l x n``, never a ``d x d`` matrix
    (``4 d l n`` flops). ``rho`` compensates the mass the sketch dropped, which makes the
    preconditioner an upper bound of the full-matrix one (Feinberg et al. 2023, Lemma 10).

    Accuracy. When ``lambda >> f`` (a sketch's first ``l`` steps, ``rho = 0``) and ``x`` lies
    mostly in ``span(U)``, both terms are ``~ f^(-1/p) |x|`` while ``y ~ (lambda + f)^(-1/p) |x|``:
    in float32 the sum loses up to 2%. So ``delta_j = f^(-1/p) expm1(-log1p(lambda_j / f) / p)``
    is evaluated without cancellation and, whenever the amplification
    ``(1 + lambda_1 / f)^(1/p)`` exceeds 2, both GEMMs accumulate in float64 (float32 operands
    widened exactly; the portable JAX kernel always, when x64 is enabled): the result is within
    one rounding to the output dtype plus ``(d + l) eps64 f^(-1/p) |x|`` of the exact formula, a
    few float32 ulps for amplifications up to ``~1e7 / (d + l)``. Up to 2, float32 GEMMs lose at
    most one bit more than any float32 product and run at float32 speed.

    Parameters
    ----------
    state : FDState
        Shapes ``(..., d, l)``, ``(..., l)``, ``(...)``.
    x : array, shape (..., d, n)
        Right-hand sides (use ``x[..., None]`` for a vector). Batch axes broadcast with the state's.
    p : float
        Root order, ``> 0`` (2 for AdaGrad, 4 for Shampoo factors).
    eps : float
        Ridge ``> 0`` added to the escaped mass.
    return_status : bool
        Also return a status per batch element (:data:`FD_STATUS`: ``ok``, ``non_finite_input``
        for NaN/Inf in ``x`` or the state, ``invalid_state``, ``not_representable`` when ``y``
        overflows the dtype). Such an element's output is zero (finite); on the NumPy path bad
        input raises instead. Without ``return_status`` an overflowing ``y`` raises on the NumPy
        path (there is no other place to report it).

    Returns
    -------
    y : array, shape (..., d, n), the state's dtype.
    status : array of int32, shape (...), only with ``return_status=True``.

    Raises
    ------
    ValueError
        Wrong shapes or dtypes, NaN/Inf in ``x`` or a state field, ``lambda`` not descending or
        negative, ``rho < 0`` (NumPy path; the message names the argument); a ``y`` that overflows
        the dtype, NumPy path, unless ``return_status``.
    """
    dim, rank, state_batch, dt = _state_parts(state)
    if not _jax.is_jax_array(x):
        x = np.asarray(x)
    check.require_floating(x, "x")
    check.require_ndim(x, 2, "x", "(..., d, n)")
    if x.shape[-2] != dim:
        raise ValueError(f"x must have d = {dim} rows like state.basis, got shape {tuple(x.shape)}")
    p = check.positive_number(p, "p")
    eps = check.positive_number(eps, "eps")
    batch = check.broadcast_batch({"state": state_batch, "x": tuple(x.shape[:-2])})
    out_shape = batch + tuple(x.shape[-2:])
    if _jax.any_jax(*state, x):
        import jax.numpy as jnp

        parts = [jnp.asarray(a, dtype=dt) for a in _broadcast_state(state, batch, jnp)]
        x = jnp.broadcast_to(jnp.asarray(x, dtype=dt), out_shape)
        from linalg_core.portable import fd as portable

        (y,) = _jax.call("linalg_core_fd_apply_inverse_root", [(out_shape, dt)], *parts, x,
                         portable=portable.apply_inverse_root, p=np.float64(p), eps=np.float64(eps))
        status = portable.state_status(*parts, x)
        # A finite x can still give a y beyond the dtype's range (x near its max, f^(-1/p) > 1).
        overflow = (status == FD_STATUS["ok"]) & ~jnp.all(jnp.isfinite(y), axis=(-2, -1))
        status = jnp.where(overflow, FD_STATUS["not_representable"], status).astype(jnp.int32)
        y = jnp.where((status == FD_STATUS["ok"])[..., None, None], y, jnp.zeros((), dt))
        return (y, status) if return_status else y
    parts = [np.ascontiguousarray(a, dtype=dt) for a in _broadcast_state(state, batch, np)]
    x = np.ascontiguousarray(np.broadcast_to(np.asarray(x), out_shape), dtype=dt)
    _require_state_values(parts)
    y, finite = _native().fd_apply_inverse_root(*parts, x, p, eps)
    # The kernel scanned each y: NaN/Inf in x shows there (c0 x is one of its terms), so x itself
    # is scanned only then, to name it; a finite x with a non-finite y is an overflow.
    overflow = ~finite.astype(bool)
    if np.any(overflow):
        check.require_finite(x, "x")
        if not return_status:
            raise ValueError(f"fd_apply_inverse_root: the result is not representable in {dt} (x times "
                             f"(rho + eps)^(-1/p) overflows); pass return_status=True for a status instead")
        y[overflow] = 0
    status = np.where(overflow, FD_STATUS["not_representable"], FD_STATUS["ok"]).astype(np.int32)
    return (y, status) if return_status else y


@accepts_torch
def fd_merge(states: Sequence[FDState], *, method: str = "auto", return_info: bool = False) -> Any:
    r"""The FD sketch of the sum of several streams, from their sketches.

    With ``S_j = U_j diag(lambda_j) U_j^T`` the sketch of stream ``A_j`` (escaped mass ``rho_j``),
    the merge is one FD update of ``S_1`` by the factor ``[U_2 lambda_2^(1/2), ..., U_m lambda_m^(1/2)]``
    with ``beta = 1``, and ``rho = sum_j rho_j + rho_t``. The invariants hold for ``sum_j A_j``:
    ``0 <= sum_j (A_j - S_j) + (sum_j S_j - S) <= (sum_j rho_j + rho_t) I``, and the trace argument
    of Liberty's bound adds up the same way, so ``rho <= min_k sum_{i>k} lambda_i / (l+1-k)``
    (mergeable summaries, Agarwal et al. 2013). Data-parallel workers can sketch locally and
    exchange ``d x l`` sketches instead of all-reducing ``d x d`` statistics.

    Parameters
    ----------
    states : sequence of FDState
        Same ``d``, dtype and broadcastable batch shapes; ranks may differ. The result has the
        rank of ``states[0]``.
    method : str
        As in :func:`fd_update`.
    return_info : bool
        Also return the :class:`FDInfo` of the update. Where its status is not ``ok``, the
        result is ``states[0]`` unchanged (the other masses are not added either).

    Returns
    -------
    FDState, or (FDState, FDInfo) with ``return_info=True``.

    Raises
    ------
    ValueError
        As :func:`fd_update`, naming ``states[i]``; and, NumPy path without ``return_info``, a
        merge whose status is not ``ok`` (there is no other place to report it).
    """
    states = list(states)
    if not states:
        raise ValueError("states must hold at least one FDState")
    dim, _, _, dt = _state_parts(states[0])
    if len(states) == 1:
        if not return_info:
            return states[0]
        xp = np if not _jax.any_jax(*states[0]) else __import__("jax.numpy").numpy
        zero = xp.zeros(states[0].escaped_mass.shape, dt)
        status = xp.zeros(zero.shape, np.int32)
        return states[0], _info(zero, zero, status, status, xp)
    jax_path = _jax.any_jax(*(a for s in states for a in s))
    if jax_path:
        import jax.numpy as xp
    else:
        xp = np
    factors, masses = [], []
    for i, s in enumerate(states[1:], start=1):
        d_i, _, _, dt_i = _state_parts(s)
        if d_i != dim or dt_i != dt:
            raise ValueError(
                f"states[{i}] has d = {d_i}, dtype {dt_i}; states[0] has d = {dim}, dtype {dt}"
            )
        if not jax_path:
            _require_state_values(s, f"states[{i}]")
        factors.append(s.basis * xp.sqrt(xp.maximum(s.eigvals, 0))[..., None, :])
        masses.append(s.escaped_mass)
    batch = check.broadcast_batch({f"states[{i}]": tuple(s.escaped_mass.shape) for i, s in enumerate(states)})
    factors = [xp.broadcast_to(f, batch + tuple(f.shape[-2:])) for f in factors]
    merged, info = fd_update(states[0], factor=xp.concatenate(factors, axis=-1), beta=1.0, method=method)
    # A failed update returns states[0] unchanged: the other streams' masses are not added to it.
    escaped = xp.where(info.status == FD_STATUS["ok"], merged.escaped_mass + sum(masses), merged.escaped_mass)
    merged = merged._replace(escaped_mass=escaped)
    if not return_info and not jax_path and np.any(info.status != FD_STATUS["ok"]):
        codes = sorted({name for name, code in FD_STATUS.items() if np.any(info.status == code)} - {"ok"})
        raise ValueError(f"fd_merge: the merge failed with status {', '.join(codes)} (FD_STATUS); "
                         "pass return_info=True for the status and states[0] unchanged instead")
    return (merged, info) if return_info else merged


def _native():
    from linalg_core._native import cpu

    return cpu
