"""Training quality on real data: the deep MNIST autoencoder of the shared-basis paper.

Model: MLP autoencoder 784-1000-500-250-30-250-500-1000-784, tanh on hidden layers, a linear code
layer, sigmoid outputs; loss = sigmoid cross-entropy against the pixel intensities, summed over the
784 pixels and averaged over the batch (Hinton & Salakhutdinov 2006; Martens 2010; Yen et al. 2023,
Sec. 5); batch 1000; float32; weights N(0, 1/fan_in), biases 0; every run seeded.

Optimizers: optax.adam; linalg_core.optim.shampoo (blocks of 1024, AdaGrad graft, roots every 10
steps), sketchy_shampoo (rank ``RANK`` = 64, AdaGrad graft, sketches updated every step),
shared_basis_adagrad (k = 32, one power step), all with momentum 0.9 except Adam (its beta1 is
0.9); linalg_core.optim.muon (5 classic-quintic steps, Nesterov momentum 0.95, the RMS-matched
scale 0.2 sqrt(max(m, n)), Adam on the biases; not one of the papers' optimizers, so not part of
the ordering claim below); soap (blocks of 1024, betas 0.95, eigenbases refreshed every 10 steps
by one power step, Adam's learning-rate grid; not part of the papers' claim either). Equal tuning budget: three learning rates per optimizer (a factor 10^(1/2) apart, centred on
a pilot's optimum, one step lower in the full report: see :func:`optimizers`), each trained for
``tune_steps``; the best by final train loss (mean of the last 3 steps) is trained again for
``steps`` from another seed and evaluated on the test set. A best value at the edge of its grid
is flagged. Reported: final train loss (mean of the last 5 steps), test loss, wall time of the
final run (compile excluded: each optimizer's step is compiled once, ahead of time, with the
learning rate a runtime value via ``optax.inject_hyperparams``), loss curves per step and per
wall-clock second of the final run (PNG ``train_<task>.png``), each optimizer's train loss at
Adam's wall time (what a user paying in seconds compares), and whether the papers' claim
(Shampoo, Sketchy Shampoo and shared-basis AdaGrad reach a lower loss than Adam per step) holds
at equal steps. Under pytest-benchmark each optimizer is one benchmark (compile, tuning and final
run, timed once); the curves come from inside the final run.

Budgets: ``--quick`` trains MNIST only, on 10k images, 3 x 8 tuning + 20 steps per optimizer
(a smoke run of about a minute); the full report trains on all 60k images, 3 x 25 tuning + 150
steps (2.5 epochs), on MNIST and, where Debian's ``dataset-fashion-mnist`` is installed,
Fashion-MNIST. The report's wall-clock columns give each optimizer's time per step.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import datasets
from bench.harness import Built, Case, run_cases

SIZES = (784, 1000, 500, 250, 30, 250, 500, 1000, 784)
CODE_LAYER = 3  # index of the linear 30-unit code layer


def init_params(seed: int) -> list:
    key = jax.random.key(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        key, sub = jax.random.split(key)
        params.append({"w": jax.random.normal(sub, (fan_in, fan_out), jnp.float32) / np.sqrt(fan_in),
                       "b": jnp.zeros(fan_out, jnp.float32)})
    return params


def loss_fn(params: list, x: jax.Array) -> jax.Array:
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i != CODE_LAYER and i != len(params) - 1:
            h = jnp.tanh(h)
    # Sigmoid cross-entropy with logits h against targets x, summed over pixels.
    return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(h, x), axis=1))


def optimizers(quick: bool = True) -> dict[str, tuple[Callable[[float], optax.GradientTransformation], tuple]]:
    from linalg_core import optim

    # Three values per optimizer, a factor ~10^(1/2) apart. Quick (8 tuning steps on 10k images):
    # centred where a 20-step pilot on 10k images put each optimum, so that each is interior.
    # Full (25 tuning steps on 60k images): the same grids one step lower, because longer tuning
    # on more data moves every optimizer's best to the quick grid's smallest value, where the
    # grid no longer brackets it. Muon (RMS-matched scale, one learning rate for its Adam part
    # too): the quick pilot's optimum is the middle of (3e-2, 1e-1, 3e-1); its full grid is one
    # step lower by the same rule.
    if quick:
        grid_adam = grid_graft = (1e-3, 3e-3, 1e-2)
        grid_basis = (1e-2, 3e-2, 1e-1)
        grid_muon = (3e-2, 1e-1, 3e-1)
    else:
        grid_adam = grid_graft = (3e-4, 1e-3, 3e-3)
        grid_basis = (3e-3, 1e-2, 3e-2)
        grid_muon = (1e-2, 3e-2, 1e-1)
    return {
        "adam": (lambda lr: optax.adam(lr), grid_adam),
        "shampoo": (lambda lr: optim.shampoo(lr, block_size=1024, precondition_every=10,
                                             graft="adagrad", momentum=0.9), grid_graft),
        "sketchy_shampoo": (lambda lr: optim.sketchy_shampoo(lr, rank=RANK, block_size=1024,
                                                             graft="adagrad", momentum=0.9), grid_graft),
        "shared_basis_adagrad": (lambda lr: optim.shared_basis_adagrad(lr, rank=32, momentum=0.9),
                                 grid_basis),
        "muon": (lambda lr: optim.muon(lr, scale="rms"), grid_muon),
        # Adam's step size in the rotated space: Adam's grid; the paper's betas and frequency.
        "soap": (lambda lr: optim.soap(lr, block_size=1024, precondition_frequency=10), grid_adam),
    }


RANK = 64


def compile_step(make: Callable, example: np.ndarray) -> Callable:
    """One ahead-of-time compiled training step for an optimizer factory; the learning rate is
    part of the optimizer state (``optax.inject_hyperparams``), so every grid value reuses it."""
    opt = optax.inject_hyperparams(make)(1.0)

    def step(params, state, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = init_params(0)
    return jax.jit(step).lower(params, opt.init(params), jnp.asarray(example)).compile()


def train(make: Callable, step: Callable, lr: float, data: np.ndarray, steps: int,
          seed: int, clock: bool = False) -> tuple[list, float, list, list]:
    """``steps`` steps from a seeded init on seeded batches; returns (losses, seconds, params,
    elapsed), where ``elapsed[i]`` is the wall time from the start to the end of step i+1 when
    ``clock`` is set (each step then waits for its loss: that is what a per-second curve needs,
    and it costs the asynchronous dispatch's overlap of the host's batch preparation with the
    step), and empty otherwise."""
    params = init_params(seed)
    state = optax.inject_hyperparams(make)(lr).init(params)
    batches = datasets.minibatches(data, 1000, seed=seed, epochs=10**6)
    losses, elapsed = [], []
    start = time.perf_counter()
    for _, x in zip(range(steps), batches):
        params, state, loss = step(params, state, jnp.asarray(x))
        losses.append(loss)
        if clock:
            loss.block_until_ready()
            elapsed.append(time.perf_counter() - start)
    losses = [float(v) for v in jax.block_until_ready(losses)]
    return losses, time.perf_counter() - start, params, elapsed


def evaluate(params: list, data: np.ndarray) -> float:
    x = data.reshape(len(data), -1).astype(np.float32) / 255.0
    return float(np.mean([loss_fn(params, jnp.asarray(x[i:i + 1000])) for i in range(0, len(x), 1000)]))


PRECONDITIONED = ("shampoo", "sketchy_shampoo", "shared_basis_adagrad")


def loss_at(losses: list, elapsed: list, seconds: float) -> float:
    """The train loss reached within ``seconds`` of wall time: the mean of the (up to) last 3
    losses of the steps finished by then, inf when not one step was."""
    done = [v for v, t in zip(losses, elapsed) if t <= seconds]
    return float(np.mean(done[-3:])) if done else float("inf")


SIZES_OF = {  # size -> (training images, tuning steps per learning rate, final-run steps, tasks)
    "quick": (10000, 8, 20, ("mnist",)),
    "full": (None, 25, 150, ("mnist", "fashion_mnist")),
}


def _tasks(size: str) -> tuple[str, ...]:
    """MNIST always (the bench extra installs it); Fashion-MNIST in the full report when Debian's
    package is there."""
    tasks = SIZES_OF[size][3]
    return tuple(t for t in tasks if t != "fashion_mnist" or datasets.FASHION_DIR.is_dir())


def _load(task: str) -> datasets.ImageData:
    return datasets.mnist() if task == "mnist" else datasets.fashion_mnist()


def train_one(name: str, data: datasets.ImageData, size: str, record: dict) -> None:
    """Compile, tune over the optimizer's grid and train the best learning rate again from
    another seed; the results go into ``record["results"][name]``."""
    examples, tune_steps, steps, _ = SIZES_OF[size]
    train_x = data.x_train[:examples]
    make, grid = optimizers(size == "quick")[name]
    start = time.perf_counter()
    step = compile_step(make, train_x[:1000].reshape(1000, -1).astype(np.float32) / 255.0)
    compile_s = time.perf_counter() - start
    tuning = {}
    for lr in grid:
        losses = train(make, step, lr, train_x, tune_steps, seed=0)[0]
        final = float(np.mean(losses[-3:]))
        tuning[lr] = final if np.isfinite(final) else float("inf")
    best = min(tuning, key=tuning.get)
    losses, seconds, params, elapsed = train(make, step, best, train_x, steps, seed=1, clock=True)
    test = evaluate(params, data.x_test)
    train_loss = float(np.mean(losses[-5:]))
    record["results"][name] = {
        "lr": best, "lr_at_grid_edge": best in (min(grid), max(grid)),
        "tuning": {str(lr): v for lr, v in tuning.items()}, "losses": losses, "elapsed_s": elapsed,
        "seconds": seconds, "seconds_per_step": seconds / steps, "compile_s": compile_s,
        "train_loss": train_loss if np.isfinite(train_loss) else float("inf"),
        "test_loss": test if np.isfinite(test) else float("inf")}


def cases(size: str) -> list[Case]:
    """One group per task; one benchmark per optimizer: its compile, tuning and final run, timed
    once (the report's wall times are the final run's, measured inside)."""
    if size not in SIZES_OF:
        raise ValueError(f"train: size must be one of {sorted(SIZES_OF)}, got {size!r}")
    examples, tune_steps, steps, _ = SIZES_OF[size]
    names = tuple(optimizers(size == "quick"))

    def build(task: str) -> Built:
        data = _load(task)
        record = {"task": task, "steps": steps, "tune_steps": tune_steps,
                  "train_examples": int(len(data.x_train[:examples])), "results": {}}
        fns = {name: functools.partial(train_one, name, data, size, record) for name in names}
        return Built(fns, record)

    return [Case(task, names, functools.partial(build, task), rounds=1, warmup=0) for task in _tasks(size)]


def finish(size: str, done: dict, log: Callable[[str], None]) -> dict:
    tasks = {}
    for task, t in done.items():
        results = t["results"]
        log(f"-- {task}")
        adam_s = results["adam"]["seconds"]
        for name, r in results.items():
            r["loss_at_adam_seconds"] = loss_at(r["losses"], r["elapsed_s"], adam_s)
            for lr, v in r["tuning"].items():
                log(f"  {name:22s} lr={float(lr):<7g} tuning loss {v:9.3f}")
            log(f"{name:22s} lr={r['lr']:<7g}{' (grid edge)' if r['lr_at_grid_edge'] else ''} "
                f"train {r['train_loss']:8.3f}  test {r['test_loss']:8.3f}  {r['seconds']:7.1f} s for "
                f"{t['steps']} steps (compile {r['compile_s']:.1f} s); at Adam's {adam_s:.1f} s: "
                f"{r['loss_at_adam_seconds']:8.3f}")
        order = sorted(results, key=lambda n: results[n]["train_loss"])
        adam = results["adam"]["train_loss"]
        beats_adam = {n: results[n]["train_loss"] < adam for n in PRECONDITIONED if n in results}
        beats_adam_per_second = {n: results[n]["loss_at_adam_seconds"] < results["adam"]["loss_at_adam_seconds"]
                                 for n in results if n != "adam"}
        reproduced = all(beats_adam.values())
        log("ordering by final train loss: " + " < ".join(order))
        log("papers' ordering (every preconditioned optimizer below Adam per step): "
            + ("reproduced" if reproduced else "NOT reproduced")
            + " (" + ", ".join(f"{n} {'<' if b else '>='} adam" for n, b in beats_adam.items()) + ")")
        log("below Adam at Adam's wall time: " + (", ".join(n for n, b in beats_adam_per_second.items() if b)
                                                   or "none"))
        tasks[task] = {**t, "ordering": order, "beats_adam": beats_adam,
                       "beats_adam_at_adam_seconds": beats_adam_per_second,
                       "papers_ordering_reproduced": reproduced}
    return {"suite": "train", "size": size, "rank": RANK,
            "loss": "sigmoid cross-entropy, summed over the 784 pixels, mean over the batch",
            "tasks": tasks}


def run(size: str, log: Callable[[str], None]) -> dict:
    """The suite timed in this process (`bench.harness.run_cases`)."""
    return run_cases(sys.modules[__name__], size, log)


def _loss_cell(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "no step by then"


def summarize(result: dict, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    for task, t in result["tasks"].items():
        adam_s = t["results"]["adam"]["seconds"]
        fig, (per_step, per_second) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for name, r in t["results"].items():
            label = f"{name} (lr {r['lr']:g})"
            per_step.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], label=label)
            per_second.plot(r["elapsed_s"], r["losses"], label=label)
        per_second.axvline(adam_s, color="grey", linestyle=":", linewidth=1, label="Adam's wall time")
        per_step.set_xlabel("step (batch 1000)")
        per_second.set_xlabel("wall-clock seconds (final run, compile excluded; log scale)")
        per_second.set_xscale("log")  # the optimizers' step times differ by 10x and more
        per_step.set_ylabel("train loss (sigmoid CE, sum over pixels)")
        per_step.set_yscale("log")
        per_step.set_title(f"{task} deep autoencoder: per step")
        per_second.set_title("per second")
        per_second.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(Path(out) / f"train_{task}.png", dpi=120)
        plt.close(fig)
        lines = [f"### {task} autoencoder: {t['steps']} steps of batch 1000 on {t['train_examples']} "
                 f"images, best of 3 learning rates ({t['tune_steps']} steps each)", "",
                 "| optimizer | lr | final train loss | test loss | wall s (final run) | s / step | "
                 f"train loss at Adam's {adam_s:.1f} s |",
                 "|---|---|---|---|---|---|---|"]
        for name, r in t["results"].items():
            edge = " (grid edge)" if r.get("lr_at_grid_edge") else ""
            lines.append(f"| {name} | {r['lr']:g}{edge} | {r['train_loss']:.3f} | {r['test_loss']:.3f} | "
                         f"{r['seconds']:.1f} | {r['seconds_per_step']:.3f} | {_loss_cell(r['loss_at_adam_seconds'])} |")
        verdict = "reproduced" if t["papers_ordering_reproduced"] else "**not reproduced**"
        faster = [n for n, b in t["beats_adam_at_adam_seconds"].items() if b]
        lines += ["", f"- ordering by final train loss: {' < '.join(t['ordering'])}; plot `train_{task}.png` "
                  "(loss per step and per second)",
                  f"- papers' ordering (Shampoo, Sketchy, shared-basis below Adam at equal steps): {verdict} ("
                  + ", ".join(f"{n} {'<' if b else '>='} adam" for n, b in t["beats_adam"].items()) + ")",
                  "- below Adam's loss at Adam's wall time (mean of the last 3 steps each finished by then): "
                  + (", ".join(faster) if faster else "**none**")]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
