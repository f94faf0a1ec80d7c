"""Every JAX entry point lowers for CUDA on this CPU-only machine (``jax.export`` with
``platforms=["cuda"]``), plain and under ``vmap``, so shape, attribute and batching mistakes of
the GPU path fail here. Until CUDA kernels exist the CUDA lowering must take the portable kernels
(no ``linalg_core_*`` custom call); the CPU lowering must take the FFI kernels."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export

import linalg_core as lc
from linalg_core import optim

F32 = jnp.float32


def _spec(*shape):
    return jax.ShapeDtypeStruct(shape, F32)


_OURS = [export.DisabledSafetyCheck.custom_call(name) for name in lc._native.cpu.ffi_targets()]


def _targets(fn, args, platform):
    # Our FFI targets carry no cross-version compatibility guarantee; this test only lowers.
    exp = export.export(jax.jit(fn), platforms=[platform], disabled_checks=_OURS)(*args)
    text = exp.mlir_module()
    return set(re.findall(r"stablehlo.custom_call @(\w+)", text)) | set(re.findall(r'call_target_name = "(\w+)"', text))


def _fd_update(b, e, r, g):
    return lc.fd_update(lc.FDState(b, e, r), factor=g, beta=0.99)


def _fd_update_matrix(b, e, r, m):
    return lc.fd_update(lc.FDState(b, e, r), matrix=m, beta=0.9)


def _fd_apply(b, e, r, x):
    return lc.fd_apply_inverse_root(lc.FDState(b, e, r), x, p=4, eps=1e-6)


def _roots(method):
    def fn(a, prev):
        return lc.inverse_root(a, 4, method=method, prev=prev)
    return fn


def _rsvd(a):
    return lc.randomized_svd(a, 4, key=jax.random.key(0))


def _reigh(method):
    def fn(a):
        return lc.randomized_eigh(a, 4, key=jax.random.key(0), method=method)
    return fn


def _lobpcg(a, x0):
    return lc.lobpcg(a, x0, k=3)


def _kron(g):
    return lc.kron_approx(g, steps=3)


def _kron_cosine(g, left, right):
    return lc.kron_cosine(g, left, right)


def _shared_basis(basis, coeffs, escaped, grads):
    return lc.shared_basis_update(lc.SharedBasisState(basis, coeffs, escaped), grads,
                                  key=jax.random.key(1), eps=1e-6)


CASES = {
    "fd_update": (_fd_update, [_spec(32, 8), _spec(8), _spec(), _spec(32, 4)]),
    "fd_update_dense": (_fd_update_matrix, [_spec(16, 4), _spec(4), _spec(), _spec(16, 16)]),
    "fd_apply_inverse_root": (_fd_apply, [_spec(32, 8), _spec(8), _spec(), _spec(32, 5)]),
    "inverse_root_eigh": (_roots("eigh"), [_spec(16, 16), _spec(16, 16)]),
    "inverse_root_newton": (_roots("newton"), [_spec(16, 16), _spec(16, 16)]),
    "inverse_root_newton3": (_roots("newton3"), [_spec(16, 16), _spec(16, 16)]),
    "randomized_svd": (_rsvd, [_spec(40, 30)]),
    "randomized_eigh": (_reigh("rayleigh_ritz"), [_spec(30, 30)]),
    "randomized_eigh_nystrom": (_reigh("nystrom"), [_spec(30, 30)]),
    "lobpcg": (_lobpcg, [_spec(60, 60), _spec(60, 3)]),
    "lobpcg_dense": (_lobpcg, [_spec(12, 12), _spec(12, 3)]),
    "kron_approx": (_kron, [_spec(8, 6, 5)]),
    "kron_cosine": (_kron_cosine, [_spec(8, 6, 5), _spec(6, 6), _spec(5, 5)]),
    "shared_basis_update": (_shared_basis, [_spec(12, 3), _spec(7, 3, 3), _spec(7), _spec(7, 12)]),
    "polar_quintic": (lambda a: lc.polar(a, method="quintic"), [_spec(12, 5)]),
    "polar_gram_side": (lambda a: lc.polar(a, method="polar_express", fallback=False), [_spec(5, 12)]),
    "polar_converge": (lambda a: lc.polar(a, tol=1e-3), [_spec(9, 9)]),
    "polar_svd": (lambda a: lc.polar(a, method="svd"), [_spec(6, 9)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.ffi_path
def test_lowers_for_cuda_with_portable_kernels(name):
    fn, args = CASES[name]
    cuda = _targets(fn, args, "cuda")
    assert not any(t.startswith("linalg_core_") for t in cuda), cuda
    cpu = _targets(fn, args, "cpu")
    assert any(t.startswith("linalg_core_") for t in cpu), cpu


@pytest.mark.parametrize("name", sorted(CASES))
def test_lowers_for_cuda_under_vmap(name):
    fn, args = CASES[name]
    batched = [jax.ShapeDtypeStruct((3,) + a.shape, a.dtype) for a in args]
    cuda = _targets(jax.vmap(fn), batched, "cuda")
    assert not any(t.startswith("linalg_core_") for t in cuda)


@pytest.mark.parametrize("factory", ["shampoo", "sketchy_shampoo", "sketchy_adagrad", "shared_basis_adagrad"])
def test_optimizers_lower_for_cuda(factory):
    opt = getattr(optim, factory)(0.1, block_size=16)
    params = {"w": jnp.zeros((24, 20), F32), "b": jnp.zeros(20, F32)}
    state = opt.init(params)
    args = [params, state, params]
    specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
    cuda = _targets(lambda g, s, p: opt.update(g, s, p), specs, "cuda")
    assert not any(t.startswith("linalg_core_") for t in cuda)


@pytest.mark.ffi_path
def test_muon_lowers_for_cuda():
    opt = optim.muon(0.02)
    params = {"w": jnp.zeros((24, 20), F32), "b": jnp.zeros(20, F32)}
    specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), [params, opt.init(params), params])
    cuda = _targets(lambda g, s, p: opt.update(g, s, p), specs, "cuda")
    assert not any(t.startswith("linalg_core_") for t in cuda)
    cpu = _targets(lambda g, s, p: opt.update(g, s, p), specs, "cpu")
    assert "linalg_core_polar" in cpu
