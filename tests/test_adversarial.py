"""Adversarial input for every public primitive: the only outcomes allowed are a ``ValueError``
(the NumPy path's and the JAX trace-time answer to bad input) or a result whose floating outputs
are all finite, and on the NumPy path no warning either way (the failure policy of linalg_core's
module docstring: warnings are errors in those tests). Internal errors (``TypeError``,
``AttributeError``, ``ZeroDivisionError``, ``IndexError``, a LAPACK ``LinAlgError``, a crash)
never reach the user.

The per-primitive test files check that each error names the right argument; this table tries
the same odd values against every primitive at once, on the NumPy path and the JAX path (the
FFI kernels on this CPU, the portable kernels under ``LINALG_CORE_PORTABLE=1``), with empty batches
under ``jit`` among them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linalg_core as lc


def _n(a) -> int:
    shape = np.shape(a) if not isinstance(a, (str, type(None))) else ()
    return int(shape[-1]) if len(shape) >= 1 and shape[-1] > 0 else 4


def _rows(a) -> int:
    shape = np.shape(a) if not isinstance(a, (str, type(None))) else ()
    return int(shape[-2]) if len(shape) >= 2 and shape[-2] > 0 else 4


def _key(jax_path: bool):
    return jax.random.PRNGKey(0) if jax_path else 0


def _fd_state(n: int, jax_path: bool):
    return lc.fd_init(max(n, 1), 1, dtype=np.float32, backend="jax" if jax_path else "numpy")


PRIMITIVES = {
    "inverse_root": lambda a, j: lc.inverse_root(a, 2),
    "inverse_root_newton": lambda a, j: lc.inverse_root(a, 4, method="newton"),
    "lobpcg": lambda a, j: lc.lobpcg(a, (jnp if j else np).ones((_n(a), 1)), k=1),
    "randomized_svd": lambda a, j: lc.randomized_svd(a, 1, key=_key(j)),
    "randomized_eigh": lambda a, j: lc.randomized_eigh(a, 1, key=_key(j)),
    "fd_update_matrix": lambda a, j: lc.fd_update(_fd_state(_n(a), j), matrix=a),
    "fd_update_factor": lambda a, j: lc.fd_update(_fd_state(_n(a), j), factor=a),
    "fd_apply_inverse_root": lambda a, j: lc.fd_apply_inverse_root(_fd_state(_rows(a), j), a, p=2, eps=1e-6),
    "kron_approx": lambda a, j: lc.kron_approx(a),
    "kron_approx_dense": lambda a, j: lc.kron_approx_dense(a, 2, 2),
    "shared_basis_update": lambda a, j: lc.shared_basis_update(
        lc.shared_basis_init(_rows(a), _n(a), 1,
                             backend="jax" if j else "numpy"), a, key=_key(j), eps=1e-6),
    "root_times": lambda a, j: lc.root_times(a, a, p=2),
    "polar": lambda a, j: lc.polar(a),
    "polar_converge": lambda a, j: lc.polar(a, tol=1e-3),
}

F32 = np.float32
INPUTS = {
    "empty_batch": np.zeros((0, 4, 4), F32),
    "empty_matrix": np.zeros((0, 0), F32),
    "scalar": np.array(3.0, F32),
    "vector": np.ones(4, F32),
    "one_by_one": np.ones((1, 1), F32),
    "zero": np.zeros((4, 4), F32),
    "rank_one": np.ones((4, 4), F32),
    "int": np.eye(4, dtype=np.int64),
    "bool": np.eye(4, dtype=bool),
    "complex": np.eye(4, dtype=np.complex64),
    "nan": np.full((4, 4), np.nan, F32),
    "inf": np.where(np.eye(4) > 0, np.inf, 0).astype(F32),
    "huge": np.full((4, 4), 3e38, F32) * np.eye(4, dtype=F32),
    "tiny": (np.eye(4) * 1e-44).astype(F32),
    "negative_definite": -np.eye(4, dtype=F32),
    "non_symmetric": np.triu(np.ones((4, 4), F32)),
    "wide": np.ones((3, 5), F32),
}
OBJECTS = {"none": None, "string": "a", "nested_list": [[1.0, 0.0], [0.0, 1.0]]}


def _floating_leaves(result):
    for leaf in jax.tree.leaves(result):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating):
            yield arr


def _call_honestly(fn):
    try:
        result = fn()
    except ValueError:
        return
    for arr in _floating_leaves(result):
        assert np.all(np.isfinite(arr)), "a returned floating output is not finite"


@pytest.mark.parametrize("value", list(INPUTS), ids=list(INPUTS))
@pytest.mark.parametrize("primitive", list(PRIMITIVES), ids=list(PRIMITIVES))
@pytest.mark.filterwarnings("error")
def test_numpy_path_raises_value_error_or_returns_finite(primitive, value):
    _call_honestly(lambda: PRIMITIVES[primitive](INPUTS[value].copy(), False))


@pytest.mark.parametrize("value", list(OBJECTS), ids=list(OBJECTS))
@pytest.mark.parametrize("primitive", list(PRIMITIVES), ids=list(PRIMITIVES))
@pytest.mark.filterwarnings("error")
def test_non_arrays_raise_value_error(primitive, value):
    _call_honestly(lambda: PRIMITIVES[primitive](OBJECTS[value], False))


# The JAX path: XLA flushes subnormals to zero, so "tiny" is a zero matrix there; non-finite and
# value-dependent cases come back as statuses with finite outputs.
JAX_INPUTS = [k for k in INPUTS if k not in ("int", "bool")]


@pytest.mark.parametrize("value", JAX_INPUTS, ids=JAX_INPUTS)
@pytest.mark.parametrize("primitive", list(PRIMITIVES), ids=list(PRIMITIVES))
def test_jax_path_raises_value_error_or_returns_finite(primitive, value):
    _call_honestly(lambda: PRIMITIVES[primitive](jnp.asarray(INPUTS[value]), True))


@pytest.mark.parametrize("primitive", list(PRIMITIVES), ids=list(PRIMITIVES))
def test_empty_batch_under_jit(primitive):
    fn = jax.jit(lambda a: PRIMITIVES[primitive](a, True))
    _call_honestly(lambda: fn(jnp.zeros((0, 4, 4), jnp.float32)))
