r"""Muon: Nesterov momentum orthogonalised by the polar factor on matrix parameters, AdamW on the rest.

Per 2-D parameter ``W`` (shape ``(m, n)``) with gradient ``G``:

.. math::
    M \leftarrow \beta M + G,\qquad
    U = G + \beta M \ \text{(Nesterov; } U = M \text{ otherwise)},\qquad
    \Delta = s(m, n)\, \mathrm{polar}(U),

``polar(U)`` from :func:`linalg_core.polar` (default: 5 steps of the classic quintic, as in Jordan
et al.; its singular values land in the schedule's band, about ``[0.7, 1.2]``, not at 1). The
scale ``s(m, n)`` (option ``scale``):

- ``"shape"`` (default): ``sqrt(max(1, m / n))`` of the parameter's own shape (the reference
  implementation's factor for a ``(rows, cols)`` matrix);
- ``"rms"``: ``0.2 sqrt(max(m, n))``, which matches the update's RMS to AdamW's typical 0.2-0.4
  so that AdamW's learning rate and weight decay carry over (Liu et al. 2025);
- ``"none"``: 1.

Every other parameter (vectors, scalars, tensors of 3 or more axes) gets Adam with bias
correction, its direction multiplied by ``adam_scale``. Decoupled weight decay
``weight_decay * W`` is added to every update, then everything is scaled by ``-learning_rate``.

Non-finite input never poisons the state: a parameter whose gradient holds NaN/Inf keeps its
state and gets a zero update (counted in ``diagnostics.skipped_steps``); a finite gradient whose
momentum, update or Adam moments are non-finite (overflow), or whose polar factor failed, is
treated the same way and counted in ``diagnostics.failures``.

References
----------
K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein, "Muon: An optimizer
for hidden layers in neural networks", 2024.
J. Liu et al., "Muon is scalable for LLM training", arXiv:2502.16982, 2025.
D. P. Kingma, J. Ba, "Adam", ICLR 2015; I. Loshchilov, F. Hutter, "Decoupled weight decay
regularization", ICLR 2019.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from linalg_core.optim import transform

__all__ = ["MuonOptions", "MuonState", "muon", "scale_by_muon"]

_SCALES = ("shape", "rms", "none")
_METHODS = ("quintic", "polar_express", "svd")


@dataclasses.dataclass(frozen=True)
class MuonOptions:
    """Options of :func:`muon` and :func:`scale_by_muon`.

    Attributes
    ----------
    beta : float in [0, 1)
        Momentum decay.
    nesterov : bool
        Orthogonalise ``G + beta M`` (Nesterov) instead of ``M``.
    method : {"quintic", "polar_express", "svd"}
        The polar factor's method (:func:`linalg_core.polar`); ``"svd"`` is exact (slow).
    steps : int
        Newton-Schulz steps.
    scale : {"shape", "rms", "none"}
        The shape-dependent scale of the orthogonalised update (module docstring).
    adam_b1, adam_b2, adam_eps : float
        Adam's moments' decays and epsilon, for the non-matrix parameters.
    adam_scale : float
        Multiplies Adam's direction (Adam's learning rate is ``adam_scale * learning_rate``).
    weight_decay : float >= 0
        Decoupled weight decay on every parameter (full alias only).
    """

    beta: float = 0.95
    nesterov: bool = True
    method: str = "quintic"
    steps: int = 5
    scale: str = "shape"
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    adam_scale: float = 1.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.beta) < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")
        transform.check_positive_int(self, "steps")
        for name in ("adam_b1", "adam_b2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not float(self.adam_eps) > 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps}")
        if not float(self.adam_scale) >= 0:
            raise ValueError(f"adam_scale must be >= 0, got {self.adam_scale}")
        if float(self.weight_decay) < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


class MuonState(NamedTuple):
    """``count``: calls so far; per parameter (``jax.tree.leaves`` order): ``momentum`` (Muon's
    ``M`` for matrices, Adam's first moment otherwise), ``second_moment`` (Adam's; ``()`` for
    matrices), ``accepted`` (finite steps of that parameter, Adam's bias correction);
    ``diagnostics``: :class:`~linalg_core.optim.transform.Diagnostics` counted per parameter."""

    count: Any
    momentum: tuple
    second_moment: tuple
    accepted: tuple
    diagnostics: transform.Diagnostics


def shape_scale(shape: tuple[int, int], scale: str) -> float:
    """The factor ``s(m, n)`` of the module docstring."""
    m, n = shape
    if scale == "shape":
        return max(1.0, m / n) ** 0.5
    if scale == "rms":
        return 0.2 * max(m, n) ** 0.5
    return 1.0


def scale_by_muon(options: MuonOptions | None = None, /, **overrides: Any) -> Any:
    """Muon's direction (module docstring) without weight decay and learning rate, as an
    ``optax.GradientTransformation``."""
    import jax
    import jax.numpy as jnp
    import optax

    import linalg_core as lc

    o = transform.resolve_options(MuonOptions, options, overrides)
    beta, b1, b2, eps = float(o.beta), float(o.adam_b1), float(o.adam_b2), float(o.adam_eps)
    polar_kw = dict(method="svd") if o.method == "svd" else dict(method=o.method, steps=int(o.steps))

    def init_fn(params):
        momentum, second, accepted = [], [], []
        for p in jax.tree.leaves(params):
            dt = transform.compute_dtype(p.dtype)
            momentum.append(jnp.zeros(p.shape, dt))
            second.append(() if p.ndim == 2 else jnp.zeros(p.shape, dt))
            accepted.append(jnp.zeros((), jnp.int32))
        zero = jnp.zeros((), jnp.int32)
        return MuonState(zero, tuple(momentum), tuple(second), tuple(accepted), transform.Diagnostics(zero, zero))

    def update_fn(updates, state, params=None):
        del params
        grads, treedef = jax.tree.flatten(updates)
        if len(grads) != len(state.momentum):
            raise ValueError(f"updates have {len(grads)} leaves, the state {len(state.momentum)}")
        skipped, failures = state.diagnostics.skipped_steps, state.diagnostics.failures
        outs, momentum, second, accepted = [], [], [], []
        for g, mom, nu, acc in zip(grads, state.momentum, state.second_moment, state.accepted):
            dt = mom.dtype
            finite = jnp.all(jnp.isfinite(g))
            g32 = jnp.where(finite, g.astype(dt), 0.0)
            new_acc = acc + 1
            if g.ndim == 2:
                new_mom = beta * mom + g32
                direction = g32 + beta * new_mom if o.nesterov else new_mom
                # Muon uses the iterate whatever its band check says (status not_converged is
                # the normal outcome for rank-deficient momenta): no SVD fallback.
                q, info = lc.polar(direction, fallback=False, **polar_kw)
                out = shape_scale(g.shape, o.scale) * q
                ok = (info.status != lc.POLAR_STATUS["failed"]) & (info.status != lc.POLAR_STATUS["non_finite_input"])
                new_nu = nu
            else:
                new_mom = b1 * mom + (1 - b1) * g32
                new_nu = b2 * nu + (1 - b2) * g32 * g32
                t = new_acc.astype(dt)
                m_hat = new_mom / (1 - b1 ** t)
                v_hat = new_nu / (1 - b2 ** t)
                out = float(o.adam_scale) * m_hat / (jnp.sqrt(v_hat) + eps)
                ok = jnp.array(True)
            ok = ok & jnp.all(jnp.isfinite(new_mom)) & jnp.all(jnp.isfinite(out))
            if g.ndim != 2:
                ok = ok & jnp.all(jnp.isfinite(new_nu))
            keep = finite & ok
            momentum.append(jnp.where(keep, new_mom, mom))
            second.append(jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_nu, nu))
            accepted.append(jnp.where(keep, new_acc, acc))
            outs.append(jnp.where(keep, out, 0.0).astype(g.dtype))
            skipped = skipped + (~finite).astype(jnp.int32)
            failures = failures + (finite & ~ok).astype(jnp.int32)
        new_state = MuonState(state.count + 1, tuple(momentum), tuple(second), tuple(accepted),
                              transform.Diagnostics(skipped, failures))
        return jax.tree.unflatten(treedef, outs), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def muon(learning_rate: Any, options: MuonOptions | None = None, /, **overrides: Any) -> Any:
    r"""Muon (Jordan et al. 2024) as an ``optax.GradientTransformation``.

    Update rule (module docstring): for matrices ``M <- beta M + G``, ``Delta = s(m, n)
    polar(G + beta M)`` (Nesterov); Adam (times ``adam_scale``) for every other parameter; then
    ``+ weight_decay * W`` and ``* -learning_rate``.

    Parameters
    ----------
    learning_rate : float or optax schedule
    options : MuonOptions, optional
        Every option, documented there; any field can also be given as a keyword, overriding it.

    Returns
    -------
    optax.GradientTransformation
        Its state's first element is a :class:`MuonState` with ``diagnostics``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from linalg_core import optim
    >>> opt = optim.muon(0.02, optim.MuonOptions(beta=0.95), weight_decay=0.01)
    >>> state = opt.init({"w": jnp.zeros((8, 4)), "b": jnp.zeros(4)})

    References
    ----------
    Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024; Liu et al.,
    "Muon is scalable for LLM training", arXiv:2502.16982, 2025 (the ``"rms"`` scale).
    """
    import optax

    o = transform.resolve_options(MuonOptions, options, overrides)
    parts = [scale_by_muon(o)]
    if o.weight_decay:
        parts.append(optax.add_decayed_weights(float(o.weight_decay)))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)
