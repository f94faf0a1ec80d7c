r"""Shared-basis AdaGrad: the block low-rank preconditioner with one basis per layer block.

Each block ``G`` (``br x bc``) of a parameter is ``bc`` sub-blocks ``g_i`` (its columns, e.g. the
incoming weights of one output unit of a dense layer), whose full-matrix AdaGrad statistics
``sum_t g_i g_i^T`` (``br x br``) are approximated by ``B R_i B^T + rho_i I`` with one orthonormal
basis ``B`` (``br x k``) shared by all ``bc`` columns. :func:`linalg_core.shared_basis_update` does
Algorithm 1 of Yen et al. (2023) (warm-started randomized power step for ``B``, projection for
``R_i``, escaped mass ``rho_i``) and returns the direction
``(B R_i B^T + (rho_i + eps) I)^(-1/2) g_i`` in factored form (their eq. 6).

Memory per block: ``br k + bc (k^2 + 1)`` floats against block-diagonal AdaGrad's ``bc br^2``.

References
----------
J. Yen, S. Yen, H. Chen, Y. Sun, C. Hsieh, "Block low-rank preconditioner with shared basis for
stochastic optimization", NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from linalg_core.optim import blocking, distribute, transform

__all__ = ["SharedBasisAdagradOptions", "scale_by_shared_basis_adagrad", "shared_basis_adagrad"]


@dataclasses.dataclass(frozen=True)
class SharedBasisAdagradOptions(transform.CommonOptions):
    """Options of :func:`shared_basis_adagrad` and :func:`scale_by_shared_basis_adagrad` (and those
    of :class:`~linalg_core.optim.transform.CommonOptions`; the graft defaults to ``"none"``).

    Attributes
    ----------
    rank : int
        Shared basis size ``k`` (``min(k, br)`` per block).
    eps : float
        Absolute ridge added to the escaped mass.
    power_iters, oversample : int
        Randomized power steps per update (warm-started from the previous basis) and extra random
        columns.
    seed : int
        Seed of the random starting columns (the state carries the PRNG key).
    """

    graft: str = "none"
    rank: int = 32
    eps: float = 1e-6
    power_iters: int = 1
    oversample: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        transform.check_positive_int(self, "rank")
        if not float(self.eps) > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        for name in ("power_iters", "oversample"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def scale_by_shared_basis_adagrad(options: SharedBasisAdagradOptions | None = None, /,
                                  **overrides: Any) -> Any:
    """The shared-basis preconditioner alone; options as :func:`shared_basis_adagrad`."""
    import jax
    import jax.numpy as jnp

    from linalg_core import shared_basis_init, shared_basis_update

    o = transform.resolve_options(SharedBasisAdagradOptions, options, overrides)
    rank, eps, power_iters, oversample = int(o.rank), float(o.eps), int(o.power_iters), int(o.oversample)

    def init_leaf(lay, dtype):
        nb, (br, bc) = lay.num_blocks, lay.block
        one = shared_basis_init(bc, br, min(rank, br), dtype=dtype, backend="jax")
        stats = jax.tree.map(lambda x: jnp.broadcast_to(x, (nb,) + x.shape), one)
        return stats, jax.random.PRNGKey(int(o.seed))

    def block_step(stats, key, g, lay, ctx):
        nb = lay.num_blocks
        keys = jax.random.split(jax.random.fold_in(key, ctx.count), nb)

        def one(state, grads, k):
            new, direction, info = shared_basis_update(
                state, grads, key=k, eps=eps, power_iters=power_iters, oversample=oversample)
            return new, direction, info.converged

        # Every output keeps the block axis first, as map_blocks needs.
        new, direction, converged = distribute.map_blocks(
            jax.vmap(one), stats, jnp.swapaxes(g, -1, -2), keys, mesh=o.mesh, axis=o.mesh_axis)
        fails = jnp.sum(~converged, dtype=jnp.int32)
        # The primitive returns P g, as optax's scale_by_* transforms do; finish() scales by -lr.
        return type(stats)(*new), key, jnp.swapaxes(direction, -1, -2), fails

    return transform.matrix_preconditioner(
        o, layout=lambda shape: blocking.block_layout(shape, o.block_size),
        init_leaf=init_leaf, block_step=block_step)


def shared_basis_adagrad(learning_rate: Any, options: SharedBasisAdagradOptions | None = None, /,
                         **overrides: Any) -> Any:
    r"""Shared-basis block low-rank AdaGrad (Yen et al. 2023) as an ``optax.GradientTransformation``.

    Per block of each matrix parameter (module docstring) one step of their Algorithm 1, then
    weight decay, momentum and ``-learning_rate``. Vectors use the graft (``"none"``: the plain
    gradient).

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : SharedBasisAdagradOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`~linalg_core.optim.transform.PreconditionerState`;
        each matrix parameter's ``stats`` are a :class:`linalg_core.SharedBasisState` with the
        block axis first, its ``cache`` the PRNG key of the random starting columns.

    Notes
    -----
    With ``rank >= br`` the basis spans everything, ``rho_i = 0`` and the method is full-matrix
    AdaGrad on every column of every block (block-diagonal AdaGrad).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.shared_basis_adagrad(0.1, optim.SharedBasisAdagradOptions(rank=16, block_size=256))
    >>> state = opt.init({"w": jnp.zeros((64, 32)), "b": jnp.zeros(32)})

    References
    ----------
    Yen et al., "Block low-rank preconditioner with shared basis for stochastic optimization",
    NeurIPS 2023.
    """
    o = transform.resolve_options(SharedBasisAdagradOptions, options, overrides)
    return transform.finish(scale_by_shared_basis_adagrad(o), learning_rate, o)
