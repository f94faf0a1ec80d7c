"""One contract per primitive: status and method codes come from the compiled module (the C++
X-macro lists of cpp/*.h), every info starts with the same five fields."""

from __future__ import annotations

import pytest

import linalg_core as lc
from linalg_core._native import cpu

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


@pytest.mark.parametrize("info", [lc.RootInfo, lc.FDInfo, lc.LobpcgInfo, lc.RandomizedInfo, lc.KronInfo,
                                  lc.SharedBasisInfo, lc.PolarInfo, lc.EigenbasisInfo])
def test_every_info_starts_with_the_common_fields(info):
    assert info._fields[:5] == ("status", "converged", "iterations", "residual", "method")
