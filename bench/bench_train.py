"""Training quality on real data: the deep MNIST autoencoder of the shared-basis paper.

Model: MLP autoencoder 784-1000-500-250-30-250-500-1000-784, tanh on hidden layers, a linear code
layer, sigmoid outputs; loss = sigmoid cross-entropy against the pixel intensities, summed over the
784 pixels and averaged over the batch (Hinton & Salakhutdinov 2006; Martens 2010; Yen et al. 2023,
Sec. 5); batch 1000; float32; weights N(0, 1/fan_in), biases 0; every run seeded.

Optimizers: optax.adam; linalg_core.optim.shampoo (blocks of 1024, AdaGrad graft, roots every 10
steps), sketchy_shampoo (rank ``RANK`` = 64, AdaGrad graft, sketches updated every step),
shared_basis_adagrad (k = 32, one power step), all with momentum 0.9 except Adam (its beta1 is
0.9). Equal tuning budget: three learning rates per optimizer (a factor 10^(1/2) apart, centred on
a pilot's optimum) each trained for ``tune_steps``; the best by final train loss is trained again
for ``steps`` and evaluated on the test set. Reported: final train and test loss, wall time,
loss curves (PNG).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import datasets

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


def optimizers() -> dict[str, tuple[Callable[[float], optax.GradientTransformation], tuple]]:
    from linalg_core import optim

    # Three values per optimizer, a factor 10^(1/2) apart, centred where a 20-step pilot on 10k
    # images put each optimum (the same pilot for all).
    grid_adam = (1e-3, 3e-3, 1e-2)
    grid_graft = (1e-3, 3e-3, 1e-2)
    grid_basis = (1e-2, 3e-2, 1e-1)
    return {
        "adam": (lambda lr: optax.adam(lr), grid_adam),
        "shampoo": (lambda lr: optim.shampoo(lr, block_size=1024, precondition_every=10,
                                             graft="adagrad", momentum=0.9), grid_graft),
        "sketchy_shampoo": (lambda lr: optim.sketchy_shampoo(lr, rank=RANK, block_size=1024,
                                                             graft="adagrad", momentum=0.9), grid_graft),
        "shared_basis_adagrad": (lambda lr: optim.shared_basis_adagrad(lr, rank=32, momentum=0.9),
                                 grid_basis),
    }


RANK = 64


def train(make: Callable, lr: float, data: np.ndarray, steps: int, seed: int) -> tuple[list, float, list]:
    """``steps`` steps from a seeded init on seeded batches; returns (losses, seconds, params)."""
    opt = make(lr)
    params = init_params(seed)
    state = opt.init(params)

    @jax.jit
    def step(params, state, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    batches = datasets.minibatches(data, 1000, seed=seed, epochs=10**6)
    x0 = jnp.asarray(next(batches))
    jax.block_until_ready(step(params, state, x0))  # compile outside the clock
    losses = []
    start = time.perf_counter()
    for _, x in zip(range(steps), batches):
        params, state, loss = step(params, state, jnp.asarray(x))
        losses.append(loss)
    losses = [float(v) for v in jax.block_until_ready(losses)]
    return losses, time.perf_counter() - start, params


def evaluate(params: list, data: np.ndarray) -> float:
    x = data.reshape(len(data), -1).astype(np.float32) / 255.0
    return float(np.mean([loss_fn(params, jnp.asarray(x[i:i + 1000])) for i in range(0, len(x), 1000)]))


def _tasks(log: Callable[[str], None]) -> dict:
    """MNIST always (the bench extra installs it); Fashion-MNIST when Debian's package is there."""
    tasks = {"mnist": datasets.mnist()}
    try:
        tasks["fashion_mnist"] = datasets.fashion_mnist()
    except FileNotFoundError as err:
        log(f"  Fashion-MNIST skipped: {err}")
    return tasks


def run_task(data: datasets.ImageData, quick: bool, log: Callable[[str], None]) -> dict:
    train_x = data.x_train[:10000] if quick else data.x_train
    tune_steps, steps = (8, 20) if quick else (40, 240)
    results = {}
    for name, (make, grid) in optimizers().items():
        tuning = {}
        for lr in grid:
            losses, _, _ = train(make, lr, train_x, tune_steps, seed=0)
            final = float(np.mean(losses[-3:]))
            tuning[lr] = final if np.isfinite(final) else float("inf")
            log(f"  {name:22s} lr={lr:<7g} tuning loss {final:9.3f}")
        best = min(tuning, key=tuning.get)
        losses, seconds, params = train(make, best, train_x, steps, seed=1)
        test = evaluate(params, data.x_test)
        results[name] = {"lr": best, "tuning": tuning, "losses": losses, "seconds": seconds,
                         "train_loss": float(np.mean(losses[-5:])), "test_loss": test}
        log(f"{name:22s} lr={best:<7g} train {results[name]['train_loss']:8.3f}  test {test:8.3f}  "
            f"{seconds:7.1f} s for {steps} steps")
    order = sorted(results, key=lambda n: results[n]["train_loss"])
    log("ordering by final train loss: " + " < ".join(order))
    return {"steps": steps, "tune_steps": tune_steps, "train_examples": int(len(train_x)),
            "results": results, "ordering": order}


def run(quick: bool, log: Callable[[str], None]) -> dict:
    tasks = {}
    for task, data in _tasks(log).items():
        log(f"-- {task}")
        tasks[task] = run_task(data, quick, log)
    return {"suite": "train", "quick": quick, "rank": RANK, "tasks": tasks}


def summarize(result: dict, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    for task, t in result["tasks"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, r in t["results"].items():
            ax.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], label=f"{name} (lr {r['lr']:g})")
        ax.set_xlabel("step (batch 1000)")
        ax.set_ylabel("train loss (sigmoid cross-entropy, summed over pixels)")
        ax.set_yscale("log")
        ax.set_title(f"{task} deep autoencoder")
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(out) / f"train_{task}.png", dpi=120)
        plt.close(fig)
        lines = [f"### {task} autoencoder: {t['steps']} steps of batch 1000 on {t['train_examples']} "
                 f"images, best of 3 learning rates ({t['tune_steps']} steps each)", "",
                 "| optimizer | lr | final train loss | test loss | wall s |", "|---|---|---|---|---|"]
        for name, r in t["results"].items():
            lines.append(f"| {name} | {r['lr']:g} | {r['train_loss']:.3f} | {r['test_loss']:.3f} | "
                         f"{r['seconds']:.1f} |")
        lines += ["", f"- ordering by final train loss: {' < '.join(t['ordering'])}; plot `train_{task}.png`"]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
