"""Blocking: how a parameter of any shape becomes a batch of equally sized matrix blocks.

A parameter's size-1 axes are dropped. Zero or one remaining axes make it a *vector*: the matrix
preconditioners leave it to the graft (diagonal) method. Otherwise its axes are merged into a matrix
``rows x cols`` at the split that balances the two sides (``(3, 3, 64, 128)`` becomes ``576 x 128``),
and each side longer than ``block_size`` is cut into ``n = ceil(side / block_size)`` blocks of
``ceil(side / n)`` (zero padded at the end: at most ``n - 1`` padded rows, instead of up to
``block_size - 1`` with fixed-size blocks). Blocks are returned as one batch
``(nr * nc, br, bc)`` so a batched primitive handles every block of a parameter in one call.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["BlockLayout", "block_layout", "flat_layout", "from_blocks", "to_blocks"]


class BlockLayout(NamedTuple):
    """Static description of a parameter's blocking (hashable, not a pytree leaf).

    Attributes
    ----------
    shape : tuple of int
        The parameter's shape.
    matrix : tuple (rows, cols) or None
        The merged matrix; ``None`` for a vector or scalar.
    grid : tuple (nr, nc)
        Blocks along rows and columns.
    block : tuple (br, bc)
        Block shape (``nr * br >= rows``, ``nc * bc >= cols``).
    """

    shape: tuple
    matrix: tuple | None
    grid: tuple
    block: tuple

    @property
    def is_vector(self) -> bool:
        return self.matrix is None

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1]


def _split(side: int, block_size: int) -> tuple[int, int]:
    count = max(1, math.ceil(side / block_size))
    return count, math.ceil(side / count)


def block_layout(shape: tuple, block_size: int) -> BlockLayout:
    """The layout of a parameter of ``shape`` with blocks of at most ``block_size`` per side."""
    shape = tuple(int(s) for s in shape)
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    dims = [s for s in shape if s != 1]
    if len(dims) < 2 or 0 in dims:
        return BlockLayout(shape, None, (0, 0), (0, 0))
    best = min(range(1, len(dims)),
               key=lambda s: max(math.prod(dims[:s]), math.prod(dims[s:])))
    rows, cols = math.prod(dims[:best]), math.prod(dims[best:])
    (nr, br), (nc, bc) = _split(rows, block_size), _split(cols, block_size)
    return BlockLayout(shape, (rows, cols), (nr, nc), (br, bc))


def flat_layout(shape: tuple, block_size: int) -> BlockLayout:
    """The parameter flattened to a column ``n x 1`` cut into blocks of at most ``block_size``
    (for preconditioners of the flattened parameter, e.g. Sketchy AdaGrad); scalars included."""
    shape = tuple(int(s) for s in shape)
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    n = math.prod(shape)
    if n == 0:
        return BlockLayout(shape, None, (0, 0), (0, 0))
    count, size = _split(n, block_size)
    return BlockLayout(shape, (n, 1), (count, 1), (size, 1))


def to_blocks(x: Any, layout: BlockLayout) -> Any:
    """``x`` (the parameter's shape) as blocks ``(nr * nc, br, bc)``; padding is zero."""
    import jax.numpy as jnp

    rows, cols = layout.matrix
    (nr, nc), (br, bc) = layout.grid, layout.block
    m = jnp.reshape(x, (rows, cols))
    m = jnp.pad(m, ((0, nr * br - rows), (0, nc * bc - cols)))
    return m.reshape(nr, br, nc, bc).transpose(0, 2, 1, 3).reshape(nr * nc, br, bc)


def from_blocks(blocks: Any, layout: BlockLayout) -> Any:
    """Inverse of :func:`to_blocks` (drops the padding)."""
    import jax.numpy as jnp

    rows, cols = layout.matrix
    (nr, nc), (br, bc) = layout.grid, layout.block
    m = blocks.reshape(nr, nc, br, bc).transpose(0, 2, 1, 3).reshape(nr * br, nc * bc)
    return jnp.reshape(m[:rows, :cols], layout.shape)
