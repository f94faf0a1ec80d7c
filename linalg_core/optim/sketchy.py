r"""Sketchy: Shampoo and full-matrix AdaGrad with Frequent Directions sketches of the statistics.

Sketchy Shampoo (Feinberg et al. 2023, Alg. 3 with the EMA of Observation 6): per block ``G``,
the Kronecker factors ``L = E_beta2[G G^T]`` and ``R = E_beta2[G^T G]`` are kept as rank-``l`` FD
sketches ``(U, lambda, rho)`` (:func:`linalg_core.fd_update` with factor ``sqrt(1 - beta2) G`` and
decay ``beta2``), and the update applies the escaped-mass compensated roots in factored form
(:func:`linalg_core.fd_apply_inverse_root`):

.. math:: \Delta = (U_L \Lambda_L U_L^\top + (\rho_L + \epsilon_L) I)^{-1/p}\, G\,
                   (U_R \Lambda_R U_R^\top + (\rho_R + \epsilon_R) I)^{-1/p}.

Sketchy AdaGrad (Alg. 2): the flattened parameter, cut into blocks of ``block_size``, has one FD
sketch of ``sum_t g_t g_t^T`` per block and the update ``(U Lambda U^T + (rho + eps) I)^(-1/2) g``.

A relative ``eps`` is ``eps * (lambda_1 + rho)`` per sketch (applied exactly through
``(A + e s I)^(-1/p) = s^(-1/p) (A / s + e I)^(-1/p)``). With ``l`` at least the block side the
sketch is exact and Sketchy Shampoo equals :func:`~linalg_core.optim.shampoo` with the same decay.

Memory per block: ``(br + bc) l + 2 l + 2`` floats against Shampoo's ``2 (br^2 + bc^2)``.

References
----------
V. Feinberg, X. Chen, Y. J. Sun, R. Anil, E. Hazan, "Sketchy: Memory-efficient adaptive
regularization with Frequent Directions", NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from linalg_core.optim import blocking, distribute, transform

__all__ = ["SketchyAdagradOptions", "SketchyShampooOptions", "scale_by_sketchy_adagrad",
           "scale_by_sketchy_shampoo", "sketchy_adagrad", "sketchy_shampoo"]


@dataclasses.dataclass(frozen=True)
class SketchyShampooOptions(transform.CommonOptions):
    """Options of :func:`sketchy_shampoo` and :func:`scale_by_sketchy_shampoo` (and those of
    :class:`~linalg_core.optim.transform.CommonOptions`; ``mesh`` spreads the FD updates).

    Attributes
    ----------
    rank : int
        Sketch rank ``l`` per factor (``min(rank, side)`` per block).
    b2 : float in (0, 1]
        Decay of the EMA (1 sums); bias corrected when ``< 1``.
    eps, eps_mode : ridge ``eps * (lambda_1 + rho)`` (relative) or ``eps`` (absolute), added to
        the escaped mass.
    p : int
        Root order per factor (4: exponent ``-1/4``).
    statistics_every : int
        The sketches are updated on calls ``1, 1 + N, ...``. The sketch is its own
        preconditioner: there is no root cache and so no ``precondition_every``.
    """

    rank: int = 256
    b2: float = 0.999
    eps: float = 1e-6
    eps_mode: str = "relative"
    p: int = 4
    statistics_every: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        transform.check_statistics(self)
        transform.check_positive_int(self, "rank", "p", "statistics_every")


@dataclasses.dataclass(frozen=True)
class SketchyAdagradOptions(transform.CommonOptions):
    """Options of :func:`sketchy_adagrad` and :func:`scale_by_sketchy_adagrad` (and those of
    :class:`~linalg_core.optim.transform.CommonOptions`; the graft defaults to ``"none"``, the
    algorithm as published).

    Attributes
    ----------
    rank : int
        Sketch rank per block.
    b2 : float in (0, 1]
        1 (default) sums as AdaGrad; ``< 1`` is the EMA variant, bias corrected.
    eps, eps_mode : ridge, absolute (default) or relative to ``lambda_1 + rho``.
    """

    graft: str = "none"
    rank: int = 256
    b2: float = 1.0
    eps: float = 1e-6
    eps_mode: str = "absolute"

    def __post_init__(self) -> None:
        super().__post_init__()
        transform.check_statistics(self)
        transform.check_positive_int(self, "rank")


def _apply_root(state: Any, x: Any, *, p: int, eps: float, relative: bool, bias: Any) -> Any:
    """``(bias * S + e I)^(-1/p) x`` per block for the sketch ``S`` of ``state`` (block axis first),
    with ``e = eps * bias * (lambda_1 + rho)`` when ``relative``, else ``eps``."""
    import jax.numpy as jnp

    from linalg_core import FDState, fd_apply_inverse_root

    scale = jnp.ones(state.escaped_mass.shape, state.eigvals.dtype)
    if relative:
        total = (state.eigvals[..., 0] + state.escaped_mass) * bias
        scale = jnp.where(total > 0, total, 1.0)
    shrink = bias / scale
    scaled = FDState(state.basis, state.eigvals * shrink[..., None], state.escaped_mass * shrink)
    y = fd_apply_inverse_root(scaled, x, p=p, eps=eps)
    return y * (scale ** (-1.0 / p))[..., None, None]


def _fd_step(states: tuple, factors: tuple, *, beta: float, mesh: Any, axis: Any) -> tuple:
    """FD updates of several block-batched sketches by their factors; returns the new sketches
    and the per-block count of failed updates (those leave their sketch unchanged)."""
    import jax.numpy as jnp

    from linalg_core import fd_update

    def run(states, factors):
        new, bad = [], 0
        for state, factor in zip(states, factors):
            updated, info = fd_update(state, factor=factor, beta=beta)
            new.append(updated)
            bad = bad + (info.status != 0).astype(jnp.int32)
        return tuple(new), bad

    return distribute.map_blocks(run, states, factors, mesh=mesh, axis=axis)


def scale_by_sketchy_shampoo(options: SketchyShampooOptions | None = None, /, **overrides: Any) -> Any:
    """Sketchy Shampoo's preconditioner alone; options as :func:`sketchy_shampoo`."""
    import jax
    import jax.numpy as jnp

    from linalg_core import fd_init

    o = transform.resolve_options(SketchyShampooOptions, options, overrides)
    b2, eps, p, rank = float(o.b2), float(o.eps), int(o.p), int(o.rank)
    factor_scale = 1.0 if b2 == 1.0 else (1.0 - b2) ** 0.5

    def init_leaf(lay, dtype):
        nb, (br, bc) = lay.num_blocks, lay.block
        left = fd_init(br, min(rank, br), dtype=dtype, batch_shape=(nb,), backend="jax")
        right = fd_init(bc, min(rank, bc), dtype=dtype, batch_shape=(nb,), backend="jax")
        return (left, right), ()

    def block_step(stats, cache, g, lay, ctx):
        def update(operands):
            sketches, g_ = operands
            factors = (factor_scale * g_, factor_scale * jnp.swapaxes(g_, -1, -2))
            new, bad = _fd_step(sketches, factors, beta=b2, mesh=o.mesh, axis=o.mesh_axis)
            return new, bad.astype(jnp.int32)

        def keep(operands):
            return operands[0], jnp.zeros(g.shape[:1], jnp.int32)

        do_stats = transform.every(ctx.count, int(o.statistics_every))
        (left, right), bad = jax.lax.cond(do_stats, update, keep, (tuple(stats), g))
        bias = transform.bias_correction(b2, ctx, g.dtype)
        opts = dict(p=p, eps=eps, relative=o.eps_mode == "relative", bias=bias)
        y = _apply_root(left, g, **opts)
        pre = jnp.swapaxes(_apply_root(right, jnp.swapaxes(y, -1, -2), **opts), -1, -2)
        # A sketch that could not take this gradient (left unchanged by fd_update) gives no step:
        # the old sketch's root applied to a gradient it never saw can be arbitrarily large.
        pre = jnp.where((bad > 0)[:, None, None], 0.0, pre)
        return (left, right), cache, pre, jnp.sum(bad, dtype=jnp.int32)

    return transform.matrix_preconditioner(
        o, layout=lambda shape: blocking.block_layout(shape, o.block_size),
        init_leaf=init_leaf, block_step=block_step)


def sketchy_shampoo(learning_rate: Any, options: SketchyShampooOptions | None = None, /,
                    **overrides: Any) -> Any:
    r"""Sketchy Shampoo (Feinberg et al. 2023) as an ``optax.GradientTransformation``.

    Both Kronecker factors of every block are EMA Frequent Directions sketches of rank
    ``min(rank, side)``; the update is the escaped-mass compensated ``-1/p`` root of each applied
    in factored form (module docstring), grafted per block, then weight decay, momentum and
    ``-learning_rate``. The sketch is its own preconditioner: there is no root cache, so there is
    no ``precondition_every`` (``statistics_every`` sets how often the sketches are updated).

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : SketchyShampooOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`~linalg_core.optim.transform.PreconditionerState`;
        each matrix parameter's ``stats`` are its two :class:`linalg_core.FDState` sketches
        ``(left, right)``, block axis first (no ``cache``).

    Notes
    -----
    Cost per block and statistics update: two FD updates (:func:`linalg_core.fd_update`, ``auto``
    method); per step two factored applies, ``4 l br bc`` flops each.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.sketchy_shampoo(1e-3, optim.SketchyShampooOptions(rank=64), momentum=0.9)
    >>> state = opt.init({"w": jnp.zeros((256, 128)), "b": jnp.zeros(128)})

    References
    ----------
    Feinberg et al., "Sketchy: Memory-efficient adaptive regularization with Frequent
    Directions", NeurIPS 2023, Algorithm 3 and Observation 6.
    """
    o = transform.resolve_options(SketchyShampooOptions, options, overrides)
    return transform.finish(scale_by_sketchy_shampoo(o), learning_rate, o)


def scale_by_sketchy_adagrad(options: SketchyAdagradOptions | None = None, /, **overrides: Any) -> Any:
    """Sketchy AdaGrad's preconditioner alone; options as :func:`sketchy_adagrad`."""
    import jax.numpy as jnp

    from linalg_core import fd_init

    o = transform.resolve_options(SketchyAdagradOptions, options, overrides)
    b2, eps, rank = float(o.b2), float(o.eps), int(o.rank)
    factor_scale = 1.0 if b2 == 1.0 else (1.0 - b2) ** 0.5

    def init_leaf(lay, dtype):
        nb, (size, _) = lay.num_blocks, lay.block
        return (fd_init(size, min(rank, size), dtype=dtype, batch_shape=(nb,), backend="jax"),), ()

    def block_step(stats, cache, g, lay, ctx):
        (sketch,), bad = _fd_step(tuple(stats), (factor_scale * g,), beta=b2, mesh=o.mesh, axis=o.mesh_axis)
        pre = _apply_root(sketch, g, p=2, eps=eps, relative=o.eps_mode == "relative",
                          bias=transform.bias_correction(b2, ctx, g.dtype))
        # As in Sketchy Shampoo: no step from a sketch that could not take this gradient.
        pre = jnp.where((bad > 0)[:, None, None], 0.0, pre)
        return (sketch,), cache, pre, jnp.sum(bad, dtype=jnp.int32)

    return transform.matrix_preconditioner(
        o, layout=lambda shape: blocking.flat_layout(shape, o.block_size),
        init_leaf=init_leaf, block_step=block_step)


def sketchy_adagrad(learning_rate: Any, options: SketchyAdagradOptions | None = None, /,
                    **overrides: Any) -> Any:
    r"""Sketchy AdaGrad (Feinberg et al. 2023, Alg. 2) as an ``optax.GradientTransformation``.

    Every parameter (scalars and vectors included) is flattened and cut into blocks of at most
    ``block_size`` (:func:`~linalg_core.optim.blocking.flat_layout`); each block ``g`` keeps an FD
    sketch of ``sum_t g_t g_t^T`` (EMA when ``b2 < 1``) and is updated by

    .. math:: \Delta = (U \Lambda U^\top + (\rho + \epsilon) I)^{-1/2} g,

    the compensated FD-AdaGrad step whose regret is within the escaped mass of full-matrix
    AdaGrad's (their Theorem 3). With ``rank >= block_size`` it is full-matrix AdaGrad per block.

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : SketchyAdagradOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`~linalg_core.optim.transform.PreconditionerState`;
        each parameter's ``stats`` are one :class:`linalg_core.FDState` per block of its flattened
        values, block axis first.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.sketchy_adagrad(0.1, optim.SketchyAdagradOptions(rank=32, block_size=512))
    >>> state = opt.init({"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)})

    References
    ----------
    Feinberg et al., "Sketchy: Memory-efficient adaptive regularization with Frequent
    Directions", NeurIPS 2023, Algorithm 2.
    """
    o = transform.resolve_options(SketchyAdagradOptions, options, overrides)
    return transform.finish(scale_by_sketchy_adagrad(o), learning_rate, o)
