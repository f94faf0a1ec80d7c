"""Bytes of optimizer state: part of the API, so memory claims can be checked."""

from __future__ import annotations

from typing import Any

__all__ = ["state_bytes", "statistics_bytes"]


def _nbytes(tree: Any) -> int:
    import jax

    return int(sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype")))


def state_bytes(state: Any) -> int:
    """Bytes of every array in an optimizer state (any optax state, ours or not)."""
    return _nbytes(state)


def statistics_bytes(state: Any) -> int:
    """Bytes of the second-moment statistics only: the ``stats`` of every
    :class:`~linalg_core.optim.transform.LeafState` found in ``state`` (full factors for Shampoo,
    sketches for Sketchy, basis + coefficients + escaped mass for shared-basis), excluding
    inverse-root caches, graft accumulators and momentum."""
    import jax

    from linalg_core.optim.transform import LeafState

    found = [x for x in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, LeafState))
             if isinstance(x, LeafState)]
    return sum(_nbytes(leaf.stats) for leaf in found)
