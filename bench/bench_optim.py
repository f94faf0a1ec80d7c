"""Optimizer step time and state bytes: Sketchy Shampoo, Shampoo, precondition-opt, Adam.

One dense layer (1024 x 1024 and 4096 x 1024; quick: 512 x 512 and 1024 x 512), float32, blocks
of 1024, every method updating its statistics and its preconditioner on every step (the same
update frequency), grafted to AdaGrad, momentum 0.9. A step is one jitted ``update`` from a state
that has seen two gradients. Peers: precondition-opt 0.3.0 ``distributed_shampoo`` (coupled
Newton roots) with and without ``frequent_directions`` (its FD Shampoo at the same rank), and
``optax.adam``. Memory: bytes of every array in each state, and of the statistics alone.
"""

from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench.harness import Built, Case, run_cases
from linalg_core import optim


def _method_names(rank: int) -> list[str]:
    """The methods of `_optimizers`, in its order, without building them."""
    return [f"linalg_core sketchy_shampoo (l={rank})", "linalg_core shampoo",
            f"precondition-opt FD Shampoo (rank {rank})", "precondition-opt distributed_shampoo", "optax.adam"]


def _optimizers(rank: int, block: int) -> dict:
    from precondition import distributed_shampoo as ds

    # precondition-opt 0.3.0 calls jax.tree_map, removed in JAX 0.6; give it the current name.
    for old, new in (("tree_map", jax.tree.map), ("tree_leaves", jax.tree.leaves),
                     ("tree_flatten", jax.tree.flatten), ("tree_unflatten", jax.tree.unflatten)):
        if not hasattr(jax, old):
            setattr(jax, old, new)

    peer = dict(block_size=block, beta1=0.9, beta2=0.999, matrix_epsilon=1e-6,
                start_preconditioning_step=1, preconditioning_compute_steps=1,
                statistics_compute_steps=1, graft_type=ds.GraftingType.ADAGRAD, nesterov=False,
                generate_training_metrics=False)
    ours = dict(b2=0.999, eps=1e-6, block_size=block, graft="adagrad", momentum=0.9)
    return dict(zip(_method_names(rank), (
        optim.sketchy_shampoo(1e-3, rank=rank, **ours),
        optim.shampoo(1e-3, **ours),
        ds.distributed_shampoo(1e-3, frequent_directions=True, compression_rank=rank, reuse_preconditioner=True,
                               **peer),
        ds.distributed_shampoo(1e-3, **peer),
        optax.adam(1e-3),
    )))


def _statistics_bytes(name: str, state) -> int | None:
    return optim.statistics_bytes(state) if name.startswith("linalg_core") else None


def _setup(quick: bool) -> tuple[list[tuple[int, int]], int, int]:
    """The layer shapes, the rank and the block size."""
    if quick:
        return [(512, 512), (1024, 512)], 128, 512
    return [(1024, 1024), (4096, 1024)], 256, 1024


def build(shape: tuple[int, int], rank: int, block: int, rng: np.random.Generator) -> Built:
    params = {"w": jnp.zeros(shape, jnp.float32)}
    mix = np.geomspace(1.0, 1e-2, shape[1]).astype(np.float32)

    def grad():
        return {"w": jnp.asarray(rng.standard_normal(shape).astype(np.float32) * mix)}

    fns, state_bytes, stats_bytes = {}, {}, {}
    for name, opt in _optimizers(rank, block).items():
        update = jax.jit(opt.update)
        state = opt.init(params)
        for _ in range(2):
            _, state = update(grad(), state, params)
        g = grad()
        jax.block_until_ready(update(g, state, params))
        fns[name] = (lambda u=update, g=g, s=state: jax.block_until_ready(u(g, s, params)))
        state_bytes[name] = int(optim.state_bytes(state))
        sb = _statistics_bytes(name, state)
        stats_bytes[name] = None if sb is None else int(sb)
    return Built(fns, {"shape": list(shape), "state_bytes": state_bytes, "statistics_bytes": stats_bytes})


def _label(shape: tuple[int, int]) -> str:
    return f"layer {shape[0]}x{shape[1]}"


def cases(size: str) -> list[Case]:
    quick = size == "quick"
    shapes, rank, block = _setup(quick)
    names = tuple(_method_names(rank))
    # One generator for the suite, drawn from in case order (each case's gradients depend on the
    # cases before it, as when the suite ran in one loop).
    rng = np.random.default_rng(20261122)
    return [Case(_label(shape), names, lambda shape=shape: build(shape, rank, block, rng), rounds=2 if quick else 3)
            for shape in shapes]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    _, rank, block = _setup(size == "quick")
    results = []
    for c in done.values():
        times, state_bytes, stats_bytes = c["times"], c["state_bytes"], c["statistics_bytes"]
        shape = tuple(c["shape"])
        sketchy = next(n for n in times if "sketchy_shampoo" in n)
        peer_fd = next(n for n in times if "FD Shampoo" in n)
        row = {
            "shape": shape, "times": times, "state_bytes": state_bytes, "statistics_bytes": stats_bytes,
            "step_ratio_vs_peer_fd": times[peer_fd]["median_s"] / times[sketchy]["median_s"],
            "statistics_ratio_vs_shampoo": stats_bytes[sketchy] / stats_bytes["linalg_core shampoo"],
        }
        results.append(row)
        log(f"layer {shape[0]}x{shape[1]}, blocks of {block}, rank {rank}, float32:")
        for name in times:
            sb = stats_bytes[name]
            log(f"  {name:44s} {1e3 * times[name]['median_s']:9.1f} ms  state {state_bytes[name]:>12,} B"
                + (f"  statistics {sb:>12,} B" if sb is not None else ""))
        log(f"  peer FD Shampoo step / sketchy step: {row['step_ratio_vs_peer_fd']:.1f}x (target >= 3x); "
            f"sketchy / shampoo statistics bytes: {row['statistics_ratio_vs_shampoo']:.3f} (target <= 1/3)")
    return {"suite": "optim", "rank": rank, "block": block, "layers": results}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def summarize(result: dict, out) -> str:
    lines = [f"### optimizer step and state, rank {result['rank']}, blocks of {result['block']}, float32"]
    for row in result["layers"]:
        r, c = row["shape"]
        lines += ["", f"layer {r}x{c}", "", "| optimizer | step ms | state bytes | statistics bytes |",
                  "|---|---|---|---|"]
        for name, t in row["times"].items():
            sb = row["statistics_bytes"][name]
            lines.append(f"| {name} | {1e3 * t['median_s']:.1f} | {row['state_bytes'][name]:,} | "
                         f"{'' if sb is None else f'{sb:,}'} |")
        lines += ["", f"- peer FD Shampoo / Sketchy Shampoo step time: **{row['step_ratio_vs_peer_fd']:.1f}x** "
                  f"(target >= 3x)", f"- Sketchy / Shampoo statistics bytes: "
                  f"**{row['statistics_ratio_vs_shampoo']:.3f}** (target <= 0.333)"]
    return "\n".join(lines)
