"""PyTorch tensors at the public primitives: one conversion, applied by :func:`accepts_torch`.

Every public primitive takes ``torch.Tensor`` arguments (alone, or as fields of its NamedTuple
state) and runs them through the NumPy path (the C++ kernels):

- **In.** A CPU tensor becomes a NumPy array without a copy (``Tensor.numpy()``, which shares the
  storage). A non-contiguous tensor becomes a strided NumPy view, still without a copy; the NumPy
  path then treats it as it treats any strided array (the bindings copy it to contiguous storage).
  ``bfloat16`` tensors become ``ml_dtypes.bfloat16`` arrays (a view, no copy), ``float16``
  tensors ``float16`` arrays, so both get exactly what the NumPy path does for those dtypes
  (the primitives compute them in float32 and return their dtype where the NumPy docs say so);
  without ``ml_dtypes`` a bfloat16 tensor is cast to float32 (a copy).
- **Devices.** A tensor on any device other than the CPU (``cuda``, ``mps``, ``meta``) raises
  ``ValueError`` naming the argument: linalg_core's CUDA backend does not exist yet.
- **Autograd.** A tensor with ``requires_grad`` is detached: the kernels are not differentiable
  through torch, and the results never require grad (optimizer states are built under
  ``torch.no_grad`` anyway).
- **Out.** When any argument was a tensor, every NumPy array *and* NumPy scalar in the result
  (arrays, NamedTuple states, and every ``info`` field) becomes a CPU tensor of the same dtype,
  zero-copy (``torch.from_numpy``); Python ``int``/``float``/``bool`` stay as they are. So a state
  from a torch call is a state of tensors and can be passed straight back.
- **Callables.** A callable argument (``lobpcg``'s matvec) is wrapped so that it receives
  tensors and may return a tensor.
- **Init functions** (``fd_init``, ``shared_basis_init``) take no arrays: pass
  ``dtype=torch.float32`` / ``torch.float64`` to get a state of tensors.

torch is imported only when a tensor (or torch dtype) is already in the call: ``linalg_core``
never imports it itself. The JAX path is untouched.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import numpy as np


def _torch() -> Any:
    return sys.modules.get("torch")


def _is_tensor(x: Any, torch: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _contains_torch(x: Any, torch: Any) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(x, torch.dtype):
        return True
    if isinstance(x, (tuple, list)):
        return any(_contains_torch(v, torch) for v in x)
    return False


def _bf16() -> Any:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes comes with jax
        return None
    return np.dtype(ml_dtypes.bfloat16)


def tensor_to_numpy(t: Any, name: str) -> np.ndarray:
    """A CPU tensor as a NumPy array sharing its storage (see the module notes for the rules)."""
    torch = _torch()
    if t.device.type != "cpu":
        raise ValueError(
            f"{name} is on {t.device}; linalg_core's CUDA backend does not exist yet: move it "
            f"with .cpu()")
    t = t.detach().resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        bf16 = _bf16()
        if bf16 is None:
            return t.to(torch.float32).numpy()
        return t.view(torch.int16).numpy().view(bf16)
    return t.numpy()


def numpy_to_tensor(a: Any) -> Any:
    """A NumPy array or scalar as a CPU tensor of its dtype; zero-copy for writable arrays."""
    torch = _torch()
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        return numpy_to_tensor(a.view(np.int16)).view(torch.bfloat16)
    if not a.flags.writeable:
        a = a.copy()  # torch.from_numpy would share memory the NumPy side declared read-only
    return torch.from_numpy(a)


def _to_numpy_tree(x: Any, name: str) -> Any:
    torch = _torch()
    if isinstance(x, torch.Tensor):
        return tensor_to_numpy(x, name)
    if isinstance(x, torch.dtype):
        return torch.empty((), dtype=x).numpy().dtype
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_to_numpy_tree(v, f"{name}.{f}") for f, v in zip(x._fields, x)))
    if isinstance(x, (tuple, list)):
        return type(x)(_to_numpy_tree(v, f"{name}[{i}]") for i, v in enumerate(x))
    if callable(x) and not isinstance(x, type):
        return _numpy_callable(x)
    return x


def _to_torch_tree(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)) and not isinstance(x, np.dtype):
        return numpy_to_tensor(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_to_torch_tree(v) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_to_torch_tree(v) for v in x)
    return x


def _numpy_callable(fn: Callable) -> Callable:
    """``fn`` written for tensors, called by the NumPy path with arrays."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*_to_torch_tree(args), **_to_torch_tree(kwargs))
        return _to_numpy_tree(out, f"{getattr(fn, '__name__', 'callable')} result")

    return call


def accepts_torch(fn: Callable) -> Callable:
    """Wraps a public primitive: tensors in (arguments or state fields) -> NumPy path -> tensors out.

    A call without torch tensors (or without torch imported) goes straight to ``fn``."""
    import inspect

    params = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def primitive(*args: Any, **kwargs: Any) -> Any:
        torch = _torch()
        if torch is None or not (_contains_torch(args, torch) or _contains_torch(tuple(kwargs.values()), torch)):
            return fn(*args, **kwargs)
        args = tuple(_to_numpy_tree(a, params[i] if i < len(params) else f"argument {i}")
                     for i, a in enumerate(args))
        kwargs = {k: _to_numpy_tree(v, k) for k, v in kwargs.items()}
        return _to_torch_tree(fn(*args, **kwargs))

    return primitive
