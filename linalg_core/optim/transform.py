"""The machinery every matrix preconditioner of :mod:`linalg_core.optim` shares.

One function, :func:`matrix_preconditioner`, turns a per-parameter *block step* into an
``optax.GradientTransformation``: it blocks each parameter (:mod:`.blocking`), runs the graft
(:mod:`.grafting`), skips non-finite gradients, switches from the graft to the preconditioner at
``start_preconditioning_step``, grafts the block norms and counts failures. The block step is the
only thing a preconditioner defines; all its linear algebra comes from the public primitives.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, TypeVar

from linalg_core.optim import blocking, grafting

__all__ = ["CommonOptions", "Context", "Diagnostics", "LeafState", "PreconditionerState",
           "check_positive_int", "check_statistics", "finish", "matrix_preconditioner",
           "resolve_options"]


@dataclasses.dataclass(frozen=True)
class CommonOptions:
    """The options every matrix preconditioner of :mod:`linalg_core.optim` shares.

    Each optimizer's options class extends this one with its statistics' options (and may change
    a default); its ``scale_by_*`` form reads the preconditioner's fields, its full alias also
    ``momentum``, ``nesterov`` and ``weight_decay``.

    Attributes
    ----------
    block_size : int
        Largest block side (:mod:`linalg_core.optim.blocking`).
    start_preconditioning_step : int
        Calls before it use the graft direction.
    graft : {"adagrad", "sgd", "rmsprop_normalized", "none"}
        Per-block norm the preconditioned direction is rescaled to (:mod:`.grafting`).
    graft_beta2 : float or None
        The graft's decay (``rmsprop_normalized``); ``None``: the statistics' ``b2`` where the
        optimizer has one, else 0.999.
    graft_eps : float
        The graft's epsilon.
    momentum : float in [0, 1)
        Heavy-ball momentum on the preconditioned, grafted update (full alias only).
    nesterov : bool
        Nesterov instead of heavy-ball momentum.
    weight_decay : float >= 0
        Decoupled weight decay added to the update (full alias only).
    mesh : jax.sharding.Mesh or None
        Spreads each parameter's per-block work over ``mesh_axis`` (:mod:`.distribute`).
    mesh_axis : str or None
    """

    block_size: int = 1024
    start_preconditioning_step: int = 1
    graft: str = "adagrad"
    graft_beta2: float | None = None
    graft_eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    mesh: Any = None
    mesh_axis: str | None = None

    def __post_init__(self) -> None:
        check_positive_int(self, "block_size", "start_preconditioning_step")
        grafting.check_graft(self.graft, self.resolved_graft_beta2)
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if float(self.weight_decay) < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def resolved_graft_beta2(self) -> float:
        if self.graft_beta2 is not None:
            return float(self.graft_beta2)
        return float(getattr(self, "b2", 0.999))


def check_statistics(options: Any) -> None:
    """Validates the ``b2``, ``eps``, ``eps_mode`` fields of an optimizer's options."""
    if not 0.0 < float(options.b2) <= 1.0:
        raise ValueError(f"b2 must be in (0, 1], got {options.b2}")
    if not float(options.eps) > 0:
        raise ValueError(f"eps must be > 0, got {options.eps}")
    if options.eps_mode not in ("relative", "absolute"):
        raise ValueError(f"eps_mode must be 'relative' or 'absolute', got {options.eps_mode!r}")


def check_positive_int(options: Any, *names: str) -> None:
    """``ValueError`` unless each named field is an integer >= 1."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


Options = TypeVar("Options", bound=CommonOptions)


def resolve_options(cls: type[Options], options: Options | None, overrides: dict) -> Options:
    """``options`` (or ``cls()``) with ``overrides`` applied and every field validated.

    The one way each optimizer takes its configuration: ``shampoo(lr, opts)``,
    ``shampoo(lr, b2=0.99)`` and ``shampoo(lr, opts, b2=0.99)`` all work."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unexpected option(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return dataclasses.replace(options, **overrides) if overrides else options


class Diagnostics(NamedTuple):
    """Counters carried in the state (int32 scalars; no host sync).

    Attributes
    ----------
    skipped_steps : non-finite gradients seen; their statistics updates were skipped and their
        update was zero.
    failures : block-level failures so far: a kernel failure (an inverse root that fell back to
        the previous root, an FD update that left its sketch unchanged, a failed shared-basis
        eigensolver), or a finite gradient that made a block's new state, its update or the
        graft non-finite (overflow): that block's state is kept and its update is zero.
    """

    skipped_steps: Any
    failures: Any


class LeafState(NamedTuple):
    """State of one parameter. ``stats``: the statistics (what :func:`statistics_bytes` counts);
    ``cache``: derived preconditioner data (inverse roots, PRNG key) or ``()``; ``graft``: the
    graft accumulator (empty for ``sgd``/``none``)."""

    stats: Any
    cache: Any
    graft: Any


class PreconditionerState(NamedTuple):
    """``count``: calls so far; ``accepted``: calls with finite gradients (bias correction);
    ``leaves``: one :class:`LeafState` per parameter, in ``jax.tree.leaves`` order;
    ``diagnostics``: :class:`Diagnostics`."""

    count: Any
    accepted: Any
    leaves: tuple
    diagnostics: Diagnostics


class Context(NamedTuple):
    """What a block step may read: ``count`` (1-based call number), ``accepted`` (1-based number of
    finite steps including this one), ``precondition`` (bool: past ``start_preconditioning_step``)."""

    count: Any
    accepted: Any
    precondition: Any


def matrix_preconditioner(
    options: CommonOptions,
    *,
    layout: Callable[[tuple], blocking.BlockLayout],
    init_leaf: Callable[[blocking.BlockLayout, Any], tuple[Any, Any]],
    block_step: Callable[[Any, Any, Any, blocking.BlockLayout, Context], tuple[Any, Any, Any, Any]],
) -> Any:
    """An ``optax.GradientTransformation`` from a block step; grafting and the start step from
    ``options``.

    ``init_leaf(layout, dtype) -> (stats, cache)``; ``block_step(stats, cache, blocks, layout, ctx)
    -> (stats, cache, preconditioned_blocks, failures)`` with ``blocks`` the gradient blocks
    ``(nb, br, bc)`` in the compute dtype: float64 for float64 parameters, float32 for every other
    floating dtype (bfloat16 and float16 gradients are accumulated in float32). Vectors
    (``layout.is_vector``) get the graft direction.
    """
    import jax
    import jax.numpy as jnp
    import optax

    graft, graft_beta2, graft_eps = options.graft, options.resolved_graft_beta2, float(options.graft_eps)
    start = int(options.start_preconditioning_step)

    def init_fn(params):
        leaves = []
        for p in jax.tree.leaves(params):
            lay = layout(tuple(p.shape))
            dtype = compute_dtype(p.dtype)
            stats, cache = ((), ()) if lay.is_vector else init_leaf(lay, dtype)
            leaves.append(LeafState(stats, cache, grafting.graft_init(graft, p, dtype)))
        zero = jnp.zeros((), jnp.int32)
        return PreconditionerState(zero, zero, tuple(leaves), Diagnostics(zero, zero))

    def update_fn(updates, state, params=None):
        del params
        grads, treedef = jax.tree.flatten(updates)
        if len(grads) != len(state.leaves):
            raise ValueError(f"updates have {len(grads)} leaves, the state {len(state.leaves)}")
        finite = jnp.array(True)
        for g in grads:
            finite &= jnp.all(jnp.isfinite(g))
        count = state.count + 1
        accepted = state.accepted + finite.astype(jnp.int32)
        ctx = Context(count, jnp.maximum(accepted, 1), count >= start)
        failures = state.diagnostics.failures
        outs, new_leaves = [], []
        for g, leaf in zip(grads, state.leaves):
            g32 = jnp.where(finite, g.astype(compute_dtype(g.dtype)), 0.0)
            direction, acc = grafting.graft_direction(graft, g32, leaf.graft, beta2=graft_beta2,
                                                      eps=graft_eps, count=ctx.accepted)
            graft_ok = _all_finite((direction, acc))
            acc = jax.tree.map(lambda new, old: jnp.where(finite & graft_ok, new, old), acc, leaf.graft)
            failures = failures + (finite & ~graft_ok).astype(jnp.int32)
            lay = layout(tuple(g.shape))
            if lay.is_vector:
                out, stats, cache = direction, leaf.stats, leaf.cache
            else:
                blocks = blocking.to_blocks(g32, lay)
                stats, cache, pre, fails = block_step(leaf.stats, leaf.cache, blocks, lay, ctx)
                graft_blocks = blocking.to_blocks(direction, lay)
                if graft != "none":
                    pre = grafting.graft_scale(pre, graft_blocks)
                # A finite gradient can still overflow a block's statistics or make a kernel
                # fail: such a block is treated like a non-finite gradient (state kept, update
                # zero, counted) instead of carrying Inf/NaN into every later step.
                ok = finite & graft_ok & _finite_per_block((stats, cache, pre), lay.num_blocks)
                (stats, cache) = jax.tree.map(lambda new, old: _where_blocks(ok, new, old, lay.num_blocks),
                                              (stats, cache), (leaf.stats, leaf.cache))
                failures = (failures + jnp.where(finite, fails, 0).astype(jnp.int32)
                            + jnp.sum(finite & ~ok, dtype=jnp.int32))
                out_blocks = jnp.where(ctx.precondition, pre, graft_blocks)
                out = blocking.from_blocks(jnp.where(ok[:, None, None], out_blocks, 0.0), lay)
            outs.append(jnp.where(finite & graft_ok, out, 0.0).astype(g.dtype))
            new_leaves.append(LeafState(stats, cache, acc))
        diagnostics = Diagnostics(state.diagnostics.skipped_steps + (~finite).astype(jnp.int32), failures)
        new_state = PreconditionerState(count, accepted, tuple(new_leaves), diagnostics)
        return jax.tree.unflatten(treedef, outs), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _all_finite(tree: Any) -> Any:
    """One bool: every floating leaf of ``tree`` is finite."""
    import jax
    import jax.numpy as jnp

    ok = jnp.array(True)
    for x in jax.tree.leaves(tree):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            ok &= jnp.all(jnp.isfinite(x))
    return ok


def _finite_per_block(tree: Any, num_blocks: int) -> Any:
    """``(num_blocks,)`` bool: every floating leaf of ``tree`` is finite in that block. Leaves
    without a leading block axis (a PRNG key, a scalar) count for every block."""
    import jax
    import jax.numpy as jnp

    ok = jnp.ones((num_blocks,), bool)
    for x in jax.tree.leaves(tree):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            continue
        if x.ndim >= 1 and x.shape[0] == num_blocks:
            ok &= jnp.all(jnp.isfinite(x.reshape(num_blocks, -1)), axis=1)
        else:
            ok &= jnp.all(jnp.isfinite(x))
    return ok


def _where_blocks(ok: Any, new: Any, old: Any, num_blocks: int) -> Any:
    """``new`` in the blocks where ``ok``, ``old`` elsewhere (all or nothing for a leaf without a
    leading block axis)."""
    import jax.numpy as jnp

    if new.ndim >= 1 and new.shape[0] == num_blocks:
        return jnp.where(ok.reshape((num_blocks,) + (1,) * (new.ndim - 1)), new, old)
    return jnp.where(jnp.all(ok), new, old)


def compute_dtype(dtype: Any) -> Any:
    """float64 for float64 parameters, float32 otherwise."""
    import numpy as np

    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def bias_correction(b2: float, ctx: Context, dtype: Any) -> Any:
    """``1 / (1 - b2^t)`` for the EMA of ``t = ctx.accepted`` finite steps; 1 when ``b2 = 1`` (sums)."""
    return 1.0 if b2 == 1.0 else 1.0 / (1.0 - b2 ** ctx.accepted.astype(dtype))


def every(ctx_count: Any, period: int, offset: int = 1) -> Any:
    """True on calls ``offset, offset + period, ...`` (``ctx_count`` is 1-based)."""
    return (ctx_count >= offset) & ((ctx_count - offset) % period == 0)


def finish(preconditioner: Any, learning_rate: Any, options: CommonOptions) -> Any:
    """``preconditioner`` -> decoupled weight decay -> momentum -> ``-learning_rate`` scaling.

    Momentum is applied to the preconditioned (grafted) update, as in Anil et al. 2020;
    weight decay is decoupled (added to the update, not the gradient; Loshchilov & Hutter 2019).
    """
    import optax

    parts = [preconditioner]
    if options.weight_decay:
        parts.append(optax.add_decayed_weights(float(options.weight_decay)))
    if options.momentum:
        parts.append(optax.trace(decay=float(options.momentum), nesterov=bool(options.nesterov)))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)
