"""torch.Tensor arguments: same numbers as the NumPy path, tensors out, zero-copy in, clear errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import linalg_core as lc  # noqa: E402
from linalg_core import _torch  # noqa: E402


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
