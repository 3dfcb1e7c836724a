"""Large-chunk TTT: equals a per-chunk reference (Muon, renorm), apply-then-update causality, the
Muon step is orthogonal, padding keeps the state, outer gradients, bad arguments."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt import get_learner
from t3kan_jax.ttt.lact import RENORM_EPS, lact_inner_loop, renormalise
from t3kan_jax.ttt.muon import newton_schulz

F = 4


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _case(kind, t, seed=0, dtype=jnp.float32):
    """Params and inputs `q, k, v [T, F]`, `lr [T]` of one head."""
    keys = jax.random.split(jax.random.key(seed), 5)
    options = {} if kind == "swiglu" else {"init_std": 0.3}
    params = get_learner(kind).init(keys[0], F, dtype=dtype, **options)
    q, k, v = (jax.random.normal(key, (t, F), dtype) for key in keys[1:4])
    lr = 0.05 * jax.random.uniform(keys[4], (t,), dtype)
    return params, q, k, v, lr


@functools.cache
def _jitted(kind, chunk, **kwargs):
    return jax.jit(functools.partial(lact_inner_loop, kind, chunk_size=chunk, **kwargs))


def _reference(kind, params, q, k, v, lr, n, muon, renorm):
    """Literal LaCT: outputs with the weights before the chunk, then one step on its summed loss."""
    learner = get_learner(kind)
    w, fixed = learner.split(params)
    norms = {key: np.linalg.norm(a, axis=0) for key, a in w.items() if a.ndim == 2}

    def token_loss(w, k_F, v_F):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k_F), k_F, v_F)

    grad = jax.jit(jax.grad(token_loss))
    outs = []
    for start in range(0, q.shape[0], n):
        idx = range(start, min(start + n, q.shape[0]))
        p = {**fixed, **w}
        outs += [learner.readout(p, learner.apply(p, q[t]), q[t]) for t in idx]
        grads = [grad(w, k[t], v[t]) for t in idx]
        new = {}
        for key, a in w.items():
            g = sum(lr[t] * gt[key] for t, gt in zip(idx, grads, strict=True))
            if muon and g.ndim == 2:
                g = newton_schulz(g)
            a = a - g
            if renorm and a.ndim == 2:
                a = a / (np.linalg.norm(a, axis=0) + RENORM_EPS) * norms[key]
            new[key] = a
        w = new
    return jnp.stack(outs), {**fixed, **w}


@pytest.mark.parametrize(
    ("kind", "muon", "renorm"),
    [("swiglu", False, True), ("swiglu", True, True), ("mlp", True, False), ("kan", False, False)],
)
def test_matches_per_chunk_reference(kind, muon, renorm, x64):
    """T = 10 with chunks of 4 ends on a 2-token chunk."""
    params, q, k, v, lr = _case(kind, 10, seed=1, dtype=jnp.float64)
    expected = _reference(kind, params, q, k, v, lr, 4, muon, renorm)
    got = _jitted(kind, 4, muon=muon, renorm=renorm)(params, q, k, v, lr)
    chex.assert_trees_all_close(got, expected, atol=1e-10, rtol=1e-10)


def test_one_chunk_reads_only_the_initial_weights():
    """A chunk as long as the sequence: every output is `f(q; W_0)`, the state moves once."""
    params, q, k, v, lr = _case("swiglu", 6)
    learner = get_learner("swiglu")
    out, final = _jitted("swiglu", 8)(params, q, k, v, lr)
    chex.assert_trees_all_close(out, jax.vmap(lambda x: learner.apply(params, x))(q), atol=1e-6)
    assert float(jnp.abs(final["W1"] - params["W1"]).max()) > 0.0


@pytest.mark.parametrize("muon", [False, True])
def test_apply_then_update_is_block_causal(muon):
    """A tangent on k, v, lr of chunk c moves no output of chunks ≤ c and moves chunk c + 1; a
    tangent on q_t moves only output t."""
    n, t = 3, 9
    params, q, k, v, lr = _case("swiglu", t, seed=2)
    run = _jitted("swiglu", n, muon=muon)
    tangents = [jax.random.normal(key, a.shape) for key, a in zip(
        jax.random.split(jax.random.key(3), 3), (k, v, lr), strict=True)]  # fmt: skip

    @jax.jit
    def out_tangent(chunk):
        inside = (jnp.arange(t) // n) == chunk
        masked = tuple(jnp.where(inside.reshape(-1, *[1] * (a.ndim - 1)), a, 0.0) for a in tangents)
        return jax.jvp(lambda *xs: run(params, q, *xs)[0], (k, v, lr), masked)[1]

    for chunk in range(t // n - 1):
        d_out = np.abs(np.asarray(out_tangent(chunk))).sum(axis=1)
        assert np.all(d_out[: (chunk + 1) * n] == 0.0), (chunk, d_out)
        assert np.all(d_out[(chunk + 1) * n : (chunk + 2) * n] > 0.0), (chunk, d_out)
    jac = jax.jacrev(lambda x: run(params, x, k, v, lr)[0])(q)  # [T, F, T, F]
    per_token = np.abs(np.asarray(jac)).sum(axis=(1, 3))
    np.testing.assert_array_equal(per_token != 0.0, np.eye(t, dtype=bool))


def test_muon_step_is_orthogonal():
    """Without renorm, `W_1 − W_0 = −NS(g)`: its singular values lie in [0.68, 1.21] (the range
    of 5 quintic steps, see test_muon.py), whatever the scale of the chunk gradient."""
    params, q, k, v, lr = _case("swiglu", 8, seed=4)
    _, final = _jitted("swiglu", 8, muon=True, renorm=False)(params, q, k, v, 1e-3 * lr)
    for key in ("W1", "W3", "W2"):
        step = np.asarray(final[key] - params[key], np.float64)
        singular = np.linalg.svd(step, compute_uv=False)
        assert 0.68 <= singular.min() and singular.max() <= 1.21, (key, singular)


def test_renormalise_restores_column_norms():
    w = jax.random.normal(jax.random.key(5), (6, 3))
    target = jnp.array([[0.5, 1.0, 2.0]])
    np.testing.assert_allclose(jnp.linalg.norm(renormalise(w, target), axis=0), target[0], 1e-4)


def test_padding_and_remat_keep_the_state():
    """remat_every = 2 with T = 5, chunks of 2: the padding fills a whole last chunk, which must
    leave the weights (renormalised each step) as they were."""
    params, q, k, v, lr = _case("swiglu", 5, seed=6)
    base = _jitted("swiglu", 2, muon=True)(params, q, k, v, lr)
    got = _jitted("swiglu", 2, muon=True, remat_every=2)(params, q, k, v, lr)
    chex.assert_trees_all_close(got, base, atol=1e-6, rtol=1e-6)


def test_outer_gradients_through_muon_and_renorm(x64):
    """`check_grads` (reverse mode against finite differences) in float64."""
    params, q, k, v, lr = _case("swiglu", 6, seed=7, dtype=jnp.float64)
    weights = jax.random.normal(jax.random.key(8), (6, F), jnp.float64)
    run = _jitted("swiglu", 2, muon=True)

    def objective(params, q, k, v, lr):
        out, final = run(params, q, k, v, lr)
        return jnp.sum(weights * out) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))

    jax.test_util.check_grads(
        jax.jit(objective), (params, q, k, v, lr), order=1, modes=("rev",), eps=1e-6,
        atol=1e-6, rtol=1e-6,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"muon": 1}, "muon=1"),
        ({"renorm": None}, "renorm=None"),
        ({"ns_steps": 0}, "ns_steps=0"),
        ({"lr": jnp.ones(5)}, r"lr must be \[T\]"),
        ({"xk": jnp.ones((6, F + 1))}, r"xq, xk, xv must all be \[T, d\]"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    params, q, k, v, lr = _case("swiglu", 6)
    args = {"xq": q, "xk": k, "xv": v, "lr": lr, "chunk_size": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        lact_inner_loop("swiglu", params, **args)
