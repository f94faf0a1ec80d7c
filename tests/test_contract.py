"""One contract per primitive: status and method codes come from the compiled module (the C++
X-macro lists of cpp/*.h), every info starts with the same five fields, and the NumPy path follows
the one failure policy of linalg_core's module docstring."""

from __future__ import annotations

import inspect
import warnings

import jax
import numpy as np
import pytest

import linalg_core as lc
from linalg_core._native import cpu

# Reaches no JAX entry point: LINALG_CORE_PORTABLE cannot change it (tests/conftest.py).
pytestmark = pytest.mark.numpy_path

# public dict -> (module attribute, the name of success)
CODES = [
    (lc.ROOT_STATUS, "root_status", "ok"),
    (lc.FD_STATUS, "fd_status", "ok"),
    (lc.LOBPCG_STATUS, "lobpcg_status", "converged"),
    (lc.RSVD_STATUS, "rsvd_status", "ok"),
    (lc.KRON_STATUS, "kron_status", "ok"),
    (lc.SHARED_BASIS_STATUS, "shared_basis_status", "ok"),
    (lc.POLAR_STATUS, "polar_status", "ok"),
    (lc.EIGENBASIS_STATUS, "eigenbasis_status", "ok"),
]


@pytest.mark.parametrize("codes,attribute,success", CODES, ids=[c[1] for c in CODES])
def test_status_codes_are_the_kernels(codes, attribute, success):
    assert codes == dict(getattr(cpu, attribute))
    assert codes[success] == 0
    assert len(set(codes.values())) == len(codes)


@pytest.mark.parametrize("codes,attribute", [(lc.ROOT_METHODS, "root_methods"), (lc.FD_METHODS, "fd_methods")])
def test_method_codes_are_the_kernels(codes, attribute):
    exported = dict(getattr(cpu, attribute))
    # The public dicts list the methods an info can report; "auto" (-1) is a request only.
    assert codes == {k: v for k, v in exported.items() if v >= 0}
    assert exported["auto"] == -1


def _portable_keywords(fn):
    return sorted(k for k, v in inspect.signature(fn).parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY)


def _attrs_sent(monkeypatch, bindings, calls):
    """The attribute keys each binding in ``bindings`` and each FFI call receives while ``calls``
    run on NumPy and on JAX arrays: {binding name or FFI target: sorted keys}."""
    import jax.numpy as jnp

    from linalg_core import _jax

    sent = {}
    for name in bindings:
        def record(*operands, _real=getattr(cpu, name), _name=name):
            sent[_name] = sorted(operands[-1])
            return _real(*operands)
        monkeypatch.setattr(cpu, name, record)
    ffi_call = _jax.call

    def record_call(target, results, *args, portable=None, **attrs):
        sent[target] = sorted(attrs)
        return ffi_call(target, results, *args, portable=portable, **attrs)

    monkeypatch.setattr(_jax, "call", record_call)
    for call in calls:
        call(np.asarray)
        call(jnp.asarray)
    return sent


def test_root_options_are_the_keys_every_backend_gets(monkeypatch):
    """cpp/roots.h's LC_ROOT_OPTIONS (exported as root_options) is the key set inverse_root sends
    to the binding and to the FFI call, and the portable kernel's keywords: an option added to one
    of them and not the others fails here."""
    from linalg_core.portable import roots as portable

    sent = _attrs_sent(monkeypatch, ["inverse_root"], [lambda xp: lc.inverse_root(xp(_SPD), 2, prev=xp(np.eye(6)))])
    names = sorted(cpu.root_options)
    assert sent == {"inverse_root": names, "linalg_core_inverse_root": names}
    assert _portable_keywords(portable.inverse_root) == names
    assert dict(cpu.root_ridges) == {"relative": 0, "absolute": 1}


def test_rsvd_options_are_the_keys_every_backend_gets(monkeypatch):
    """The same for cpp/rsvd.h's LC_RSVD_OPTIONS (rsvd_options), both kernels."""
    from linalg_core.portable import rsvd as portable

    sent = _attrs_sent(monkeypatch, ["randomized_svd", "randomized_eigh"],
                       [lambda xp: lc.randomized_svd(xp(_SPD), 2, key=_key(xp)),
                        lambda xp: lc.randomized_eigh(xp(_SPD), 2, key=_key(xp), method="nystrom")])
    names = sorted(cpu.rsvd_options)
    assert sent == {name: names for name in ("randomized_svd", "randomized_eigh", "linalg_core_randomized_svd",
                                             "linalg_core_randomized_eigh")}
    assert _portable_keywords(portable.randomized_svd) == _portable_keywords(portable.randomized_eigh) == names
    assert lc.RSVD_METHODS == dict(cpu.rsvd_methods)


def test_kron_options_are_the_keys_every_backend_gets(monkeypatch):
    """The same for cpp/kron.h's LC_KRON_OPTIONS (kron_options)."""
    from linalg_core.portable import kron as portable

    sent = _attrs_sent(monkeypatch, ["kron_approx"], [lambda xp: lc.kron_approx(xp(np.ones((3, 2, 2))), steps=2)])
    names = sorted(cpu.kron_options)
    assert sent == {"kron_approx": names, "linalg_core_kron_approx": names}
    assert _portable_keywords(portable.approx) == names


def _key(xp):
    return jax.random.key(0) if xp is not np.asarray else 0


def test_root_options_unknown_or_missing_are_rejected_by_both_adapters():
    """Both decoders hold the caller to the list: a key outside it or a key missing is an error,
    never silently ignored or defaulted."""
    import jax

    from linalg_core import _jax, roots

    attrs = roots._attrs(2.0, eps=1e-6, ridge="relative", method="auto", pinv_threshold=None, max_iters=100,
                         tol=None, accept=None, accumulate_float64=False, true_residual=False, has_previous=False)
    missing = {k: v for k, v in attrs.items() if k != "tol"}
    with pytest.raises(ValueError, match="unknown option 'bogus'"):
        cpu.inverse_root(_SPD, None, {**attrs, "bogus": np.int32(0)})
    with pytest.raises(ValueError, match="option 'tol' missing"):
        cpu.inverse_root(_SPD, None, missing)
    results = [((6, 6), F64)] + [((), F64)] * 3 + [((), np.int32)] * 3
    with pytest.raises(jax.errors.JaxRuntimeError, match="attributes of LC_ROOT_OPTIONS"):
        _jax.call("linalg_core_inverse_root", results, _SPD, _SPD, **attrs, bogus=np.int32(0))
    with pytest.raises(jax.errors.JaxRuntimeError, match="attribute 'tol' missing"):
        _jax.call("linalg_core_inverse_root", results, _SPD, _SPD, **missing, bogus=np.float64(0))


@pytest.mark.parametrize("info", [lc.RootInfo, lc.FDInfo, lc.LobpcgInfo, lc.RandomizedInfo, lc.KronInfo,
                                  lc.SharedBasisInfo, lc.PolarInfo, lc.EigenbasisInfo])
def test_every_info_starts_with_the_common_fields(info):
    assert info._fields[:5] == ("status", "converged", "iterations", "residual", "method")


# The failure policy (linalg_core's module docstring), NumPy path, one case per primitive:
# malformed input -> ValueError naming the argument; a numerical failure -> a status that is not
# ok, every floating output finite, and no warning.
F32, F64 = np.float32, np.float64
NAN = np.full((6, 6), np.nan)
_SPD = np.diag(np.arange(1.0, 7.0))


def _fd_state():
    return lc.fd_init(6, 2, dtype=F64)


def _fd_huge():
    """Eigenvalues at 1e308: any further mass overflows float64 (status not_representable)."""
    return _fd_state()._replace(eigvals=np.array([1e308, 1e308]))


MALFORMED = {
    "fd_init": (lambda: lc.fd_init(4, 5), "rank"),
    "fd_update": (lambda: lc.fd_update(_fd_state(), factor=np.ones((5, 2))), "factor"),
    "fd_merge": (lambda: lc.fd_merge([_fd_state(), _fd_state()._replace(eigvals=np.array([0.0, 1.0]))]),
                 r"states\[1\]\.eigvals"),
    "fd_apply_inverse_root": (lambda: lc.fd_apply_inverse_root(_fd_state(), NAN, p=2, eps=1e-6), "x contains NaN"),
    "root_times": (lambda: lc.root_times(NAN), "g contains NaN"),
    "inverse_root": (lambda: lc.inverse_root(np.triu(_SPD + 1), 2), "a must be symmetric"),
    "lobpcg": (lambda: lc.lobpcg(NAN, np.ones((6, 1))), "a contains NaN"),
    "randomized_svd": (lambda: lc.randomized_svd(NAN, 1, key=0), "a contains NaN"),
    "randomized_eigh": (lambda: lc.randomized_eigh(np.triu(_SPD + 1), 1, key=0), "a must be symmetric"),
    "kron_approx": (lambda: lc.kron_approx(np.full((3, 2, 2), np.nan)), "samples contains NaN"),
    "kron_approx_dense": (lambda: lc.kron_approx_dense(np.full((4, 4), np.nan), 2, 2), "h contains NaN"),
    "kron_cosine": (lambda: lc.kron_cosine(np.ones((3, 2, 2)), np.eye(3), np.eye(2)), "left must have shape"),
    "shared_basis_init": (lambda: lc.shared_basis_init(2, 4, 5), "rank"),
    "shared_basis_update": (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.full((2, 4), np.nan),
                                                           key=0, eps=1e-3), "grads contains NaN"),
    "polar": (lambda: lc.polar(NAN), "a contains NaN"),
    "eigenbasis_refresh": (lambda: lc.eigenbasis_refresh(_SPD, 2 * np.eye(6)), "'basis' must have orthonormal"),
}

# primitive -> (the call, where its status is in the outputs, the expected code). kron_cosine (a
# number, no status; its arguments are scaled by powers of two, so it has no numerical failure to
# report) and the two init functions have none.
NUMERICAL_FAILURE = {
    "fd_update": (lambda: lc.fd_update(_fd_huge(), factor=np.full((6, 1), 1e154)), (1, "status"),
                  "not_representable"),
    "fd_merge": (lambda: lc.fd_merge([_fd_huge(), _fd_huge()], return_info=True), (1, "status"), "not_representable"),
    "fd_apply_inverse_root": (lambda: lc.fd_apply_inverse_root(_fd_state(), np.full((6, 1), 1e308), p=2, eps=1e-6,
                                                               return_status=True), (1,), "not_representable"),
    "root_times": (lambda: lc.root_times(np.full((6, 6), 1e300), np.full((6, 6), 1e300), return_status=True),
                   (1,), "not_representable"),
    "inverse_root": (lambda: lc.inverse_root(-_SPD, 2), (1, "status"), "indefinite"),
    "lobpcg": (lambda: lc.lobpcg(np.diag(np.arange(60.0)), np.random.default_rng(0).standard_normal((60, 2)),
                                 max_iters=1), (2, "status"), "max_iters"),
    # A warm start at the top of float32's range: A Omega overflows, and no power step follows.
    "randomized_svd": (lambda: lc.randomized_svd(np.ones((6, 6), F32), 1, key=0, power_iters=0,
                                                 warm_start=np.full((6, 1), 3e38, F32)),
                       (3, "status"), "lapack_failure"),
    "randomized_eigh": (lambda: lc.randomized_eigh(np.ones((6, 6), F32), 1, key=0, power_iters=0,
                                                   warm_start=np.full((6, 1), 3e38, F32)),
                        (2, "status"), "lapack_failure"),
    "kron_approx": (lambda: lc.kron_approx(np.full((3, 2, 2), 1e30, F32)), (2, "status"), "out_of_range"),
    "kron_approx_dense": (lambda: lc.kron_approx_dense(np.full((4, 4), 3e38, F32), 2, 2), (2, "status"),
                          "out_of_range"),
    "shared_basis_update": (lambda: lc.shared_basis_update(lc.shared_basis_init(2, 4, 2), np.full((2, 4), 1e30, F32),
                                                           key=0, eps=1e-3), (2, "status"), "out_of_range"),
    "polar": (lambda: lc.polar(np.random.default_rng(0).standard_normal((6, 4)), tol=1e-15, max_iters=1,
                               fallback=False), (1, "status"), "not_converged"),
    # Entries at the top of float32's range: the answer fails the kernel's a-posteriori check.
    "eigenbasis_refresh": (lambda: lc.eigenbasis_refresh(np.full((4, 4), 3e38, F32), None), (3, "status"), "failed"),
}
STATUS_CODES = {"fd": lc.FD_STATUS, "root_times": lc.FD_STATUS, "inverse_root": lc.ROOT_STATUS,
                "lobpcg": lc.LOBPCG_STATUS, "randomized": lc.RSVD_STATUS, "kron": lc.KRON_STATUS,
                "shared_basis": lc.SHARED_BASIS_STATUS, "polar": lc.POLAR_STATUS, "eigenbasis": lc.EIGENBASIS_STATUS}


def test_the_policy_covers_every_public_primitive():
    primitives = {name for name in lc.__all__ if callable(getattr(lc, name)) and name[0].islower()
                  and name not in ("fd_state_bytes", "minimax_odd_quintic", "polar_schedule")}
    assert primitives == set(MALFORMED)
    assert primitives - set(NUMERICAL_FAILURE) == {"fd_init", "shared_basis_init", "kron_cosine"}


@pytest.mark.parametrize("primitive", sorted(MALFORMED))
def test_malformed_input_raises_value_error_naming_the_argument(primitive):
    call, match = MALFORMED[primitive]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("primitive", sorted(NUMERICAL_FAILURE))
def test_numerical_failure_is_a_status_with_finite_outputs_and_no_warning(primitive):
    call, where, code = NUMERICAL_FAILURE[primitive]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs = call()
    status = outputs[where[0]] if len(where) == 1 else getattr(outputs[where[0]], where[1])
    codes = next(v for k, v in STATUS_CODES.items() if primitive.startswith(k))
    assert np.all(np.asarray(status) == codes[code]), (status, code)
    for leaf in jax.tree.leaves(outputs):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating):
            assert np.isfinite(arr).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("primitive", ["kron_approx_dense", "root_times"])
def test_low_precision_is_computed_and_returned_in_float32(primitive, dtype):
    """bfloat16/float16 inputs accumulate in float32 (DESIGN.md) like inverse_root's: the result is
    the float32 call's on the same values, bit for bit (kron_approx_dense raised NumPy's TypeError
    for float16 and returned float64 for bfloat16; root_times multiplied in float16)."""
    import ml_dtypes

    low = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(7)
    if primitive == "kron_approx_dense":
        a, b = rng.standard_normal((2, 2)), rng.standard_normal((3, 3))
        h = np.kron(a @ a.T, b @ b.T).astype(low)
        got, want = lc.kron_approx_dense(h, 3, 2), lc.kron_approx_dense(h.astype(np.float32), 3, 2)
        got, want = got[:2], want[:2]
    else:
        x = rng.standard_normal((4, 4))
        side = (x @ x.T + np.eye(4)).astype(low)
        g = rng.standard_normal((4, 3)).astype(low)
        got = [lc.root_times(g, side)]
        want = [lc.root_times(g.astype(np.float32), side.astype(np.float32))]
    for y, z in zip(got, want):
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, z)
