"""torch.Tensor arguments: same numbers as the NumPy path, tensors out, zero-copy in, clear errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import linalg_core as lc  # noqa: E402
from linalg_core import _torch  # noqa: E402

# The torch path is the NumPy path (backend="jax" below only builds arrays): LINALG_CORE_PORTABLE
# cannot change it.
pytestmark = pytest.mark.numpy_path


def _spd(n, dtype, seed=0):
    g = np.random.default_rng(seed).standard_normal((n, n))
    return (g @ g.T / n + np.eye(n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_root_matches_numpy_bitwise(dtype):
    # Same kernel on the same bytes: bitwise equal.
    a = _spd(32, dtype)
    ref, ref_info = lc.inverse_root(a, 2)
    out, info = lc.inverse_root(torch.from_numpy(a), 2)
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
    assert out.dtype == torch.from_numpy(ref).dtype
    np.testing.assert_array_equal(out.numpy(), ref)
    assert all(isinstance(v, torch.Tensor) for v in info)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fd_update_batched_state_of_tensors(dtype):
    g = np.random.default_rng(1).standard_normal((3, 64, 4)).astype(dtype)
    ref, _ = lc.fd_update(lc.fd_init(64, 8, dtype=dtype, batch_shape=(3,)), factor=g)
    tdt = torch.from_numpy(np.zeros(0, dtype)).dtype
    state = lc.fd_init(64, 8, dtype=tdt, batch_shape=(3,))
    assert all(isinstance(v, torch.Tensor) and v.dtype == tdt for v in state)
    out, info = lc.fd_update(state, factor=torch.from_numpy(g))
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a.numpy(), b)


def test_zero_copy_and_non_contiguous():
    t = torch.randn(16, 16, dtype=torch.float64)
    assert np.shares_memory(_torch.tensor_to_numpy(t, "a"), t.numpy())
    assert _torch.tensor_to_numpy(t, "a").ctypes.data == t.data_ptr()
    a = (t @ t.T + 16 * torch.eye(16, dtype=torch.float64)).T  # non-contiguous view
    assert not a.is_contiguous()
    out, _ = lc.inverse_root(a, 2)
    np.testing.assert_array_equal(out.numpy(), lc.inverse_root(np.ascontiguousarray(a.numpy()), 2)[0])


def test_meta_device_names_the_argument():
    with pytest.raises(ValueError, match=r"a is on meta.*\.cpu\(\)"):
        lc.inverse_root(torch.empty(4, 4, device="meta"), 2)
    state = lc.fd_init(8, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="factor is on meta"):
        lc.fd_update(state, factor=torch.empty(8, 2, device="meta"))


def test_requires_grad_is_detached():
    a = torch.from_numpy(_spd(8, np.float64)).requires_grad_()
    out, _ = lc.inverse_root(a, 2)
    assert not out.requires_grad


def test_lobpcg_torch_matvec():
    a = torch.from_numpy(_spd(32, np.float64))
    x0 = torch.from_numpy(np.random.default_rng(2).standard_normal((32, 3)))
    seen = []
    w, v, _ = lc.lobpcg(lambda x: (seen.append(type(x)), a @ x)[1], x0, k=2)
    ref = lc.lobpcg(lambda x: a.numpy() @ x, x0.numpy(), k=2)[0]
    assert seen and all(s is torch.Tensor for s in seen)
    # torch's and NumPy's GEMMs round differently (O(n eps ||a||) per matvec), and the eigenvalues of
    # this well-conditioned SPD matrix (cond < 10) move by as much: n eps cond = 32 * 2.2e-16 * 10 ~ 1e-13.
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12)


def test_bfloat16_follows_numpy_path():
    # bf16 tensors go in as ml_dtypes.bfloat16 arrays: the same call the NumPy path gets.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    g = np.random.default_rng(3).standard_normal((8, 8)).astype(ml_dtypes.bfloat16)
    ref, _ = lc.polar(g)
    out, _ = lc.polar(torch.from_numpy(g.view(np.int16)).view(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    np.testing.assert_array_equal(out.view(torch.int16).numpy(), np.asarray(ref).view(np.int16))


# Every public primitive, called once with NumPy arrays and once with the same bytes as tensors.
# The torch path hands the NumPy path views of the same memory, so the same kernels see the same
# bytes and every output (arrays, state fields, info fields) must be bitwise equal, of the same
# dtype and shape, as a CPU tensor. Chained calls feed a result back in, so states and factors
# round-trip as tensors. ``x`` turns a NumPy array into the argument type under test.

def _as_numpy(t):
    """A tensor's bytes as the NumPy array of the same dtype (bfloat16 as ml_dtypes.bfloat16)."""
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _assert_same(out, ref, where="result"):
    if isinstance(ref, (np.ndarray, np.generic)):
        assert isinstance(out, torch.Tensor) and out.device.type == "cpu", f"{where}: {type(out)}"
        ref, got = np.asarray(ref), _as_numpy(out)
        assert got.dtype == ref.dtype and got.shape == ref.shape, f"{where}: {got.dtype}{got.shape} vs {ref.dtype}{ref.shape}"
        assert got.tobytes() == np.ascontiguousarray(ref).tobytes(), f"{where}: values differ"
    elif isinstance(ref, tuple):
        assert type(out) is type(ref) and len(out) == len(ref), f"{where}: {type(out)} vs {type(ref)}"
        for field, o, r in zip(getattr(ref, "_fields", range(len(ref))), out, ref):
            _assert_same(o, r, f"{where}.{field}")
    else:
        assert type(out) is type(ref) and out == ref, f"{where}: {out!r} vs {ref!r}"


def _tensor(a):
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _inputs(dt, seed=4):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((16, 16))
    a = g @ g.T / 16 + np.eye(16)
    samples = rng.standard_normal((5, 12, 8))
    return dict(
        a=a.astype(dt), a2=(a + 0.1 * np.outer(g[0], g[0])).astype(dt),
        g=rng.standard_normal((16, 3)).astype(dt), g2=rng.standard_normal((16, 3)).astype(dt),
        m=rng.standard_normal((12, 8)).astype(dt), samples=samples.astype(dt),
        left=_spd(12, dt, seed + 1), right=_spd(8, dt, seed + 2), h=_spd(12, dt, seed + 3),
        grads=rng.standard_normal((2, 12)).astype(dt), grads2=rng.standard_normal((2, 12)).astype(dt),
        # FD and shared-basis states hold float32/float64; low-precision terms go into float32.
        state_dtype=dt if np.dtype(dt) in (np.float32, np.float64) else np.float32)


def _fields(x, state):
    return type(state)(*(x(v) for v in state))


def _fd(x, i):
    s = _fields(x, lc.fd_init(16, 4, dtype=i["state_dtype"]))
    s, info1 = lc.fd_update(s, factor=x(i["g"]), beta=0.9)
    s, info2 = lc.fd_update(s, matrix=x(i["a"]), method="dense_eigh")
    return s, info1, info2


def _fd_apply(x, i):
    s = _fd(x, i)[0]
    return lc.fd_apply_inverse_root(s, x(i["g"]), p=2, eps=1e-3, return_status=True)


def _fd_merge(x, i):
    s = _fd(x, i)[0]
    s2, _ = lc.fd_update(s, factor=x(i["g2"]))
    return lc.fd_merge([s, s2], return_info=True)


def _kron(x, i):
    left, right, info = lc.kron_approx(x(i["samples"]), steps=2)
    return left, right, info, lc.kron_cosine(x(i["samples"]), left, right)


def _shared_basis(x, i):
    s = _fields(x, lc.shared_basis_init(2, 12, 3, dtype=i["state_dtype"]))
    s, u1, info1 = lc.shared_basis_update(s, x(i["grads"]), key=0, eps=1e-3)
    s, u2, info2 = lc.shared_basis_update(s, x(i["grads2"]), key=1, eps=1e-3)
    return s, u1, u2, info1, info2


def _eigenbasis(x, i):
    q, lam, perm, info = lc.eigenbasis_refresh(x(i["a"]), None)
    return (q, lam, perm, info), lc.eigenbasis_refresh(x(i["a2"]), q, steps=1)


def _rsvd(x, i):
    u, s, vt, info = lc.randomized_svd(x(i["m"]), 2, key=0, power_iters=1)
    return (u, s, vt, info), lc.randomized_svd(x(i["m"]), 2, key=1, warm_start=vt[:1].T)


CASES = {
    "fd_update": _fd,
    "fd_apply_inverse_root": _fd_apply,
    "fd_merge": _fd_merge,
    "kron_approx+kron_cosine": _kron,
    "kron_approx_dense": lambda x, i: lc.kron_approx_dense(x(i["h"]), 3, 4),
    "lobpcg": lambda x, i: lc.lobpcg(x(i["a"]), x(i["g"]), k=2),
    "inverse_root": lambda x, i: lc.inverse_root(x(i["a"]), 4, method="eigh"),
    "root_times": lambda x, i: (lc.root_times(x(i["m"]), x(i["left"]), x(i["right"]), p=4, eps=1e-6),
                                lc.root_times(x(i["m"]), x(i["left"]), p=2, eps=1e-6, return_status=True)),
    "randomized_svd": _rsvd,
    "randomized_eigh": lambda x, i: lc.randomized_eigh(x(i["a"]), 3, key=np.random.default_rng(0)),
    "shared_basis": _shared_basis,
    "polar": lambda x, i: lc.polar(x(i["m"])),
    "eigenbasis_refresh": _eigenbasis,
}


def _bfloat16():
    return pytest.importorskip("ml_dtypes").bfloat16


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
def test_every_primitive_matches_numpy_bitwise(case, dtype):
    # float16/bfloat16: whatever the NumPy path does with those arrays (a result in float32 or in
    # the input's dtype, or an error), the torch path must do the same: same dtype and bits, or
    # the same exception type and message.
    i = _inputs(_bfloat16() if dtype == "bfloat16" else dtype)
    try:
        ref = CASES[case](np.asarray, i)
    except Exception as err:  # noqa: BLE001 - any NumPy-path error must be reproduced as it is
        with pytest.raises(type(err)) as got:
            CASES[case](_tensor, i)
        assert str(got.value) == str(err)
        return
    _assert_same(CASES[case](_tensor, i), ref)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_low_precision_torch_dtype_is_the_numpy_dtype(name):
    # A torch dtype is the NumPy dtype of that name: the init functions reject float16/bfloat16
    # states (they hold float32 or float64) with the NumPy path's own message.
    np_dtype = _bfloat16() if name == "bfloat16" else np.float16
    for init, args in ((lc.fd_init, (8, 2)), (lc.shared_basis_init, (2, 8, 2))):
        with pytest.raises(ValueError) as ref:
            init(*args, dtype=np_dtype)
        with pytest.raises(ValueError) as got:
            init(*args, dtype=getattr(torch, name))
        assert str(got.value) == str(ref.value) == f"dtype must be float32 or float64, got {name}"


def test_dtype_numpy_cannot_hold_names_the_argument():
    a = torch.eye(4).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"^a has dtype torch.float8_e4m3fn, which NumPy cannot hold"):
        lc.inverse_root(a, 2)
    with pytest.raises(ValueError, match=r"^dtype must be float32 or float64, got torch.float8_e4m3fn"):
        lc.fd_init(8, 2, dtype=torch.float8_e4m3fn)


def test_module_level_functions_take_tensors():
    # The decorator sits where each primitive is defined: the module's function is the exported one.
    import importlib

    for module, names in {"fd": ("fd_init", "fd_update", "fd_apply_inverse_root", "fd_merge", "fd_state_bytes"),
                          "kron": ("kron_approx", "kron_approx_dense", "kron_cosine"), "lobpcg": ("lobpcg",),
                          "roots": ("inverse_root",), "root_times": ("root_times",),
                          "rsvd": ("randomized_svd", "randomized_eigh"),
                          "shared_basis": ("shared_basis_init", "shared_basis_update"), "polar": ("polar",),
                          "eigenbasis": ("eigenbasis_refresh",)}.items():
        mod = importlib.import_module(f"linalg_core.{module}")
        for name in names:
            assert getattr(mod, name) is getattr(lc, name), f"linalg_core.{module}.{name}"
            assert hasattr(getattr(mod, name), "__wrapped__"), f"linalg_core.{module}.{name} is not wrapped"
    from linalg_core import fd

    state = fd.fd_init(16, 4, dtype=torch.float64)
    state, info = fd.fd_update(state, factor=torch.ones(16, 2, dtype=torch.float64))
    assert all(isinstance(v, torch.Tensor) for v in (*state, *info))
    assert fd.fd_state_bytes(16, 4, dtype=torch.float64) == fd.fd_state_bytes(16, 4, dtype=np.float64)


def test_numpy_calls_never_import_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np, linalg_core as lc; lc.inverse_root(np.eye(3), 2); "
            "s, _ = lc.fd_update(lc.fd_init(4, 2), factor=np.ones((4, 1))); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("init, args", [(lc.fd_init, (16, 4)), (lc.shared_basis_init, (2, 8, 3))])
def test_init_backend_torch(init, args):
    ref = init(*args, dtype=np.float64)
    state = init(*args, dtype=np.float64, backend="torch")
    _assert_same(state, ref)
    _assert_same(init(*args, backend="torch"), init(*args))  # float32 by default, like NumPy
    # An explicit backend wins over a torch dtype, which then only names the dtype.
    as_numpy = init(*args, dtype=torch.float64, backend="numpy")
    assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in as_numpy)
    import jax

    as_jax = init(*args, dtype=torch.float32, backend="jax")
    assert all(isinstance(v, jax.Array) and v.dtype == np.float32 for v in as_jax)
    with pytest.raises(ValueError, match=r"^backend must be 'numpy', 'jax' or 'torch', got 'cuda'$"):
        init(*args, backend="cuda")
