"""linalg_core: numerical linear algebra kernels for memory-efficient second-order optimization.

One function per primitive, the same signature for NumPy arrays (C++ kernels via pybind11) and JAX
arrays (XLA FFI custom calls, traced or not). CPU ``torch.Tensor`` arguments go through the NumPy
path and come back as tensors: each primitive is decorated where it is defined
(:func:`linalg_core._torch.accepts_torch`), so ``linalg_core.fd.fd_update`` takes them too, and
torch is never imported unless a call brings it. See DESIGN.md for the math contract.

Failure policy, NumPy path, every primitive:

- Malformed input raises ``ValueError`` naming the argument: a wrong type, shape, dtype or rank,
  an option outside its range, NaN/Inf in an array or state field, a non-symmetric matrix given
  to a symmetric routine, a state or basis that breaks its documented invariants.
- A numerical failure is a status, never a warning or an exception: what the computation finds
  (non-convergence, a fallback, ill-conditioning, an indefinite matrix, a LAPACK failure, a
  result outside the dtype's range) is reported in ``info.status`` (``info.converged`` false)
  with finite outputs: the input state unchanged, the previous root or zeros, as each primitive
  documents.
- ``fd_merge``, ``fd_apply_inverse_root`` and ``root_times`` return their status only on request
  (``return_info=True``, ``return_status=True``); without it such a failure raises ``ValueError``
  rather than go unreported.

The JAX path raises at trace time for what shapes and dtypes show and reports every
value-dependent problem as a status, with finite outputs.
"""

from linalg_core import _native  # noqa: F401  (loads LAPACK into the kernels at import)
from linalg_core.fd import (
    FD_METHODS,
    FD_STATUS,
    FDInfo,
    FDState,
    fd_apply_inverse_root,
    fd_init,
    fd_merge,
    fd_state_bytes,
    fd_update,
)
from linalg_core.kron import KronInfo, kron_approx, kron_approx_dense, kron_cosine
from linalg_core.lobpcg import LOBPCG_STATUS, LobpcgInfo, lobpcg
from linalg_core.roots import ROOT_METHODS, ROOT_STATUS, RootInfo, inverse_root
from linalg_core.root_times import root_times
from linalg_core.shared_basis import SharedBasisInfo, SharedBasisState, shared_basis_init, shared_basis_update
from linalg_core.rsvd import RSVD_METHODS, RSVD_STATUS, RandomizedInfo, randomized_eigh, randomized_svd

__version__ = "0.1.0"

__all__ = [
    "FD_METHODS",
    "FD_STATUS",
    "FDInfo",
    "FDState",
    "fd_apply_inverse_root",
    "fd_init",
    "fd_merge",
    "fd_state_bytes",
    "fd_update",
    "KronInfo",
    "kron_approx",
    "kron_approx_dense",
    "kron_cosine",
    "LOBPCG_STATUS",
    "LobpcgInfo",
    "lobpcg",
    "ROOT_METHODS",
    "ROOT_STATUS",
    "RootInfo",
    "inverse_root",
    "root_times",
    "RSVD_METHODS",
    "RSVD_STATUS",
    "RandomizedInfo",
    "randomized_eigh",
    "randomized_svd",
    "SharedBasisInfo",
    "SharedBasisState",
    "shared_basis_init",
    "shared_basis_update",
]

from linalg_core.kron import KRON_STATUS  # noqa: E402
from linalg_core.shared_basis import SHARED_BASIS_STATUS  # noqa: E402

__all__ += ["KRON_STATUS", "SHARED_BASIS_STATUS"]

from linalg_core.polar import (  # noqa: E402
    CLASSIC_QUINTIC,
    POLAR_METHODS,
    POLAR_STATUS,
    PolarInfo,
    PolarSchedule,
    minimax_odd_quintic,
    polar,
    polar_schedule,
)

__all__ += ["CLASSIC_QUINTIC", "POLAR_METHODS", "POLAR_STATUS", "PolarInfo", "PolarSchedule",
            "minimax_odd_quintic", "polar", "polar_schedule"]
from linalg_core.eigenbasis import (  # noqa: E402
    EIGENBASIS_METHODS,
    EIGENBASIS_STATUS,
    EigenbasisInfo,
    eigenbasis_refresh,
)

__all__ += ["EIGENBASIS_METHODS", "EIGENBASIS_STATUS", "EigenbasisInfo", "eigenbasis_refresh"]
