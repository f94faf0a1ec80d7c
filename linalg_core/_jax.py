"""XLA FFI registration and the one helper that owns ``jax.ffi.ffi_call``.

JAX is imported lazily: NumPy users of linalg_core never pay for it. The CPU handlers live in the
same compiled module as the NumPy entry points and are registered on first use.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np

_registered = False

#: Use the portable kernels on the CPU too (set LINALG_CORE_PORTABLE=1, or assign in tests):
#: runs the GPU/TPU code path on a machine without an accelerator. Read at trace time.
FORCE_PORTABLE = os.environ.get("LINALG_CORE_PORTABLE") == "1"


@contextlib.contextmanager
def portable_path(enabled: bool = True) -> Iterator[None]:
    """Sets :data:`FORCE_PORTABLE` for the calls traced inside the block, then restores it."""
    global FORCE_PORTABLE
    saved, FORCE_PORTABLE = FORCE_PORTABLE, bool(enabled)
    try:
        yield
    finally:
        FORCE_PORTABLE = saved


def is_jax_array(x: Any) -> bool:
    """True for a ``jax.Array`` or a tracer, without importing JAX when it is not loaded."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def any_jax(*xs: Any) -> bool:
    return any(is_jax_array(x) for x in xs)


def _register() -> None:
    global _registered
    if _registered:
        return
    import jax

    from linalg_core._native import cpu

    for name, capsule in cpu.ffi_targets().items():
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    _registered = True


def call(
    target: str,
    results: Sequence[tuple[tuple[int, ...], Any]],
    *args: Any,
    portable: Callable[..., Sequence[Any]] | None = None,
    **attrs: Any,
) -> tuple:
    """Calls FFI target ``target`` with ``args`` and static ``attrs``.

    ``results`` lists (shape, dtype) per output. Leading axes are batch axes in every handler, so
    ``vmap`` is served by broadcasting all operands to the vmapped axis (``broadcast_all``).
    ``portable(*args, **attrs)`` (a :mod:`linalg_core.portable` kernel with the handler's
    contract) runs on every platform but the CPU, chosen when XLA lowers for the platform.
    """
    import jax

    _register()
    out_types = [jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype)) for shape, dtype in results]
    fn = jax.ffi.ffi_call(target, out_types, vmap_method="broadcast_all")
    if portable is None:
        return tuple(fn(*args, **attrs))

    def on_cpu(*operands):
        return tuple(fn(*operands, **attrs))

    def elsewhere(*operands):
        outs = portable(*operands, **{k: _python(v) for k, v in attrs.items()})
        return tuple(jax.numpy.asarray(o, t.dtype).reshape(t.shape) for o, t in zip(outs, out_types))

    if FORCE_PORTABLE:
        return elsewhere(*args)
    return tuple(jax.lax.platform_dependent(*args, cpu=on_cpu, default=elsewhere))


def _python(value: Any) -> Any:
    """A NumPy scalar attribute as the Python number a portable kernel branches on."""
    return value.item() if isinstance(value, np.generic) else value
