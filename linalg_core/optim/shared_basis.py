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

from typing import Any

from linalg_core.optim import blocking, distribute, transform
from linalg_core.optim.grafting import check_graft

__all__ = ["scale_by_shared_basis_adagrad", "shared_basis_adagrad"]


def scale_by_shared_basis_adagrad(
    *,
    rank: int = 32,
    eps: float = 1e-6,
    power_iters: int = 1,
    oversample: int = 0,
    block_size: int = 1024,
    start_preconditioning_step: int = 1,
    graft: str = "none",
    graft_beta2: float = 0.999,
    graft_eps: float = 1e-8,
    seed: int = 0,
    mesh: Any = None,
    mesh_axis: str | None = None,
) -> Any:
    """The shared-basis preconditioner alone; parameters as :func:`shared_basis_adagrad`."""
    import jax
    import jax.numpy as jnp

    from linalg_core import shared_basis_init, shared_basis_update

    check_graft(graft, graft_beta2)
    rank, eps = int(rank), float(eps)
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if int(power_iters) < 0 or int(oversample) < 0:
        raise ValueError("power_iters and oversample must be >= 0")

    def init_leaf(lay, dtype):
        nb, (br, bc) = lay.num_blocks, lay.block
        one = shared_basis_init(bc, br, min(rank, br), dtype=dtype, backend="jax")
        stats = jax.tree.map(lambda x: jnp.broadcast_to(x, (nb,) + x.shape), one)
        return stats, jax.random.PRNGKey(int(seed))

    def block_step(stats, key, g, lay, ctx):
        nb = lay.num_blocks
        keys = jax.random.split(jax.random.fold_in(key, ctx.count), nb)

        def one(state, grads, k):
            new, direction, info = shared_basis_update(
                state, grads, key=k, eps=eps, power_iters=int(power_iters), oversample=int(oversample))
            return new, direction, info.converged

        # Every output keeps the block axis first, as map_blocks needs.
        new, direction, converged = distribute.map_blocks(
            jax.vmap(one), stats, jnp.swapaxes(g, -1, -2), keys, mesh=mesh, axis=mesh_axis)
        fails = jnp.sum(~converged, dtype=jnp.int32)
        # The primitive returns the descent direction -P g; optax updates are +P g, scaled by -lr.
        return type(stats)(*new), key, -jnp.swapaxes(direction, -1, -2), fails

    return transform.matrix_preconditioner(
        layout=lambda shape: blocking.block_layout(shape, block_size),
        init_leaf=init_leaf, block_step=block_step, graft=graft, graft_beta2=float(graft_beta2),
        graft_eps=graft_eps, start_preconditioning_step=start_preconditioning_step)


def shared_basis_adagrad(
    learning_rate: Any,
    *,
    rank: int = 32,
    eps: float = 1e-6,
    power_iters: int = 1,
    oversample: int = 0,
    block_size: int = 1024,
    start_preconditioning_step: int = 1,
    graft: str = "none",
    graft_beta2: float = 0.999,
    graft_eps: float = 1e-8,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    seed: int = 0,
    mesh: Any = None,
    mesh_axis: str | None = None,
) -> Any:
    r"""Shared-basis block low-rank AdaGrad (Yen et al. 2023) as an ``optax.GradientTransformation``.

    Per block of each matrix parameter (module docstring) one step of their Algorithm 1, then
    weight decay, momentum and ``-learning_rate``. Vectors use the graft (``"none"``: the plain
    gradient).

    Parameters
    ----------
    learning_rate : float or optax schedule
    rank : int
        Shared basis size ``k`` (default 32; ``min(k, br)`` per block).
    eps : float
        Absolute ridge added to the escaped mass.
    power_iters, oversample : int
        Randomized power steps per update (default 1, warm-started from the previous basis) and
        extra random columns.
    block_size, start_preconditioning_step, graft, graft_beta2, graft_eps, momentum, nesterov,
    weight_decay
        As for :func:`~linalg_core.optim.shampoo`; the graft defaults to ``"none"``.
    seed : int
        Seed of the random starting columns (the state carries the PRNG key).
    mesh, mesh_axis : optional ``jax.sharding.Mesh`` and axis name: each parameter's blocks are
        spread over that axis (:mod:`linalg_core.optim.distribute`).

    Returns
    -------
    optax.GradientTransformation

    Notes
    -----
    With ``rank >= br`` the basis spans everything, ``rho_i = 0`` and the method is full-matrix
    AdaGrad on every column of every block (block-diagonal AdaGrad).
    """
    pre = scale_by_shared_basis_adagrad(
        rank=rank, eps=eps, power_iters=power_iters, oversample=oversample, block_size=block_size,
        start_preconditioning_step=start_preconditioning_step, graft=graft,
        graft_beta2=graft_beta2, graft_eps=graft_eps, seed=seed, mesh=mesh, mesh_axis=mesh_axis)
    return transform.finish(pre, learning_rate=learning_rate, momentum=momentum,
                            nesterov=nesterov, weight_decay=weight_decay)
