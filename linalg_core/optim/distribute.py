"""Spreading the per-block preconditioner work of a parameter over the devices of a mesh.

Blocks of one parameter form a batch axis; the batched primitives run on a shard of it per device
under :func:`jax.shard_map`. The batch is padded to a multiple of the mesh axis with copies of its
first block (computed and thrown away), so any block count works on any device count.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["map_blocks"]


def map_blocks(fn: Callable[..., Any], *args: Any, mesh: Any = None, axis: str | None = None) -> Any:
    """``fn(*args)`` where every array leaf of ``args`` and of the result has the block axis first.

    With ``mesh=None`` this is ``fn(*args)``. Otherwise ``fn`` runs under ``shard_map`` with the
    block axis split over mesh axis ``axis`` (every other mesh axis replicated).
    """
    if mesh is None:
        return fn(*args)
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec

    leaves = jax.tree.leaves(args)
    blocks = leaves[0].shape[0]
    devices = mesh.shape[axis]
    pad = (-blocks) % devices

    def padded(a):
        return a if pad == 0 else jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0)

    spec = PartitionSpec(axis)
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    out = sharded(*jax.tree.map(padded, args))
    return jax.tree.map(lambda a: a[:blocks], out)
