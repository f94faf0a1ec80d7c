"""PyTorch tensors at the public primitives: one conversion, applied by :func:`accepts_torch`.

Every public primitive is decorated with :func:`accepts_torch` where it is defined, so
``linalg_core.fd_update`` and ``linalg_core.fd.fd_update`` are the same function. It takes
``torch.Tensor`` arguments (alone, or as fields of a NamedTuple state) and runs them through the
NumPy path (the C++ kernels):

- **In.** A CPU tensor becomes a NumPy array without a copy (``Tensor.numpy()``, which shares the
  storage: the view ``np.from_dlpack`` would give, through a cheaper call, and it serves bfloat16,
  which NumPy's DLPack import rejects, through an int16 view). A non-contiguous tensor becomes a strided NumPy view, still without a copy; the NumPy
  path then treats it as it treats any strided array (the bindings copy it to contiguous storage).
  ``bfloat16`` tensors become ``ml_dtypes.bfloat16`` arrays (a view, no copy), ``float16``
  tensors ``float16`` arrays, so both get exactly what the NumPy path does with those dtypes:
  the same result dtype, or the same error. A tensor of a dtype NumPy cannot hold
  (``float8_*``, ``complex32``) raises ``ValueError`` naming the argument.
- **Devices.** A tensor on any device other than the CPU (``cuda``, ``mps``, ``meta``) raises
  ``ValueError`` naming the argument and its device: linalg_core's CUDA backend does not exist yet,
  and a silent copy to the host would hide a device round trip in every optimizer step.
- **Autograd.** A tensor with ``requires_grad`` is detached: the kernels are not differentiable
  through torch, and the results never require grad (optimizer states are built under
  ``torch.no_grad`` anyway).
- **Out.** When any argument was a tensor, every NumPy array *and* NumPy scalar in the result
  (arrays, NamedTuple states, and every ``info`` field) becomes a CPU tensor of the same dtype,
  zero-copy (``torch.from_numpy``; a read-only array is copied first, since torch cannot mark
  memory read-only); Python ``int``/``float``/``bool`` stay as they are. So a state from a torch
  call is a state of tensors and can be passed straight back.
- **Callables.** A callable argument (``lobpcg``'s matvec) is wrapped so that it receives
  tensors and may return a tensor.
- **Dtypes and init functions.** A torch dtype argument means the NumPy dtype of the same name
  (``torch.bfloat16`` -> ``ml_dtypes.bfloat16``), so it gets the NumPy path's checks and errors.
  ``fd_init`` and ``shared_basis_init`` take no arrays: ``backend="torch"``, or a torch
  ``dtype=`` without ``backend=``, returns a fresh state of CPU tensors. An explicit
  ``backend="numpy"`` or ``"jax"`` is obeyed even with a torch dtype.

torch is imported only when a tensor or torch dtype is already in the call, or the caller asked
for ``backend="torch"``: ``import linalg_core`` and every NumPy or JAX call stay torch-free. A call
without torch objects costs one ``sys.modules`` look-up (torch not loaded) or one ``isinstance``
scan of the arguments and the fields of tuple arguments (torch loaded).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import numpy as np

#: torch dtype -> NumPy dtype, filled at the first call that passes each torch dtype.
_NUMPY_DTYPES: dict = {}


@functools.cache
def _bfloat16() -> np.dtype:
    import ml_dtypes  # a dependency of jax, so always installed; imported at the first bf16 use

    return np.dtype(ml_dtypes.bfloat16)


def _contains_torch(values: Any, torch: Any) -> bool:
    """Whether a tensor or torch dtype is among ``values`` or the fields of its tuples/lists."""
    for x in values:
        if isinstance(x, (torch.Tensor, torch.dtype)):
            return True
        if isinstance(x, (tuple, list)) and _contains_torch(x, torch):
            return True
    return False


def numpy_dtype(dtype: Any) -> Any:
    """The NumPy dtype of a torch dtype; the torch dtype itself where NumPy has none (float8), so
    that the NumPy path's own dtype check rejects it by name."""
    try:
        return _NUMPY_DTYPES[dtype]
    except KeyError:
        pass
    torch = sys.modules["torch"]
    if dtype == torch.bfloat16:
        out = _bfloat16()
    else:
        try:
            out = torch.empty((), dtype=dtype).numpy().dtype
        except TypeError:
            out = dtype
    _NUMPY_DTYPES[dtype] = out
    return out


def tensor_to_numpy(t: Any, name: str) -> np.ndarray:
    """A CPU tensor as a NumPy array sharing its storage (see the module notes for the rules).

    Raises
    ------
    ValueError
        ``t`` is not on the CPU, or has a dtype NumPy cannot hold; the message names ``name``.
    """
    if not t.is_cpu:
        raise ValueError(
            f"{name} is on {t.device}; linalg_core's CUDA backend does not exist yet: move it "
            f"with .cpu()")
    if t.requires_grad:
        t = t.detach()
    # Lazy conjugate/negative views (x.conj().imag) have no NumPy view: materialise them.
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    torch = sys.modules["torch"]
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    try:
        return t.numpy()
    except TypeError as err:
        raise ValueError(
            f"{name} has dtype {t.dtype}, which NumPy cannot hold; linalg_core takes float32 or "
            f"float64 (bfloat16/float16 computed in float32)") from err


def numpy_to_tensor(a: Any) -> Any:
    """A NumPy array or scalar as a CPU tensor of its dtype; zero-copy for writable arrays."""
    torch = sys.modules["torch"]
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if not a.flags.writeable:
        a = a.copy()  # torch.from_numpy would share memory the NumPy side declared read-only
    if a.dtype.kind == "V" and a.dtype == _bfloat16():  # kind first: no ml_dtypes import otherwise
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _to_numpy_tree(x: Any, name: str, torch: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return tensor_to_numpy(x, name)
    if isinstance(x, torch.dtype):
        return numpy_dtype(x)
    if isinstance(x, tuple):
        fields = getattr(x, "_fields", None)
        if fields is not None:
            return type(x)(*(_to_numpy_tree(v, f"{name}.{f}", torch) for f, v in zip(fields, x)))
        return tuple(_to_numpy_tree(v, f"{name}[{i}]", torch) for i, v in enumerate(x))
    if isinstance(x, list):
        return [_to_numpy_tree(v, f"{name}[{i}]", torch) for i, v in enumerate(x)]
    if callable(x) and not isinstance(x, type):
        return _numpy_callable(x)
    return x


def _to_torch_tree(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return numpy_to_tensor(x)
    if isinstance(x, tuple):
        values = [_to_torch_tree(v) for v in x]
        return type(x)(*values) if hasattr(x, "_fields") else tuple(values)
    if isinstance(x, list):
        return [_to_torch_tree(v) for v in x]
    return x


def _numpy_callable(fn: Callable) -> Callable:
    """``fn`` written for tensors, called by the NumPy path with arrays."""
    name = f"{getattr(fn, '__name__', 'callable')} result"

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*_to_torch_tree(args), **{k: _to_torch_tree(v) for k, v in kwargs.items()})
        return _to_numpy_tree(out, name, sys.modules["torch"])

    return call


def accepts_torch(fn: Callable) -> Callable:
    """Decorates a primitive: tensors in (arguments, state fields) -> NumPy path -> tensors out.

    Parameters
    ----------
    fn : callable
        The NumPy/JAX primitive. If it has a ``backend`` parameter (the init functions), the
        decorated function also takes ``backend="torch"``: ``fn`` builds the NumPy result, which
        comes back as tensors.

    Returns
    -------
    callable
        ``fn`` with its signature and docs (``functools.wraps``). A call without torch objects (or
        with torch not imported) goes straight to ``fn``.
    """
    import inspect

    params = tuple(inspect.signature(fn).parameters)
    takes_backend = "backend" in params

    @functools.wraps(fn)
    def primitive(*args: Any, **kwargs: Any) -> Any:
        backend = kwargs.get("backend") if takes_backend else None
        if backend == "torch":
            import torch  # the caller asked for tensors

            kwargs["backend"] = "numpy"
        else:
            torch = sys.modules.get("torch")
            if torch is None or not (_contains_torch(args, torch)
                                     or _contains_torch(kwargs.values(), torch)):
                return fn(*args, **kwargs)
        args = tuple(_to_numpy_tree(a, params[i] if i < len(params) else f"argument {i}", torch)
                     for i, a in enumerate(args))
        kwargs = {k: _to_numpy_tree(v, k, torch) for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        # An explicit backend="numpy"/"jax" is obeyed even when a torch dtype chose the dtype.
        return out if backend in ("numpy", "jax") else _to_torch_tree(out)

    return primitive
