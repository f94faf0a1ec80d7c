"""Optax optimizers built from the linalg_core primitives (a thin layer: state, blocking, grafting).

- :func:`shampoo`: full Kronecker-factor statistics (the reference and the memory baseline);
- :func:`sketchy_shampoo`: EMA Frequent Directions sketches of both factors (Feinberg et al. 2023);
- :func:`sketchy_adagrad`: FD-sketched full-matrix AdaGrad on blocks of the flattened parameters;
- :func:`shared_basis_adagrad`: the shared-basis block low-rank preconditioner (Yen et al. 2023);
- :func:`muon`: momentum orthogonalised by :func:`linalg_core.polar` on matrices, AdamW on the rest.
- :func:`soap`: Adam in Shampoo's eigenbasis, kept by :func:`linalg_core.eigenbasis_refresh`
  (Vyas et al. 2024).

Each returns an ``optax.GradientTransformation``; the ``scale_by_*`` forms are the preconditioners
alone. Each optimizer has one options dataclass (``ShampooOptions``, ...; fields shared by all in
:class:`CommonOptions`) that its ``scale_by_*`` form and its alias both take, positionally or as
keyword overrides. :func:`state_bytes` and :func:`statistics_bytes` report memory.
"""

from linalg_core.optim.blocking import BlockLayout, block_layout
from linalg_core.optim.grafting import GRAFTS
from linalg_core.optim.memory import state_bytes, statistics_bytes
from linalg_core.optim.shampoo import ShampooOptions, scale_by_shampoo, shampoo
from linalg_core.optim.shared_basis import (
    SharedBasisAdagradOptions,
    scale_by_shared_basis_adagrad,
    shared_basis_adagrad,
)
from linalg_core.optim.sketchy import (
    SketchyAdagradOptions,
    SketchyShampooOptions,
    scale_by_sketchy_adagrad,
    scale_by_sketchy_shampoo,
    sketchy_adagrad,
    sketchy_shampoo,
)
from linalg_core.optim.transform import CommonOptions, Diagnostics, LeafState, PreconditionerState

__all__ = [
    "BlockLayout",
    "CommonOptions",
    "ShampooOptions",
    "SharedBasisAdagradOptions",
    "SketchyAdagradOptions",
    "SketchyShampooOptions",
    "Diagnostics",
    "GRAFTS",
    "LeafState",
    "PreconditionerState",
    "block_layout",
    "scale_by_shampoo",
    "scale_by_shared_basis_adagrad",
    "scale_by_sketchy_adagrad",
    "scale_by_sketchy_shampoo",
    "shampoo",
    "shared_basis_adagrad",
    "sketchy_adagrad",
    "sketchy_shampoo",
    "state_bytes",
    "statistics_bytes",
]

from linalg_core.optim.muon import MuonOptions, MuonState, muon, scale_by_muon  # noqa: E402

__all__ += ["MuonOptions", "MuonState", "muon", "scale_by_muon"]
from linalg_core.optim.soap import SoapOptions, scale_by_soap, soap  # noqa: E402

__all__ += ["SoapOptions", "scale_by_soap", "soap"]
