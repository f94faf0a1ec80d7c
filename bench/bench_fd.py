"""Frequent Directions update: linalg_core against precondition-opt's FD update and textbook FD.

Cases (float32, beta = 0.999, one update from a warm sketch reached by three earlier updates):
  (a) d=1024, l=256, full-rank factor G (d x d), the Shampoo statistics factor;
  (b) d=1024, l=256, thin factor r=32;
  (c) 64 blocks of d=128, l=32, full-rank factors (and r=8), as a blocked optimizer runs them.
Peers, same process, timed back to back in two rounds of opposite order (bench.harness):
  precondition-opt 0.3.0 `distributed_shampoo._fd_update_root` (google-research/precondition's
  Sketchy FD; jitted, vmapped over blocks; a thin G is zero-padded to d x d as its optimizer
  does; its inverse-root bookkeeping is part of its update), and textbook FD with
  `scipy.linalg.svd` of the stack [sqrt(beta) U diag(lambda)^(1/2), G].
Accuracy against a float64 oracle (dense eigh of the float64 C built from the same float32 inputs):
  ||S - S*||_2 / ||C||_2 for the sketch S = U diag(lambda) U^T, |rho_t - rho_t*| / ||C||_2, and
  max |U^T U - I|.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

import linalg_core as lc
from bench import floor
from bench.harness import Built, Case, floor_multiples, run_cases

BETA = 0.999
CASES = [
    {"name": "a_full_rank", "label": "(a) d=1024 l=256 G full rank", "d": 1024, "rank": 256, "cols": 1024, "batch": 0, "target": 8.0},
    {"name": "b_thin_r32", "label": "(b) d=1024 l=256 r=32", "d": 1024, "rank": 256, "cols": 32, "batch": 0, "target": 30.0},
    {"name": "c_blocks_full", "label": "(c) 64 x (d=128 l=32) G full rank", "d": 128, "rank": 32, "cols": 128, "batch": 64, "target": 3.0},
    {"name": "c_blocks_thin", "label": "(c') 64 x (d=128 l=32) r=8", "d": 128, "rank": 32, "cols": 8, "batch": 64, "target": None},
]


def warm_start(rng: np.random.Generator, d: int, rank: int, batch: int) -> lc.FDState:
    """A float32 sketch after three float64 updates by decaying-spectrum full-rank factors."""
    shape = (batch,) if batch else ()
    state = lc.fd_init(d, rank, dtype=np.float64, batch_shape=shape)
    scales = np.geomspace(1.0, 1e-2, d)[:, None]
    for _ in range(3):
        g = scales * rng.standard_normal(shape + (d, d))
        state, _ = lc.fd_update(state, factor=g, beta=BETA)
    return lc.FDState(*(np.asarray(a, np.float32) for a in state))


def oracle(basis, eigvals, g, beta):
    """float64 dense FD update of one sketch: (S*, rho_t*, ||C||_2)."""
    u, lam, g = (np.asarray(x, np.float64) for x in (basis, eigvals, g))
    rank = u.shape[1]
    c = beta * (u * lam) @ u.T + g @ g.T
    w, v = np.linalg.eigh(c)
    w, v = w[::-1], v[:, ::-1]
    rho_t = max(w[rank], 0.0)
    s = (v[:, :rank] * np.maximum(w[:rank] - rho_t, 0)) @ v[:, :rank].T
    return s, rho_t, w[0]


def oracles(state, g, beta) -> dict:
    """The float64 oracle of every sketch of the batch, computed once per case (a dense float64
    eigh per sketch), shared by every method's `accuracy`."""
    return {idx: oracle(state.basis[idx], state.eigvals[idx], g[idx], beta)
            for idx in np.ndindex(*state.basis.shape[:-2])}


def accuracy(basis, eigvals, step_mass, refs: dict) -> dict:
    """Worst case over the batch of the sketch, escaped-mass and orthogonality errors against
    the oracles (`oracles`)."""
    basis, eigvals, step_mass = (np.asarray(x, np.float64) for x in (basis, eigvals, step_mass))
    errs = {"sketch_rel_err": 0.0, "rho_rel_err": 0.0, "orthogonality": 0.0}
    for idx, (s_ref, rho_ref, norm_c) in refs.items():
        u = basis[idx]
        s = (u * eigvals[idx]) @ u.T
        errs["sketch_rel_err"] = max(errs["sketch_rel_err"], np.abs(np.linalg.eigvalsh(s - s_ref)).max() / norm_c)
        errs["rho_rel_err"] = max(errs["rho_rel_err"], abs(float(step_mass[idx]) - rho_ref) / norm_c)
        errs["orthogonality"] = max(errs["orthogonality"], np.abs(u.T @ u - np.eye(u.shape[1])).max())
    return errs


def peer_precondition(state: lc.FDState, g: np.ndarray, beta: float):
    """precondition-opt's FD update, jitted (vmapped over blocks): returns (run, outputs)."""
    import jax
    import jax.numpy as jnp
    from precondition import distributed_shampoo as ds

    d, rank = state.basis.shape[-2:]
    batched = state.basis.ndim == 3

    def pack(basis, eigvals, tail):
        return ds._fd_low_rank_pack(basis, eigvals, jnp.zeros_like(eigvals), 0.0, tail, False, rank)

    def update(grad, prev):
        # ridge_epsilon=0: no ridge added to the sketch, so accuracy compares the FD step alone.
        return ds._fd_update_root(grad, 4, rank=rank, ridge_epsilon=0.0, decay=beta,
                                  padding_start=d, prev=prev)[0]

    if batched:
        pack, update = jax.vmap(pack), jax.vmap(update)
    prev = jax.jit(pack)(jnp.asarray(state.basis), jnp.asarray(state.eigvals), jnp.asarray(state.escaped_mass))
    pad = np.zeros(g.shape[:-1] + (d,), np.float32)
    pad[..., : g.shape[-1]] = g
    grad = jnp.asarray(pad)
    fn = jax.jit(update)

    def run():
        return jax.block_until_ready(fn(grad, prev))

    def outputs():
        unpack = lambda p: ds._fd_low_rank_unpack(p, rank)  # noqa: E731
        packed = run()
        eigvecs, eigvals, _, _, tail, _ = (jax.vmap(unpack) if batched else unpack)(packed)
        return np.asarray(eigvecs), np.asarray(eigvals), np.asarray(tail) - beta * state.escaped_mass

    return run, outputs


def textbook_svd(state: lc.FDState, g: np.ndarray, beta: float):
    """FD by the SVD of the stack [sqrt(beta) U diag(lambda)^(1/2), G] (SciPy, float32)."""
    import scipy.linalg

    rank = state.basis.shape[-1]
    batch = state.basis.shape[:-2]

    def one(idx):
        stack = np.concatenate([np.sqrt(beta * state.eigvals[idx]) * state.basis[idx], g[idx]], axis=1)
        u, s, _ = scipy.linalg.svd(stack, full_matrices=False, check_finite=False)
        rho_t = s[rank] ** 2
        return u[:, :rank], s[:rank] ** 2 - rho_t, rho_t

    def outputs():
        res = [one(idx) for idx in np.ndindex(*batch)]
        return tuple(np.stack([r[i] for r in res]).reshape(batch + np.shape(res[0][i])) for i in range(3))

    return outputs, outputs


def ours_numpy(state, g, beta):
    def outputs():
        s, info = lc.fd_update(state, factor=g, beta=beta)
        return s.basis, s.eigvals, info.step_escaped_mass

    return outputs, outputs


def ours_jax(state, g, beta):
    import jax
    import jax.numpy as jnp

    jstate = lc.FDState(*(jnp.asarray(a) for a in state))
    jg = jnp.asarray(g)
    fn = jax.jit(lambda s, x: lc.fd_update(s, factor=x, beta=beta))

    def run():
        return jax.block_until_ready(fn(jstate, jg))

    def outputs():
        s, info = run()
        return np.asarray(s.basis), np.asarray(s.eigvals), np.asarray(info.step_escaped_mass)

    return run, outputs


METHODS: dict[str, Callable] = {
    "linalg_core (NumPy)": ours_numpy,
    "linalg_core (JAX)": ours_jax,
    "precondition-opt": peer_precondition,
    "SciPy SVD (textbook)": textbook_svd,
}
OURS = ("linalg_core (NumPy)", "linalg_core (JAX)")
PEER = "precondition-opt"


def floors(case: dict) -> tuple[str, ...]:
    """Names of the case's floor calls (`floor_fns`): the dense path (a full-rank factor) cannot
    avoid forming C = beta U diag(lambda) U^T + G G^T (one SYRK of the stack [sqrt(beta) U
    diag(lambda)^(1/2), G]), tridiagonalising it, the tridiagonal eigensolve and the
    back-transformation of the l+1 vectors it keeps (LAPACK's ``ormtr``, stood in for by a GEMM
    of its flop count). The factored path (a thin factor) cannot avoid U^T G, a QR of the part of
    G outside span(U), the (l+r) x (l+r) eigenproblem and rotating [U Q] into the new basis.

    A batch of small blocks has no floor here: timed one SciPy call per block, the wrappers'
    per-call overhead is the size of the calls themselves (measured: the floor of the 64 x 128 x
    128 case came out above our time), and NumPy's batched ``eigh`` computes every vector."""
    d, rank, cols = case["d"], case["rank"], case["cols"]
    if case["batch"]:
        return ()
    if cols >= d:
        return (f"floor: syrk {d}x{rank + cols}", f"floor: sytrd {d}", f"floor: stedc {d}",
                f"floor: ~ormtr (gemm {d}x{d}x{rank + 1})")
    return (f"floor: gemm {rank}x{d}x{cols}", f"floor: geqrf {d}x{cols}", f"floor: syevd {rank + cols}",
            f"floor: gemm {d}x{rank + cols}x{rank}")


def floor_fns(case: dict, state: lc.FDState, g: np.ndarray) -> dict[str, Callable]:
    d, rank, cols = case["d"], case["rank"], case["cols"]
    if not floors(case):
        return {}
    if cols >= d:
        u, lam, g0 = (np.asarray(x, np.float64) for x in (state.basis, state.eigvals, g))
        c = BETA * (u * lam) @ u.T + g0 @ g0.T
        calls = (floor.syrk(d, rank + cols), floor.sytrd(d, a=c), floor.tridiagonal_eigh(d, a=c),
                 floor.gemm(d, d, rank + 1))
    else:
        calls = (floor.gemm(rank, d, cols), floor.geqrf(d, cols), floor.syevd(rank + cols),
                 floor.gemm(d, rank + cols, rank))
    return dict(zip(floors(case), calls))


def build(case: dict, rng: np.random.Generator) -> Built:
    d, rank, cols, batch = case["d"], case["rank"], case["cols"], case["batch"]
    shape = (batch,) if batch else ()
    state = warm_start(rng, d, rank, batch)
    g = (np.geomspace(1.0, 1e-2, d)[:, None] * rng.standard_normal(shape + (d, cols))).astype(np.float32)
    fns, accs, refs = {}, {}, oracles(state, g, BETA)
    for name, make in METHODS.items():
        run_fn, outputs = make(state, g, BETA)
        fns[name] = run_fn
        accs[name] = accuracy(*outputs(), refs)
    fns.update(floor_fns(case, state, g))
    record = {**case, "beta": BETA, "accuracy": accs,
              "state_bytes": {"linalg_core": lc.fd_state_bytes(d, rank, dtype=np.float32, batch_shape=shape),
                              "precondition-opt": (batch or 1) * d * (rank + 2) * 4,
                              "full statistic": (batch or 1) * d * d * 4}}
    return Built(fns, record)


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    # One generator for the suite, drawn from in case order (each case's inputs depend on the
    # cases before it, as when the suite ran in one loop).
    rng = np.random.default_rng(20261122)
    out = []
    for c in CASES:
        repeats = 3 if quick else (5 if c["d"] * c["cols"] >= 1024 * 1024 else 9)
        out.append(Case(c["label"], (*METHODS, *floors(c)), lambda c=c: build(c, rng), rounds=repeats))
    return out


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    cases_out = []
    for label, c in done.items():
        times, accs = c["times"], c["accuracy"]
        ratios = {f"{peer} / {ours}": times[peer]["median_s"] / times[ours]["median_s"]
                  for ours in OURS for peer in METHODS if peer not in OURS}
        multiples = floor_multiples(times, OURS)
        cases_out.append({**c, "ratios": ratios, "floor_multiples": multiples})
        log(f"{label}:")
        for name in times:
            a = accs.get(name)
            err = (f"   sketch err {a['sketch_rel_err']:.1e}   rho err {a['rho_rel_err']:.1e}"
                   f"   orth {a['orthogonality']:.1e}") if a else ""
            log(f"  {name:36s} {1e3 * times[name]['median_s']:9.2f} ms{err}")
        for key in (f"{PEER} / {OURS[0]}", f"{PEER} / {OURS[1]}"):
            target = f" (target >= {c['target']:g}x)" if c["target"] else ""
            log(f"  speed-up {key}: {ratios[key]:.1f}x{target}")
        log("  floor multiple (ours / sum of floor calls): "
            + ", ".join(f"{name} {m:.2f}x" for name, m in multiples.items()))
    return {"suite": "fd", "cases": cases_out, "peer": PEER, "ours": list(OURS)}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)
