"""Titans memory: associative scan = Python loop; primal = dual = a per-token reference; η = α = 0
is mini-batch TTT with s_i = 1; causality; outer gradients; bad arguments."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t3kan_jax.ttt import get_learner, inner_loop
from t3kan_jax.ttt.titans import FORMS, linear_recurrence, titans_inner_loop

KINDS = ("linear", "mlp", "kan")
F = 4


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _case(kind, t, seed=0, dtype=jnp.float32):
    """Params (non-trivial LN), inputs `[T, F]`, gates θ, η, α `[T]` and a non-zero surprise."""
    keys = jax.random.split(jax.random.key(seed), 10)
    learner = get_learner(kind)
    params = learner.init(keys[0], F, init_std=0.3, dtype=dtype)
    params["ln_scale"] = 1.0 + 0.2 * jax.random.normal(keys[1], (F,), dtype)
    params["ln_bias"] = 0.2 * jax.random.normal(keys[2], (F,), dtype)
    q, k, v = (jax.random.normal(key, (t, F), dtype) for key in keys[3:6])
    lr = 0.3 * jax.random.uniform(keys[6], (t,), dtype)
    momentum = jax.random.uniform(keys[7], (t,), dtype)
    forget = 0.3 * jax.random.uniform(keys[8], (t,), dtype)
    inner, _ = learner.split(params)
    surprise = jax.tree.map(lambda a: 0.05 * jax.random.normal(keys[9], a.shape, dtype), inner)
    return params, (q, k, v, lr, momentum, forget), surprise


@functools.cache
def _jitted(kind, b, form, **kwargs):
    """jit of the Titans loop (unroll 1), cached so tests share compilations."""
    run = functools.partial(
        titans_inner_loop, kind, mini_batch_size=b, form=form, unroll=1, **kwargs
    )
    return jax.jit(run)


@functools.cache
def _token_fns(kind):
    """Jitted per-token `∇ℓ(M)` and readout `f(q; M)` of a learner."""
    learner = get_learner(kind)

    def token_loss(w, fixed, k_F, v_F):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k_F), k_F, v_F)

    def read(w, fixed, q_F):
        p = {**fixed, **w}
        return learner.readout(p, learner.apply(p, q_F), q_F)

    return jax.jit(jax.grad(token_loss)), jax.jit(read)


def _reference(kind, params, inputs, surprise, b):
    """Literal Titans, one token at a time; gradients at the mini-batch's starting memory."""
    q, k, v, lr, momentum, forget = inputs
    m, fixed = get_learner(kind).split(params)
    s = surprise
    grad, read = _token_fns(kind)
    outs = []
    for start in range(0, q.shape[0], b):
        m0 = m
        for t in range(start, min(start + b, q.shape[0])):
            g = grad(m0, fixed, k[t], v[t])
            s = jax.tree.map(lambda s_, g_, t=t: momentum[t] * s_ - lr[t] * g_, s, g)
            m = jax.tree.map(lambda m_, s_, t=t: (1.0 - forget[t]) * m_ + s_, m, s)
            outs.append(read(m, fixed, q[t]))
    return jnp.stack(outs), ({**fixed, **m}, s)


@functools.cache
def _jitted_recurrence(with_h0):
    if with_h0:
        return jax.jit(linear_recurrence)
    return jax.jit(lambda a, b: linear_recurrence(a, b))


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from([1, 2, 5, 8]), seed=st.integers(0, 2**16), with_h0=st.booleans())
def test_linear_recurrence_equals_a_python_loop(n, seed, with_h0):
    """`h_t = a_t h_{t−1} + b_t` over a pytree with leaves of different ranks."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.5, 1.5, n)
    b = {"m": rng.normal(size=(n, 2, 3)), "v": rng.normal(size=(n, 3))}
    h0 = {"m": rng.normal(size=(2, 3)), "v": rng.normal(size=3)}
    h = dict(h0) if with_h0 else {"m": np.zeros((2, 3)), "v": np.zeros(3)}
    expected = {"m": [], "v": []}
    for t in range(n):
        for key in h:
            h[key] = a[t] * h[key] + b[key][t]
            expected[key].append(h[key])
    with jax.enable_x64(True):
        args = (a, b, h0) if with_h0 else (a, b)
        got = _jitted_recurrence(with_h0)(*args)
        expected = {key: np.stack(rows) for key, rows in expected.items()}
        chex.assert_trees_all_close(got, expected, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("kind", "t"), [("linear", 7), ("mlp", 7), ("kan", 7), ("linear", 2)])
def test_matches_per_token_reference(kind, form, t, x64):
    """T = 7 with b = 3 ends on a shorter mini-batch; T = 2 < b is one short mini-batch."""
    params, inputs, surprise = _case(kind, t, seed=t, dtype=jnp.float64)
    expected = _reference(kind, params, inputs, surprise, 3)
    got = _jitted(kind, 3, form)(params, *inputs, surprise=surprise)
    chex.assert_trees_all_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_no_momentum_no_forgetting_is_plain_ttt(kind, form, x64):
    """η = α = 0: `S_t = −θ_t ∇ℓ_t(M_0)`, `M_t = M_{t−1} + S_t`, a cumulative sum inside the
    mini-batch: `inner_loop` with token_scale s_i = 1 and lr = θ (whatever the initial S)."""
    params, (q, k, v, lr, _, _), surprise = _case(kind, 7, seed=1, dtype=jnp.float64)
    zeros = jnp.zeros_like(lr)
    out, (final, _) = _jitted(kind, 3, form)(params, q, k, v, lr, zeros, zeros, surprise=surprise)
    ttt = functools.partial(inner_loop, kind, mini_batch_size=3, token_scale=jnp.ones(3), unroll=1)
    expected = jax.jit(ttt)(params, q, k, v, lr)
    chex.assert_trees_all_close((out, final), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_causal(form):
    """A tangent on every input (q, k, v, θ, η, α) after `cut` moves no output up to `cut`
    (exactly), and does move the output at `cut + 1`."""
    t = 7
    params, inputs, _ = _case("mlp", t, seed=4)
    run = _jitted("mlp", 3, form)
    keys = jax.random.split(jax.random.key(5), len(inputs))
    tangents = [jax.random.normal(key, a.shape) for key, a in zip(keys, inputs, strict=True)]

    @jax.jit
    def out_tangent(cut):
        after = jnp.arange(t) > cut
        masked = [jnp.where(after.reshape(-1, *[1] * (a.ndim - 1)), a, 0.0) for a in tangents]
        return jax.jvp(lambda *xs: run(params, *xs)[0], inputs, tuple(masked))[1]

    for cut in range(t - 1):
        d_out = np.abs(np.asarray(out_tangent(cut))).sum(axis=1)
        assert np.all(d_out[: cut + 1] == 0.0), (cut, d_out)
        assert d_out[cut + 1] > 0.0, (cut, d_out)


@pytest.mark.parametrize("kind", ["linear", pytest.param("kan", marks=pytest.mark.slow)])
def test_outer_gradients_of_primal_and_dual_agree(kind, x64):
    """Gradients through both associative scans (gates included) and the mini-batch scan."""
    params, inputs, surprise = _case(kind, 5, seed=6, dtype=jnp.float64)
    weights = jax.random.normal(jax.random.key(7), (5, F), jnp.float64)

    def objective(form, params, inputs, surprise):
        out, (final, s) = _jitted(kind, 2, form)(params, *inputs, surprise=surprise)
        leaves = jax.tree.leaves((final, s))
        return jnp.sum(weights * out) + sum(jnp.sum(jnp.sin(a)) for a in leaves)

    grads = [
        jax.jit(jax.grad(functools.partial(objective, form), argnums=(0, 1, 2)))(
            params, inputs, surprise
        )
        for form in FORMS
    ]
    chex.assert_trees_all_close(*grads, atol=1e-10, rtol=1e-10)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads[0]))
    assert float(jnp.abs(grads[0][1][4]).sum()) > 0.0  # the momentum gate gets a gradient


def test_remat_and_unroll_do_not_change_the_result():
    """remat_every = 2 pads T = 5 (b = 2) to 8 tokens: the wholly padded last mini-batch must keep
    the state after token 5."""
    params, inputs, surprise = _case("linear", 5, seed=8)
    base = _jitted("linear", 2, "dual")(params, *inputs, surprise=surprise)
    run = functools.partial(titans_inner_loop, "linear", mini_batch_size=2, surprise=surprise)
    for kwargs in ({"remat_every": 2}, {"unroll": 3}):
        got = jax.jit(functools.partial(run, **kwargs))(params, *inputs)
        chex.assert_trees_all_close(got, base, atol=1e-6, rtol=1e-6)


def test_swiglu_memory_runs_in_primal_form():
    """A primal-only learner (LaCT's SwiGLU) is a Titans memory too; the dual form refuses it."""
    params = get_learner("swiglu").init(jax.random.key(0), F)
    _, inputs, _ = _case("linear", 5)
    out, (final, surprise) = titans_inner_loop("swiglu", params, *inputs, form="primal")
    chex.assert_shape(out, (5, F))
    chex.assert_trees_all_equal_shapes(final, surprise, params)
    assert float(jnp.abs(final["W2"] - params["W2"]).max()) > 0.0
    with pytest.raises(ValueError, match="no DualForm"):
        titans_inner_loop("swiglu", params, *inputs, form="dual")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "both"}, "form='both'"),
        ({"mini_batch_size": 0}, "mini_batch_size=0"),
        ({"momentum": jnp.ones(5)}, r"momentum must be \[T\]"),
        ({"forget": jnp.ones((6, 1))}, r"forget must be \[T\]"),
        ({"lr": jnp.ones(5)}, r"lr must be \[T\]"),
        ({"surprise": {"W": jnp.zeros((F, F))}}, "surprise must have the inner entries"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    params, (q, k, v, lr, momentum, forget), _ = _case("linear", 6)
    args = {"xq": q, "xk": k, "xv": v, "lr": lr, "momentum": momentum, "forget": forget}
    with pytest.raises(ValueError, match=match):
        titans_inner_loop("linear", params, **(args | kwargs))
