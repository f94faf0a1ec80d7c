"""linalg_core.optim against float64 NumPy references of each update rule, plus invariants.

The references below re-implement each rule from the papers' equations with dense matrices and
``numpy.linalg.eigh`` (no code shared with the library). Parameters are float64, so the optimizers
compute in float64 and agreement is limited by the eigensolvers: the roots are functions of
matrices with condition number ``kappa <= 1 / eps_rel`` (the relative ridge), whose relative
perturbation bound is ``O(n eps64 kappa^(1/p))``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, strategies as st

from linalg_core import optim
from linalg_core.optim import blocking

EPS64 = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------------
# float64 references


def _inv_root(s, p, eps, relative):
    w, v = np.linalg.eigh(s)
    ridge = eps * max(w[-1], 0.0) if relative else eps
    return (v * (np.maximum(w, 0.0) + ridge) ** (-1.0 / p)) @ v.T


def _row_blocks(n, block_size):
    count = -(-n // block_size)
    size = -(-n // count)
    return [slice(i * size, min((i + 1) * size, n)) for i in range(count)]


def _adagrad_graft(g, acc, eps=1e-8):
    acc = acc + g * g
    return g / (np.sqrt(acc) + eps), acc


def _grafted(pre, graft):
    pn = np.linalg.norm(pre)
    return pre * (np.linalg.norm(graft) / pn) if pn > 0 else 0 * pre


def reference_shampoo(grads, block_size, b2, eps, p=4):
    """Blocked Shampoo, statistics EMA (bias corrected), relative ridge, AdaGrad graft."""
    rows, cols = grads[0].shape
    rb, cb = _row_blocks(rows, block_size), _row_blocks(cols, block_size)
    stats = {(i, j): [0.0, 0.0] for i in range(len(rb)) for j in range(len(cb))}
    acc = np.zeros_like(grads[0])
    out = []
    for t, g in enumerate(grads, start=1):
        graft, acc = _adagrad_graft(g, acc)
        upd = np.zeros_like(g)
        for (i, j), lr in stats.items():
            gb = g[rb[i], cb[j]]
            lr[0] = b2 * lr[0] + (1 - b2) * gb @ gb.T
            lr[1] = b2 * lr[1] + (1 - b2) * gb.T @ gb
            c = 1 - b2**t
            pre = _inv_root(lr[0] / c, p, eps, True) @ gb @ _inv_root(lr[1] / c, p, eps, True)
            upd[rb[i], cb[j]] = _grafted(pre, graft[rb[i], cb[j]])
        out.append(upd)
    return out


def reference_fd_adagrad(grads, rank, eps):
    """Sketchy AdaGrad (Alg. 2) on a single block: FD sketch of sum g g^T, compensated root."""
    d = grads[0].size
    sketch, rho, out = np.zeros((d, d)), 0.0, []
    for g in grads:
        g = g.reshape(-1)
        w, v = np.linalg.eigh(sketch + np.outer(g, g))
        w, v = w[::-1], v[:, ::-1]
        step = w[rank] if rank < d else 0.0
        rho += step
        lam = np.maximum(w[:rank] - step, 0.0)
        sketch = (v[:, :rank] * lam) @ v[:, :rank].T
        ww, vv = np.linalg.eigh(sketch + (rho + eps) * np.eye(d))
        out.append(((vv * ww ** -0.5) @ vv.T @ g).reshape(grads[0].shape))
    return out


def _run(opt, grads, params=None):
    params = jnp.zeros(grads[0].shape, grads[0].dtype) if params is None else params
    state = opt.init(params)
    step = jax.jit(opt.update)
    outs = []
    for g in grads:
        u, state = step(jnp.asarray(g), state, params)
        outs.append(np.asarray(u))
    return outs, state


def _stream(rng, shape, steps, decay=0.7):
    """Gradients with a decaying column spectrum (an ill-conditioned but full-rank stream)."""
    scales = decay ** np.arange(shape[-1])
    return [rng.standard_normal(shape) * scales for _ in range(steps)]


# ---------------------------------------------------------------------------------------------
# blocking


@given(shape=st.lists(st.integers(1, 9), min_size=0, max_size=4), block_size=st.integers(1, 12))
def test_blocking_round_trip(shape, block_size):
    lay = blocking.block_layout(tuple(shape), block_size)
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    if lay.is_vector:
        assert sum(s != 1 for s in shape) < 2 or 0 in shape
        return
    rows, cols = lay.matrix
    assert rows * cols == x.size
    (nr, nc), (br, bc) = lay.grid, lay.block
    assert max(br, bc) <= block_size or nr == nc == 1 and max(rows, cols) <= block_size
    assert br <= block_size and bc <= block_size
    # Padding is at most one row per block.
    assert nr * br - rows < nr and nc * bc - cols < nc
    blocks = blocking.to_blocks(jnp.asarray(x), lay)
    assert blocks.shape == (nr * nc, br, bc)
    assert float(jnp.sum(blocks)) == float(x.sum())
    np.testing.assert_array_equal(np.asarray(blocking.from_blocks(blocks, lay)), x)


def test_blocking_merges_small_dims_and_flat_layout():
    assert blocking.block_layout((3, 3, 64, 128), 1024).matrix == (576, 128)
    assert blocking.block_layout((1, 7, 1), 4).is_vector
    lay = blocking.block_layout((4096, 1024), 1024)
    assert lay.grid == (4, 1) and lay.block == (1024, 1024)
    flat = blocking.flat_layout((5, 7), 16)
    assert flat.grid == (3, 1) and flat.block == (12, 1)
    assert blocking.flat_layout((), 16).grid == (1, 1)


# ---------------------------------------------------------------------------------------------
# update rules against the references


@pytest.mark.parametrize("shape,block_size", [((6, 5), 8), ((12, 7), 8), ((9, 10), 4)])
def test_shampoo_matches_reference(rng, shape, block_size):
    grads = _stream(rng, shape, 6)
    b2, eps = 0.9, 1e-4
    got, state = _run(optim.scale_by_shampoo(b2=b2, eps=eps, block_size=block_size), grads)
    want = reference_shampoo(grads, block_size, b2, eps)
    # kappa <= 1/eps = 1e4, so kappa^(1/4) = 10; n <= 10; two roots per block plus the graft:
    # 64 n eps64 kappa^(1/4) is about 1.4e-12.
    tol = 64 * 10 * EPS64 * 10
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol * 1e2, atol=tol * np.abs(w).max())
    assert int(state.diagnostics.failures) == 0


def test_sketchy_shampoo_full_rank_equals_shampoo(rng):
    grads = _stream(rng, (10, 6), 5)
    kw = dict(b2=0.95, eps=1e-3, block_size=16)
    sketchy, _ = _run(optim.scale_by_sketchy_shampoo(rank=10, **kw), grads)
    full, _ = _run(optim.scale_by_shampoo(**kw), grads)
    # Same matrices, exact sketch (rho = 0); the two differ only by eigensolver rounding:
    # kappa <= 1e3 (relative eps), n = 10.
    tol = 64 * 10 * EPS64 * 1e3 ** 0.25
    for a, b in zip(sketchy, full):
        np.testing.assert_allclose(a, b, atol=tol * np.abs(b).max())


def test_sketchy_shampoo_low_rank_is_escaped_mass_compensated(rng):
    """With l < side the factor sketch sandwich holds: S <= L <= S + rho I for the EMA statistic."""
    grads = _stream(rng, (12, 5), 8)
    b2 = 0.9
    opt = optim.scale_by_sketchy_shampoo(rank=3, b2=b2, block_size=16)
    _, state = _run(opt, grads)
    left = state.leaves[0].stats[0]
    u, lam, rho = (np.asarray(x)[0] for x in left)
    full = sum(b2 ** (len(grads) - t) * (1 - b2) * g @ g.T for t, g in enumerate(grads, start=1))
    sketch = (u * lam) @ u.T
    gap = np.linalg.eigvalsh(full - sketch)
    scale = np.linalg.eigvalsh(full)[-1]
    assert gap.min() >= -64 * 12 * EPS64 * scale
    assert gap.max() <= float(rho) + 64 * 12 * EPS64 * scale


@pytest.mark.parametrize("rank", [2, 5, 12])
def test_sketchy_adagrad_matches_reference(rng, rank):
    grads = _stream(rng, (3, 4), 7)
    eps = 1e-3
    got, _ = _run(optim.scale_by_sketchy_adagrad(rank=rank, eps=eps, block_size=64), grads)
    want = reference_fd_adagrad(grads, rank, eps)
    # Roots of a matrix with kappa <= ||sum g g^T|| / eps ~ 1e4: kappa^(1/2) = 1e2, n = 12.
    tol = 64 * 12 * EPS64 * 1e2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=tol * np.abs(w).max())


def test_shared_basis_full_rank_is_block_diagonal_adagrad(rng):
    grads = _stream(rng, (6, 4), 5)
    eps = 1e-3
    got, state = _run(optim.scale_by_shared_basis_adagrad(rank=6, eps=eps), grads)
    acc = np.zeros((4, 6, 6))
    for g, u in zip(grads, got):
        for i in range(4):  # column i: one sub-block of dimension 6
            acc[i] += np.outer(g[:, i], g[:, i])
            w, v = np.linalg.eigh(acc[i] + eps * np.eye(6))
            want = (v * w ** -0.5) @ v.T @ g[:, i]
            # kappa <= ||acc|| / eps ~ 1e4 -> kappa^(1/2) = 1e2; randomized basis is exact at k = b.
            np.testing.assert_allclose(u[:, i], want, atol=64 * 6 * EPS64 * 1e2 * np.abs(want).max() + 1e-9)
    assert np.all(np.asarray(state.leaves[0].stats.escaped_mass) <= 1e-8 * float(np.abs(acc).max()))


def test_kron_steps_two_follows_running_power_iteration(rng):
    grads = _stream(rng, (5, 4), 4)
    _, state = _run(optim.scale_by_shampoo(b2=1.0, kron_steps=2, block_size=8), grads)
    left, right = 0.0, 0.0

    def normalised(s, n):
        if np.isscalar(s) or np.trace(s) == 0:
            return np.eye(n)
        return s / (np.trace(s) / n)

    for g in grads:
        new_left = left + g @ normalised(right, 4) @ g.T
        right = right + g.T @ normalised(new_left, 5) @ g
        left = new_left
    np.testing.assert_allclose(np.asarray(state.leaves[0].stats[0][0]), left, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(state.leaves[0].stats[1][0]), right, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("graft", ["sgd", "adagrad", "rmsprop_normalized"])
@pytest.mark.parametrize("factory", ["shampoo", "sketchy_shampoo"])
def test_graft_norms_match_per_block(rng, graft, factory):
    grads = _stream(rng, (10, 6), 3)
    opt = getattr(optim, f"scale_by_{factory}")(graft=graft, block_size=5)
    got, _ = _run(opt, grads)
    direction, acc = None, np.zeros((10, 6))
    for t, (g, u) in enumerate(zip(grads, got), start=1):
        if graft == "sgd":
            direction = g
        elif graft == "adagrad":
            direction, acc = _adagrad_graft(g, acc)
        else:
            n = g / np.linalg.norm(g)
            acc = 0.999 * acc + 0.001 * n * n
            direction = n / (np.sqrt(acc / (1 - 0.999**t)) + 1e-8)
        for rows in (slice(0, 5), slice(5, 10)):
            for cols in (slice(0, 3), slice(3, 6)):
                np.testing.assert_allclose(np.linalg.norm(u[rows, cols]),
                                           np.linalg.norm(direction[rows, cols]), rtol=1e-10)


def test_vectors_and_scalars_use_the_graft(rng):
    params = {"b": jnp.zeros(7), "s": jnp.zeros(()), "w": jnp.zeros((4, 3))}
    opt = optim.scale_by_shampoo(graft="adagrad")
    state = opt.init(params)
    g = {"b": jnp.asarray(rng.standard_normal(7)), "s": jnp.asarray(2.0), "w": jnp.asarray(rng.standard_normal((4, 3)))}
    u, state = opt.update(g, state)
    np.testing.assert_allclose(np.asarray(u["b"]), np.asarray(g["b"]) / (np.abs(np.asarray(g["b"])) + 1e-8))
    assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, params)


def test_start_preconditioning_and_precondition_every(rng):
    grads = _stream(rng, (6, 5), 5)
    got, state = _run(optim.scale_by_shampoo(graft="sgd", start_preconditioning_step=3,
                                             precondition_every=2), grads)
    np.testing.assert_allclose(got[0], grads[0])  # before the start: the graft direction
    np.testing.assert_allclose(got[1], grads[1])
    assert not np.allclose(got[2], grads[2])
    # Roots recomputed on calls 3 and 5: the stored roots are those of the statistics at call 5.
    left = sum(0.999 ** (5 - t) * 0.001 * g @ g.T for t, g in enumerate(grads, 1)) / (1 - 0.999**5)
    np.testing.assert_allclose(np.asarray(state.leaves[0].cache[0][0]), _inv_root(left, 4, 1e-6, True),
                               rtol=1e-6)


def test_weight_decay_and_momentum_compose(rng):
    grads = _stream(rng, (6, 5), 3)
    params = jnp.asarray(rng.standard_normal((6, 5)))
    pre, _ = _run(optim.scale_by_shampoo(), grads, params)
    got, _ = _run(optim.shampoo(0.1, weight_decay=0.01, momentum=0.9), grads, params)
    trace = np.zeros((6, 5))
    for p_, g_ in zip(pre, got):
        trace = 0.9 * trace + (p_ + 0.01 * np.asarray(params))
        np.testing.assert_allclose(g_, -0.1 * trace, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("factory", ["shampoo", "sketchy_shampoo", "sketchy_adagrad", "shared_basis_adagrad", "soap"])
def test_non_finite_gradient_is_skipped(rng, factory):
    # SOAP refreshes its eigenbases every second call here, so the NaN arrives on a refresh step.
    opt = getattr(optim, factory)(0.1, **({"precondition_frequency": 2} if factory == "soap" else {}))
    params = {"w": jnp.zeros((6, 5)), "b": jnp.zeros(5)}
    state = opt.init(params)
    step = jax.jit(opt.update)
    g = {"w": jnp.asarray(rng.standard_normal((6, 5))), "b": jnp.ones(5)}
    _, state = step(g, state, params)
    bad = {"w": g["w"].at[2, 3].set(jnp.nan), "b": g["b"]}
    u, new_state = step(bad, state, params)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(u))
    for old, new in zip(jax.tree.leaves(state[0].leaves), jax.tree.leaves(new_state[0].leaves)):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    assert int(new_state[0].diagnostics.skipped_steps) == 1
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new_state))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_low_precision_parameters(rng, dtype):
    params = jnp.zeros((8, 6), dtype)
    for factory in ("shampoo", "sketchy_shampoo", "shared_basis_adagrad"):
        opt = getattr(optim, factory)(0.1)
        state = opt.init(params)
        u, state = jax.jit(opt.update)(jnp.asarray(rng.standard_normal((8, 6)), dtype), state, params)
        assert u.dtype == dtype
        assert all(x.dtype != jnp.float64 for x in jax.tree.leaves(state) if x.dtype.kind == "f")


def test_bad_options_raise():
    with pytest.raises(ValueError, match="graft"):
        optim.shampoo(0.1, graft="adam")
    with pytest.raises(ValueError, match="b2"):
        optim.sketchy_shampoo(0.1, b2=1.5)
    with pytest.raises(ValueError, match="eps_mode"):
        optim.shampoo(0.1, eps_mode="huge")
    with pytest.raises(ValueError, match="momentum"):
        optim.shampoo(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="block_size"):
        optim.sketchy_adagrad(0.1, block_size=0)
    with pytest.raises(ValueError, match="rank"):
        optim.shared_basis_adagrad(0.1, rank=0)


def test_state_bytes():
    params = {"w": jnp.zeros((64, 32), jnp.float32), "b": jnp.zeros(32, jnp.float32)}
    full = optim.shampoo(0.1).init(params)
    sketchy = optim.sketchy_shampoo(0.1, rank=8).init(params)
    assert optim.statistics_bytes(full) == 4 * (64 * 64 + 32 * 32)
    assert optim.statistics_bytes(sketchy) == 4 * ((64 * 8 + 8 + 1) + (32 * 8 + 8 + 1))
    # Statistics, root cache, AdaGrad graft accumulators and four int32 counters.
    assert optim.state_bytes(full) == 2 * optim.statistics_bytes(full) + 4 * (64 * 32 + 32) + 4 * 4
    basis = optim.shared_basis_adagrad(0.1, rank=4).init(params)
    assert optim.statistics_bytes(basis) == 4 * (64 * 4 + 32 * 16 + 32)


# ---------------------------------------------------------------------------------------------
# convex sanity: online regression, the regime of the papers' regret bounds


def _online_regret(opt, xs, ys, w_star):
    w = jnp.zeros(xs.shape[1])
    state = opt.init(w)

    def loss(w, x, y):
        return 0.5 * (x @ w - y) ** 2

    @jax.jit
    def step(w, state, x, y):
        value, g = jax.value_and_grad(loss)(w, x, y)
        u, state = opt.update(g, state, w)
        return optax.apply_updates(w, u), state, value

    total = 0.0
    for x, y in zip(xs, ys):
        w, state, value = step(w, state, x, y)
        total += float(value) - float(loss(w_star, x, y))
    return total


def test_full_matrix_beats_diagonal_and_sketchy_approaches_full(rng):
    d, steps = 24, 400
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    cov_root = q * (0.8 ** np.arange(d))  # rotated, ill-conditioned features
    xs = jnp.asarray(rng.standard_normal((steps, d)) @ cov_root.T)
    w_star = jnp.asarray(rng.standard_normal(d))
    ys = xs @ w_star + 0.01 * jnp.asarray(rng.standard_normal(steps))
    lr = 1.0
    diag = _online_regret(optax.adagrad(lr, eps=1e-6), xs, ys, w_star)
    regrets = {rank: _online_regret(optim.sketchy_adagrad(lr, rank=rank, eps=1e-6), xs, ys, w_star)
               for rank in (d // 2, d)}
    # Full-matrix AdaGrad adapts to the rotated spectrum that diagonal AdaGrad cannot see (about
    # 1/3 of the diagonal regret over seeds 0-3 at this size).
    assert regrets[d] < 0.7 * diag
    # Half the rank recovers almost all of the full-matrix advantage: the escaped mass of the
    # geometric spectrum 0.8^(2i) beyond i = 12 is 0.64^12 ~ 0.5 % of its trace; measured gaps
    # were 0.3-3 % of the advantage on seeds 0-3, so 10 % leaves room for the stream's noise.
    assert abs(regrets[d // 2] - regrets[d]) <= 0.1 * (diag - regrets[d])


# ---------------------------------------------------------------------------------------------
# jit and sharding


_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from linalg_core import optim
    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("d",))
    rng = np.random.default_rng(0)
    jax.config.update("jax_enable_x64", True)
    params = {"w": jnp.asarray(rng.standard_normal((96, 64))),
              "v": jnp.asarray(rng.standard_normal((40, 24))),
              "b": jnp.zeros(64)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
             for _ in range(3)]
    shard = {"w": NamedSharding(mesh, P("d")), "v": NamedSharding(mesh, P(None, "d")),
             "b": NamedSharding(mesh, P("d"))}
    for name, kw in [("shampoo", dict(block_size=16)), ("sketchy_shampoo", dict(block_size=16, rank=8)),
                     ("sketchy_adagrad", dict(block_size=128, rank=8)),
                     ("shared_basis_adagrad", dict(block_size=16, rank=4))]:
        plain = getattr(optim, name)(0.1, **kw)
        spread = getattr(optim, name)(0.1, mesh=mesh, mesh_axis="d", **kw)
        s_plain, s_spread = plain.init(params), spread.init(jax.device_put(params, shard))
        for g in grads:
            u_plain, s_plain = jax.jit(plain.update)(g, s_plain, params)
            u_spread, s_spread = jax.jit(spread.update)(jax.device_put(g, shard), s_spread,
                                                        jax.device_put(params, shard))
            for a, b in zip(jax.tree.leaves(u_plain), jax.tree.leaves(u_spread)):
                # float64; only summation order differs. Roots of kappa <= 1e6 (relative eps),
                # n = 16: 64 n eps64 kappa^(1/4) ~ 7e-12 relative to the largest entry.
                tol = 64 * 16 * np.finfo(np.float64).eps * 1e6 ** 0.25
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol * np.abs(b).max())
        print(name, "ok")
    """
)


def test_sharded_matches_unsharded():
    """8 host devices (a subprocess: the device count is fixed when JAX starts)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("ok") == 4


def test_jit_equals_eager(rng):
    grads = _stream(rng, (7, 5), 3)
    opt = optim.sketchy_shampoo(0.1, rank=3)
    params = jnp.zeros((7, 5))
    s1 = s2 = opt.init(params)
    for g in grads:
        u1, s1 = opt.update(jnp.asarray(g), s1, params)
        u2, s2 = jax.jit(opt.update)(jnp.asarray(g), s2, params)
        np.testing.assert_allclose(np.asarray(u1), np.asarray(u2), rtol=1e-12, atol=1e-15)


def test_failed_root_keeps_the_previous_preconditioner(rng, monkeypatch):
    """The roots' fallback chain ends at the previous root: a failing inverse_root (injected
    here; with finite statistics the real chain's eigh does not fail) must leave the cached root
    unchanged, count the failure and keep the update finite."""
    import linalg_core
    from linalg_core import ROOT_METHODS, ROOT_STATUS, RootInfo

    grads = _stream(rng, (6, 5), 3)
    real = linalg_core.inverse_root
    calls = {"n": 0}

    def flaky(a, p, *, prev=None, **kw):
        calls["n"] += 1
        root, info = real(a, p, prev=prev, **kw)
        if calls["n"] <= 2:  # the first computation (left and right roots) works
            return root, info
        batch = a.shape[:-2]
        failed = RootInfo(status=jnp.full(batch, ROOT_STATUS["failed"], jnp.int32), converged=jnp.zeros(batch, bool),
                          iterations=info.iterations, residual=info.residual,
                          method=jnp.full(batch, ROOT_METHODS["previous"], jnp.int32),
                          lambda_max=info.lambda_max, ridge=info.ridge)
        return prev, failed

    monkeypatch.setattr(linalg_core, "inverse_root", flaky)
    opt = optim.scale_by_shampoo(graft="none", block_size=8)
    params = jnp.zeros((6, 5))
    state = opt.init(params)
    u1, state = opt.update(jnp.asarray(grads[0]), state, params)   # roots computed
    roots_after_first = [np.asarray(r) for r in state.leaves[0].cache]
    u2, state = opt.update(jnp.asarray(grads[1]), state, params)   # roots "fail"
    for kept, now in zip(roots_after_first, state.leaves[0].cache):
        np.testing.assert_array_equal(np.asarray(now), kept)
    assert int(state.diagnostics.failures) == 2  # left and right root of the one block
    np.testing.assert_allclose(np.asarray(u2), roots_after_first[0][0] @ grads[1] @ roots_after_first[1][0],
                               rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(u2)))


# SOAP refreshes its bases every second call here, so that a refresh follows the huge step.
@pytest.mark.parametrize("factory,overrides", [("shampoo", {}), ("sketchy_shampoo", {}), ("sketchy_adagrad", {}),
                                               ("shared_basis_adagrad", {}),
                                               ("soap", {"precondition_frequency": 2})])
@pytest.mark.parametrize("scale", [1e9, 1e19, 1e30])
def test_huge_finite_gradient_never_poisons_the_state(rng, factory, overrides, scale):
    # float32 parameters: a finite gradient of 1e19 has squares (1e38) at the edge of float32 and
    # 1e30's overflow; whatever the kernels do with it, the state must stay finite and later
    # ordinary gradients must still move the parameters.
    opt = getattr(optim, factory)(0.1, **overrides)
    params = {"w": jnp.zeros((6, 5), jnp.float32), "b": jnp.zeros(5, jnp.float32)}
    state = opt.init(params)
    step = jax.jit(opt.update)
    g = [{"w": jnp.asarray(rng.standard_normal((6, 5)), jnp.float32), "b": jnp.ones(5, jnp.float32)}
         for _ in range(5)]
    _, state = step(g[0], state, params)
    huge = {"w": g[1]["w"] * scale, "b": g[1]["b"]}
    before = state
    u, state = step(huge, state, params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state)))
    if scale == 1e30:
        # Squares of 1e30 (1e60) are not float32 numbers: no statistic can take this gradient, so
        # the matrix block's step is skipped (state kept, update zero) and counted.
        assert int(state[0].diagnostics.failures) >= 1
        np.testing.assert_array_equal(np.asarray(u["w"]), 0.0)
        for old, new in zip(jax.tree.leaves(before[0].leaves[1].stats), jax.tree.leaves(state[0].leaves[1].stats)):
            np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    for gi in g[2:]:
        u, state = step(gi, state, params)
        params = optax.apply_updates(params, u)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((u, state, params)))
    # The ordinary steps after the huge one still move the matrix parameter.
    assert float(jnp.abs(u["w"]).max()) > 0.0


@pytest.mark.parametrize("factory,options", [("shampoo", "ShampooOptions"),
                                             ("sketchy_shampoo", "SketchyShampooOptions"),
                                             ("sketchy_adagrad", "SketchyAdagradOptions"),
                                             ("shared_basis_adagrad", "SharedBasisAdagradOptions")])
def test_one_options_object_serves_the_alias_and_the_preconditioner(rng, factory, options):
    cls = getattr(optim, options)
    opts = cls(block_size=4, momentum=0.5)
    grads = [rng.standard_normal((6, 5)) for _ in range(3)]
    # The options object, the same fields as keywords, and an object plus an override agree.
    by_object, _ = _run(getattr(optim, factory)(0.1, opts), grads)
    by_keywords, _ = _run(getattr(optim, factory)(0.1, block_size=4, momentum=0.5), grads)
    by_override, _ = _run(getattr(optim, factory)(0.1, cls(block_size=4), momentum=0.5), grads)
    for a, b, c in zip(by_object, by_keywords, by_override):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    pre, _ = _run(getattr(optim, "scale_by_" + factory)(opts), grads[:1])
    assert np.all(np.isfinite(pre[0]))
    with pytest.raises(TypeError, match="unexpected option"):
        getattr(optim, factory)(0.1, bogus=1)
    with pytest.raises(TypeError, match=options):
        getattr(optim, factory)(0.1, optim.CommonOptions())
    with pytest.raises(ValueError, match="block_size"):
        cls(block_size=2.5)
