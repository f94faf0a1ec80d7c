"""Muon: a float64 NumPy reference of the update rule (the polar factor's start scaling and
quintic written out independently, or scipy's exact polar factor), jit, the NaN guard, options.

Tolerance: the reference and the kernel evaluate the same float64 recurrences in different
summation orders; after a few steps of O(1) updates the parameters agree to ~1e-12 (1e-10 used,
the Newton-Schulz polynomial amplifying differences by at most its Lipschitz constant ~3.4 per
step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import linalg_core as lc
from linalg_core import optim

EPS64 = float(np.finfo(np.float64).eps)


def newton_schulz_reference(u, coefficients):
    """lc.polar's iteration: power-of-two prescaling, bound = min(||G0^2||_F^(1/4), sqrt(||u||_1
    ||u||_inf)) with the kernel's rounding allowances, then the quintic on the wide side."""
    m, n = u.shape
    x = u if m <= n else u.T
    k, big_k = x.shape
    e = np.frexp(np.max(np.abs(x)))[1]
    x = np.ldexp(x, -e)
    cheap = np.sqrt(np.abs(x).sum(axis=1).max() * np.abs(x).sum(axis=0).max()) * (1 + 4 * big_k * EPS64)
    g = x @ x.T
    root4 = np.linalg.norm(g @ g) ** 0.25 * (1 + 4 * np.sqrt(k) * (k + big_k) * EPS64)
    x = x / min(cheap, root4)
    for a, b, c in coefficients:
        g = x @ x.T
        x = a * x + (b * g + c * g @ g) @ x
    return x if m <= n else x.T


def exact_polar(u):
    return scipy.linalg.polar(u)[0] if u.shape[0] >= u.shape[1] else scipy.linalg.polar(u.T)[0].T


def muon_reference(params, grads_seq, lr, o: optim.MuonOptions):
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    mom = {k: np.zeros_like(v) for k, v in params.items()}
    nu = {k: np.zeros_like(v) for k, v in params.items()}
    coefs = lc.polar_schedule(o.method, o.steps).coefficients if o.method != "svd" else None
    for t, grads in enumerate(grads_seq, start=1):
        for k, g in grads.items():
            if g.ndim == 2:
                mom[k] = o.beta * mom[k] + g
                u = g + o.beta * mom[k] if o.nesterov else mom[k]
                q = exact_polar(u) if coefs is None else newton_schulz_reference(u, coefs)
                m, n = g.shape
                s = {"shape": max(1, m / n) ** 0.5, "rms": 0.2 * max(m, n) ** 0.5, "none": 1.0}[o.scale]
                step = s * q
            else:
                mom[k] = o.adam_b1 * mom[k] + (1 - o.adam_b1) * g
                nu[k] = o.adam_b2 * nu[k] + (1 - o.adam_b2) * g * g
                m_hat, v_hat = mom[k] / (1 - o.adam_b1 ** t), nu[k] / (1 - o.adam_b2 ** t)
                step = o.adam_scale * m_hat / (np.sqrt(v_hat) + o.adam_eps)
            params[k] = params[k] - lr * (step + o.weight_decay * params[k])
    return params


def run(opt, params, grads_seq):
    state = opt.init(params)
    update = jax.jit(opt.update)
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("overrides", [
    dict(), dict(nesterov=False), dict(scale="rms", weight_decay=0.1), dict(scale="none", method="svd"),
    dict(method="polar_express", steps=4, adam_scale=0.5, beta=0.9),
])
def test_matches_the_numpy_reference(rng, overrides):
    shapes = {"w1": (12, 7), "w2": (5, 9), "w3": (4, 13), "b": (7,), "conv": (2, 3, 3)}  # w3: Gram side
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    grads_seq = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(3)]
    o = optim.MuonOptions(**overrides)
    got, state = run(optim.muon(0.05, o), params, [{k: jnp.asarray(v) for k, v in g.items()} for g in grads_seq])
    want = muon_reference({k: np.asarray(v) for k, v in params.items()}, grads_seq, 0.05, o)
    for k in shapes:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], atol=1e-10, err_msg=k)
    diag = state[0].diagnostics
    assert int(diag.skipped_steps) == 0 and int(diag.failures) == 0


def test_float32_params_and_scale_by_muon_alone(rng):
    params = {"w": jnp.asarray(rng.standard_normal((16, 8)), jnp.float32), "b": jnp.zeros(8, jnp.bfloat16)}
    grads = {"w": jnp.asarray(rng.standard_normal((16, 8)), jnp.float32), "b": jnp.ones(8, jnp.bfloat16)}
    opt = optim.scale_by_muon(beta=0.0, nesterov=False, method="svd")
    updates, _ = jax.jit(opt.update)(grads, opt.init(params))
    assert updates["w"].dtype == jnp.float32 and updates["b"].dtype == jnp.bfloat16
    # beta = 0 and the exact method: the update is sqrt(16 / 8) times the polar factor of G.
    want = np.sqrt(2) * exact_polar(np.asarray(grads["w"], np.float64))
    np.testing.assert_allclose(np.asarray(updates["w"]), want, atol=1e-5)


def test_non_finite_gradient_skips_only_that_parameter(rng):
    params = {"w": jnp.asarray(rng.standard_normal((6, 4))), "v": jnp.asarray(rng.standard_normal((4, 4))),
              "b": jnp.zeros(4)}
    opt = optim.muon(0.1)
    state = opt.init(params)
    good = {k: jnp.asarray(rng.standard_normal(v.shape)) for k, v in params.items()}
    _, state = opt.update(good, state, params)
    bad = dict(good, w=good["w"].at[1, 2].set(jnp.nan), b=good["b"].at[0].set(jnp.inf))
    updates, new_state = jax.jit(opt.update)(bad, state, params)
    assert np.all(np.asarray(updates["w"]) == 0) and np.all(np.asarray(updates["b"]) == 0)
    assert np.any(np.asarray(updates["v"]) != 0)
    muon_state, old = new_state[0], state[0]
    np.testing.assert_array_equal(np.asarray(muon_state.momentum[2]), np.asarray(old.momentum[2]))  # "w"
    assert int(muon_state.accepted[2]) == 1 and int(muon_state.accepted[1]) == 2
    assert int(muon_state.diagnostics.skipped_steps) == 2 and int(muon_state.diagnostics.failures) == 0


def test_overflowing_momentum_is_a_counted_failure():
    params = {"w": jnp.zeros((4, 3), jnp.float32)}
    opt = optim.muon(0.1, beta=0.9)
    state = opt.init(params)
    big = {"w": jnp.full((4, 3), 3e38, jnp.float32)}
    _, state = opt.update(big, state, params)  # M = G: finite
    updates, state = opt.update(big, state, params)  # M = 0.9 G + G overflows
    assert np.all(np.asarray(updates["w"]) == 0)
    assert int(state[0].diagnostics.failures) >= 1
    assert np.all(np.isfinite(np.asarray(state[0].momentum[0])))


@pytest.mark.parametrize("overrides,error", [
    (dict(beta=1.0), ValueError), (dict(scale="max"), ValueError), (dict(method="newton"), ValueError),
    (dict(steps=0), ValueError), (dict(adam_eps=0.0), ValueError), (dict(weight_decay=-1.0), ValueError),
    (dict(learning_rate=1.0), TypeError),
])
def test_bad_options(overrides, error):
    with pytest.raises(error):
        optim.muon(0.1, **overrides)
