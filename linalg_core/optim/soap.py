r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024).

Per block ``G`` (``br x bc``) of each parameter (:mod:`.blocking`), at call ``t``:

.. math::
    L \leftarrow \beta_s L + (1-\beta_s)\, G G^\top,\qquad
    R \leftarrow \beta_s R + (1-\beta_s)\, G^\top G,

then the eigenbases ``Q_L``, ``Q_R`` of ``L``, ``R``: from a full ``eigh`` at the first
accepted call, refreshed by :func:`linalg_core.eigenbasis_refresh` (``refresh_steps`` power
steps from the previous basis) on calls ``f, 2f, ...`` (``f = precondition_frequency``), and kept
in between; at each refresh the second moment follows the sorted basis columns,
``V <- V[perm_L][:, perm_R]`` (after an ``eigh`` fallback, which has no column correspondence,
``V`` stays: both bases are sorted by eigenvalue, so moments keep their rank). Adam then runs in the rotated space, the first moment kept in the
original space and rotated, the second moment in the rotated space (the paper's Algorithm 3):

.. math::
    M \leftarrow \beta_1 M + (1-\beta_1) G,\quad
    G' = Q_L^\top G Q_R,\quad V \leftarrow \beta_2 V + (1-\beta_2)\, G'^{\odot 2},\\
    \Delta = Q_L \left(\frac{Q_L^\top M Q_R / (1-\beta_1^t)}{\sqrt{V / (1-\beta_2^t)} + \epsilon}\right) Q_R^\top.

The basis used at call ``t`` already includes ``G_t`` in its statistics (the paper refreshes
after the step, so its basis lags one call behind); the bias corrections are optax's Adam form.
Vectors and scalars (no second side to rotate) get plain Adam on blocks of the flattened
parameter, as the paper's default for 1-D parameters. A refresh whose status is not ``ok`` keeps
the previous basis and the unpermuted second moment, and is counted in ``diagnostics.failures``;
non-finite gradients skip the step (:mod:`.transform`).

Memory per block: ``2 (br^2 + bc^2)`` floats (statistics and bases) and ``2 br bc`` (moments).

References
----------
N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson, S. Kakade, "SOAP:
Improving and stabilizing Shampoo using Adam", arXiv:2409.11321, 2024.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from linalg_core.optim import blocking, distribute, transform

__all__ = ["SoapOptions", "scale_by_soap", "soap"]


@dataclasses.dataclass(frozen=True)
class SoapOptions(transform.CommonOptions):
    """Options of :func:`soap` and :func:`scale_by_soap` (and those of
    :class:`~linalg_core.optim.transform.CommonOptions`: blocking, grafting, weight decay, ...;
    SOAP's own step size is Adam's, so ``graft`` defaults to ``"none"``).

    Attributes
    ----------
    b1, b2 : float in [0, 1)
        Adam's decays of the first and second moment (the paper's defaults 0.95, 0.95).
    eps : float > 0
        Adam's epsilon.
    shampoo_beta : float in (0, 1) or None
        Decay of the factor statistics ``L``, ``R``; ``None``: ``b2`` (the paper's default).
    precondition_frequency : int
        The bases are refreshed on calls ``f, 2f, ...`` (the paper's 10).
    refresh_steps : int >= 1
        Power steps per refresh (:func:`linalg_core.eigenbasis_refresh` ``steps``; 1 in the paper).
    skip_tol, fallback_tol : float or None
        Passed to :func:`linalg_core.eigenbasis_refresh`: skip a refresh whose basis already
        diagonalises its statistic to ``skip_tol``; a full ``eigh`` when the power steps leave an
        off-diagonal mass above ``fallback_tol``.
    """

    graft: str = "none"
    b1: float = 0.95
    b2: float = 0.95
    eps: float = 1e-8
    shampoo_beta: float | None = None
    precondition_frequency: int = 10
    refresh_steps: int = 1
    skip_tol: float | None = None
    fallback_tol: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("b1", "b2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not float(self.eps) > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.shampoo_beta is not None and not 0.0 < float(self.shampoo_beta) < 1.0:
            raise ValueError(f"shampoo_beta must be in (0, 1), got {self.shampoo_beta}")
        transform.check_positive_int(self, "precondition_frequency", "refresh_steps")
        for name in ("skip_tol", "fallback_tol"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")

    @property
    def statistics_beta(self) -> float:
        return float(self.b2 if self.shampoo_beta is None else self.shampoo_beta)


def _is_matrix(lay: blocking.BlockLayout) -> bool:
    """A parameter with two sides to rotate (at least two axes longer than 1)."""
    return sum(1 for s in lay.shape if s != 1) >= 2


def scale_by_soap(options: SoapOptions | None = None, /, **overrides: Any) -> Any:
    """SOAP's preconditioner as a gradient transformation (no learning rate, no weight decay).

    Takes a :class:`SoapOptions` and/or its fields as keywords (module docstring for the rule).
    """
    import jax
    import jax.numpy as jnp

    from linalg_core import EIGENBASIS_METHODS, EIGENBASIS_STATUS, eigenbasis_refresh

    o = transform.resolve_options(SoapOptions, options, overrides)
    b1, b2, eps, beta_s = float(o.b1), float(o.b2), float(o.eps), o.statistics_beta
    freq = int(o.precondition_frequency)
    refresh_kw = dict(steps=int(o.refresh_steps), skip_tol=o.skip_tol, fallback_tol=o.fallback_tol)

    def layout(shape):
        lay = blocking.block_layout(shape, o.block_size)
        return lay if not lay.is_vector else blocking.flat_layout(shape, o.block_size)

    def init_leaf(lay, dtype):
        nb, (br, bc) = lay.num_blocks, lay.block
        moments = (jnp.zeros((nb, br, bc), dtype), jnp.zeros((nb, br, bc), dtype))
        if not _is_matrix(lay):
            return (), moments
        stats = (jnp.zeros((nb, br, br), dtype), jnp.zeros((nb, bc, bc), dtype))
        eye_l = jnp.broadcast_to(jnp.eye(br, dtype=dtype), (nb, br, br))
        eye_r = jnp.broadcast_to(jnp.eye(bc, dtype=dtype), (nb, bc, bc))
        return stats, (eye_l, eye_r) + moments

    def initial_bases(left, right, q_l, q_r, v):
        new_l, _, _, info_l = eigenbasis_refresh(left, None)
        new_r, _, _, info_r = eigenbasis_refresh(right, None)
        ok_l, ok_r = info_l.status == EIGENBASIS_STATUS["ok"], info_r.status == EIGENBASIS_STATUS["ok"]
        fails = (~ok_l).astype(jnp.int32) + (~ok_r).astype(jnp.int32)
        return (jnp.where(ok_l[:, None, None], new_l, q_l), jnp.where(ok_r[:, None, None], new_r, q_r),
                v, fails)

    def by_rank(perm, info):
        """The permutation the moments follow: ``perm`` where the new columns are the old ones
        refined (power steps, skipped); after an ``eigh`` fallback the columns have no old
        counterpart, and both bases being sorted by eigenvalue, the ``i``-th keeps the ``i``-th
        moments."""
        fresh = (info.method == EIGENBASIS_METHODS["eigh"])[:, None]
        return jnp.where(fresh, jnp.arange(perm.shape[-1], dtype=perm.dtype), perm)

    def refreshed_bases(left, right, q_l, q_r, v):
        new_l, _, perm_l, info_l = eigenbasis_refresh(left, q_l, **refresh_kw)
        new_r, _, perm_r, info_r = eigenbasis_refresh(right, q_r, **refresh_kw)
        perm_l, perm_r = by_rank(perm_l, info_l), by_rank(perm_r, info_r)
        ok_l, ok_r = info_l.status == EIGENBASIS_STATUS["ok"], info_r.status == EIGENBASIS_STATUS["ok"]
        # The second moment follows the basis columns: rows with Q_L's, columns with Q_R's.
        v_new = jnp.take_along_axis(v, perm_l[:, :, None], axis=1)
        v_new = jnp.where(ok_l[:, None, None], v_new, v)
        v_perm = jnp.take_along_axis(v_new, perm_r[:, None, :], axis=2)
        v_new = jnp.where(ok_r[:, None, None], v_perm, v_new)
        fails = (~ok_l).astype(jnp.int32) + (~ok_r).astype(jnp.int32)
        return (jnp.where(ok_l[:, None, None], new_l, q_l), jnp.where(ok_r[:, None, None], new_r, q_r),
                v_new, fails)

    def adam(m, v, g_rot, rotate_back, ctx):
        """Moments updated and the bias-corrected Adam direction, rotated back."""
        dtype = g_rot.dtype
        t = ctx.accepted.astype(dtype)
        v = b2 * v + (1.0 - b2) * g_rot * g_rot
        m_hat = m / (1.0 - b1 ** t)
        v_hat = v / (1.0 - b2 ** t)
        return v, rotate_back(m_hat, v_hat)

    def block_step(stats, cache, g, lay, ctx):
        if not _is_matrix(lay):
            m, v = cache
            m = b1 * m + (1.0 - b1) * g
            v, direction = adam(m, v, g, lambda m_hat, v_hat: m_hat / (jnp.sqrt(v_hat) + eps), ctx)
            return stats, (m, v), direction, jnp.zeros((), jnp.int32)
        left, right = stats
        q_l, q_r, m, v = cache
        gt = jnp.swapaxes(g, -1, -2)
        left = beta_s * left + (1.0 - beta_s) * (g @ gt)
        right = beta_s * right + (1.0 - beta_s) * (gt @ g)

        def keep(left, right, q_l, q_r, v):
            return q_l, q_r, v, jnp.zeros(q_l.shape[:1], jnp.int32)

        def bases(left, right, q_l, q_r, v):
            branch = jnp.where(ctx.accepted == 1, 1, jnp.where(ctx.count % freq == 0, 2, 0))
            return jax.lax.switch(branch, (keep, initial_bases, refreshed_bases), left, right, q_l, q_r, v)

        q_l, q_r, v, fails = distribute.map_blocks(bases, left, right, q_l, q_r, v, mesh=o.mesh, axis=o.mesh_axis)
        m = b1 * m + (1.0 - b1) * g

        def rotate(x):
            return jnp.swapaxes(q_l, -1, -2) @ x @ q_r

        def back(m_hat, v_hat):
            return q_l @ (rotate(m_hat) / (jnp.sqrt(v_hat) + eps)) @ jnp.swapaxes(q_r, -1, -2)

        v, direction = adam(m, v, rotate(g), back, ctx)
        return (left, right), (q_l, q_r, m, v), direction, jnp.sum(fails, dtype=jnp.int32)

    return transform.matrix_preconditioner(o, layout=layout, init_leaf=init_leaf, block_step=block_step)


def soap(learning_rate: Any, options: SoapOptions | None = None, /, **overrides: Any) -> Any:
    r"""SOAP (Adam in Shampoo's eigenbasis, blocked) as an ``optax.GradientTransformation``.

    Update rule per block (module docstring): Shampoo's statistics ``L``, ``R``, their eigenbases
    from :func:`linalg_core.eigenbasis_refresh` every ``precondition_frequency`` calls, Adam in the
    rotated space with the second moment permuted at each refresh, then weight decay, momentum
    (``options.momentum``, off by default: Adam's first moment is the momentum) and
    ``-learning_rate``.

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : SoapOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`~linalg_core.optim.transform.PreconditionerState`;
        a matrix parameter's ``stats`` are ``(L, R)`` and its ``cache`` ``(Q_L, Q_R, M, V)``, a
        vector's ``cache`` Adam's ``(M, V)``, block axis first.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.soap(3e-3, optim.SoapOptions(precondition_frequency=10, block_size=256))
    >>> state = opt.init({"w": jnp.zeros((8, 4)), "b": jnp.zeros((4,))})

    References
    ----------
    Vyas et al., "SOAP: Improving and stabilizing Shampoo using Adam", arXiv:2409.11321, 2024.
    """
    o = transform.resolve_options(SoapOptions, options, overrides)
    return transform.finish(scale_by_soap(o), learning_rate, o)
