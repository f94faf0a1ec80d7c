r"""Shampoo with full Kronecker-factor statistics: the quality reference and the memory baseline.

Per block ``G`` (``br x bc``) of each parameter (:mod:`.blocking`):

.. math::
    L \leftarrow \beta_2 L + (1-\beta_2)\, G \tilde R G^\top,\qquad
    R \leftarrow \beta_2 R + (1-\beta_2)\, G^\top \tilde L G,\qquad
    \Delta = \hat L^{-1/p}\, G\, \hat R^{-1/p}

(``beta2 = 1`` sums instead: AdaGrad-style Shampoo), with ``L^hat = L / (1 - beta2^t)`` bias
corrected and the inverse roots from :func:`linalg_core.inverse_root` (ridge ``eps`` relative to
``lambda_max`` or absolute; fallback chain ending at the previous root, so a failed root keeps the
previous preconditioner). ``kron_steps = 1`` takes ``R~ = I``, ``L~ = I``: Shampoo's
``E[G G^T] (x) E[G^T G]``, one step of Kronecker power iteration from the identity (Morwani et al.
2024). ``kron_steps = k > 1`` runs ``k - 1`` more alternating steps of that power iteration in its
running-accumulation form: ``R~`` is the right statistic normalised to mean eigenvalue 1 (the
identity for isotropic statistics), then ``L~`` likewise from the new left statistic.

Memory per block: ``2 (br^2 + bc^2)`` floats (statistics and roots).

References
----------
V. Gupta, T. Koren, Y. Singer, "Shampoo: Preconditioned stochastic tensor optimization", ICML 2018.
R. Anil, V. Gupta, T. Koren, K. Regan, Y. Singer, "Scalable second order optimization for deep
learning", arXiv:2002.09018.
D. Morwani et al., "A new perspective on Shampoo's preconditioner", 2024.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from linalg_core.optim import blocking, distribute, transform

__all__ = ["ShampooOptions", "scale_by_shampoo", "shampoo"]


@dataclasses.dataclass(frozen=True)
class ShampooOptions(transform.CommonOptions):
    """Options of :func:`shampoo` and :func:`scale_by_shampoo` (and those of
    :class:`~linalg_core.optim.transform.CommonOptions`: blocking, grafting, momentum, ...).

    Attributes
    ----------
    b2 : float in (0, 1]
        Statistics decay; 1 accumulates (AdaGrad-style). Bias corrected when ``< 1``.
    eps, eps_mode : float, {"relative", "absolute"}
        Ridge of the inverse roots: ``eps * lambda_max(L)`` (relative, default) or ``eps``.
    p : int
        Root order: ``L^(-1/p)``, ``R^(-1/p)`` (4: Shampoo's ``-1/4`` per factor of a matrix).
    statistics_every, precondition_every : int
        Statistics updated on calls ``1, 1 + N, ...``; roots recomputed on calls
        ``start, start + N, ...`` (kept in the state in between).
    root_method : {"auto", "eigh", "newton", "newton3"}
        Passed to :func:`linalg_core.inverse_root`.
    kron_steps : int
        Kronecker power iteration steps per statistics update (1 is Shampoo).
    """

    b2: float = 0.999
    eps: float = 1e-6
    eps_mode: str = "relative"
    p: int = 4
    statistics_every: int = 1
    precondition_every: int = 1
    root_method: str = "auto"
    kron_steps: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        transform.check_statistics(self)
        transform.check_positive_int(self, "p", "statistics_every", "precondition_every", "kron_steps")
        if self.root_method not in ("auto", "eigh", "newton", "newton3"):
            raise ValueError(f"root_method must be one of auto, eigh, newton, newton3, got {self.root_method!r}")


def _normalised(s: Any) -> Any:
    """``s`` divided by its mean eigenvalue (``trace / n``); the identity where ``s`` is zero."""
    import jax.numpy as jnp

    n = s.shape[-1]
    mean = jnp.trace(s, axis1=-2, axis2=-1)[..., None, None] / n
    eye = jnp.eye(n, dtype=s.dtype)
    return jnp.where(mean > 0, s / jnp.where(mean > 0, mean, 1.0), eye)


def scale_by_shampoo(options: ShampooOptions | None = None, /, **overrides: Any) -> Any:
    """Shampoo's preconditioner as a gradient transformation (no learning rate, no momentum).

    Takes a :class:`ShampooOptions` and/or its fields as keywords (module docstring for the rule).
    """
    import jax
    import jax.numpy as jnp

    from linalg_core import ROOT_METHODS, ROOT_STATUS, inverse_root

    o = transform.resolve_options(ShampooOptions, options, overrides)
    b2, eps, p = float(o.b2), float(o.eps), int(o.p)
    start = int(o.start_preconditioning_step)

    def init_leaf(lay, dtype):
        nb, (br, bc) = lay.num_blocks, lay.block
        left, right = jnp.zeros((nb, br, br), dtype), jnp.zeros((nb, bc, bc), dtype)
        eye_l = jnp.broadcast_to(jnp.eye(br, dtype=dtype), (nb, br, br))
        eye_r = jnp.broadcast_to(jnp.eye(bc, dtype=dtype), (nb, bc, bc))
        return (left, right), (eye_l, eye_r)

    def accumulate(stat, term):
        return stat + term if b2 == 1.0 else b2 * stat + (1.0 - b2) * term

    def new_statistics(left, right, g):
        gt = jnp.swapaxes(g, -1, -2)
        if o.kron_steps == 1:
            return accumulate(left, g @ gt), accumulate(right, gt @ g)
        new_left, new_right = left, right
        for _ in range(int(o.kron_steps) - 1):
            new_left = accumulate(left, g @ _normalised(new_right) @ gt)
            new_right = accumulate(right, gt @ _normalised(new_left) @ g)
        return new_left, new_right

    # A root is used when a method produced it: ok, a later link of the fallback chain, or the
    # best root of a statistic whose condition the dtype cannot represent. Otherwise (failed,
    # non-finite / non-symmetric / indefinite statistic) the previous root is kept.
    usable = [ROOT_STATUS[name] for name in ("ok", "fell_back", "ill_conditioned")]

    def roots(left, right, prev_left, prev_right):
        """Block-batched inverse roots; ``bad`` (per block) counts the non-zero statistics whose
        root was not usable (their previous root is kept)."""
        out, bad = [], jnp.zeros(left.shape[:1], jnp.int32)
        for stat, prev in ((left, prev_left), (right, prev_right)):
            root, info = inverse_root(stat, p, eps=eps, ridge=o.eps_mode, method=o.root_method, prev=prev)
            failed = ~jnp.isin(info.status, jnp.asarray(usable)) | (info.method == ROOT_METHODS["previous"])
            nonzero = jnp.any(stat != 0, axis=(-2, -1))
            bad = bad + (failed & nonzero).astype(jnp.int32)
            # A zero statistic carries no information: its previous root stays.
            out.append(jnp.where((failed | ~nonzero)[:, None, None], prev, root))
        return out[0], out[1], bad

    def block_step(stats, cache, g, lay, ctx):
        do_stats = transform.every(ctx.count, int(o.statistics_every))
        left, right = jax.lax.cond(do_stats, lambda st: new_statistics(*st, g), lambda st: st, tuple(stats))
        scale = transform.bias_correction(b2, ctx, g.dtype)

        def compute(operands):
            root_l, root_r, bad = distribute.map_blocks(roots, *operands, mesh=o.mesh, axis=o.mesh_axis)
            return root_l, root_r, jnp.sum(bad, dtype=jnp.int32)

        def keep(operands):
            return operands[2], operands[3], jnp.zeros((), jnp.int32)

        do_root = transform.every(ctx.count, int(o.precondition_every), start)
        root_l, root_r, fails = jax.lax.cond(do_root, compute, keep,
                                             (left * scale, right * scale, *cache))
        return (left, right), (root_l, root_r), root_l @ g @ root_r, fails

    return transform.matrix_preconditioner(
        o, layout=lambda shape: blocking.block_layout(shape, o.block_size),
        init_leaf=init_leaf, block_step=block_step)


def shampoo(learning_rate: Any, options: ShampooOptions | None = None, /, **overrides: Any) -> Any:
    r"""Shampoo (full statistics, blocked) as an ``optax.GradientTransformation``.

    Update rule per block (module docstring): statistics ``L``, ``R`` (EMA with ``b2``, or sums
    at ``b2 = 1``), inverse ``p``-th roots every ``precondition_every`` calls from
    ``start_preconditioning_step`` on, ``Delta = L^(-1/p) G R^(-1/p)`` grafted to the graft
    method's per-block norm, then weight decay, momentum and ``-learning_rate``.

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : ShampooOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`~linalg_core.optim.transform.PreconditionerState`;
        each matrix parameter's ``stats`` are ``(L, R)`` and its ``cache`` their inverse roots,
        block axis first.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.shampoo(1e-3, optim.ShampooOptions(b2=0.99, block_size=256), momentum=0.9)
    >>> state = opt.init({"w": jnp.zeros((8, 4))})

    References
    ----------
    Gupta, Koren, Singer, "Shampoo: Preconditioned stochastic tensor optimization", ICML 2018;
    Anil et al., "Scalable second order optimization for deep learning", arXiv:2002.09018.
    """
    o = transform.resolve_options(ShampooOptions, options, overrides)
    return transform.finish(scale_by_shampoo(o), learning_rate, o)
