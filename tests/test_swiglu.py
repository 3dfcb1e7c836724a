"""LaCT's SwiGLU fast-weight learner: formula, jax.grad = the LaCT code's hand-written gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt import get_learner, inner_loop
from t3kan_jax.ttt.learners import swiglu

F = 6


def _silu_derivative(x):
    """`silu'(x) = σ(x) (1 + x (1 − σ(x)))` (LaCT's `silu_backprop`)."""
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))


def test_registered_and_formula():
    learner = get_learner("swiglu")
    params = learner.init(jax.random.key(0), F, hidden_ratio=2)
    chex.assert_shape(
        [params["W1"], params["W3"], params["W2"]], [(F, 2 * F), (F, 2 * F), (2 * F, F)]
    )
    x = np.random.default_rng(0).normal(size=F).astype(np.float32)
    w1, w3, w2 = (np.asarray(params[k]) for k in ("W1", "W3", "W2"))
    gate = x @ w1
    expected = (gate / (1.0 + np.exp(-gate)) * (x @ w3)) @ w2
    np.testing.assert_allclose(learner.apply(params, x), expected, rtol=1e-5, atol=1e-6)
    assert learner.split(params)[1] == {}


def test_init_scale_is_one_over_sqrt_fan_in():
    params = swiglu.init(jax.random.key(1), 64, hidden_ratio=2)
    np.testing.assert_allclose(np.std(params["W1"]), 64**-0.5, rtol=0.05)
    np.testing.assert_allclose(np.std(params["W2"]), 128**-0.5, rtol=0.05)
    np.testing.assert_allclose(
        np.std(swiglu.init(jax.random.key(1), 64, init_std=0.02)["W3"]), 0.02, rtol=0.05
    )
    with pytest.raises(ValueError, match="hidden_ratio=0"):
        swiglu.init(jax.random.key(1), 4, hidden_ratio=0)


def test_gradient_equals_the_lact_hand_written_one(x64):
    """ℓ = −f(k)·v; the LaCT code's update `dW = −∇ℓ` in our `[I, O]` layout."""
    learner = get_learner("swiglu")
    params = learner.init(jax.random.key(2), F, hidden_ratio=2, dtype=jnp.float64)
    rng = np.random.default_rng(3)
    k, v = rng.normal(size=F), rng.normal(size=F)
    grads = jax.grad(lambda p: learner.loss(p, learner.apply(p, k), k, v))(params)
    w1, w3, w2 = (np.asarray(params[key]) for key in ("W1", "W3", "W2"))
    gate, up = k @ w1, k @ w3
    hidden = gate / (1.0 + np.exp(-gate)) * up
    d_hidden = w2 @ v
    expected = {
        "W2": -np.outer(hidden, v),
        "W3": -np.outer(k, d_hidden * gate / (1.0 + np.exp(-gate))),
        "W1": -np.outer(k, d_hidden * up * _silu_derivative(gate)),
    }
    chex.assert_trees_all_close(grads, expected, atol=1e-12, rtol=1e-10)


def test_readout_has_no_residual_and_runs_in_plain_ttt():
    """As a TTT learner (primal form only): the first token's output is `f(q; W_1)`."""
    learner = get_learner("swiglu")
    params = learner.init(jax.random.key(4), F)
    q, k, v = jax.random.normal(jax.random.key(5), (3, 5, F))
    lr = jnp.full((5,), 0.1)
    out, final = inner_loop("swiglu", params, q, k, v, lr, mini_batch_size=1, form="primal")
    grad = jax.grad(lambda p: learner.loss(p, learner.apply(p, k[0]), k[0], v[0]))(params)
    w_1 = jax.tree.map(lambda w, g: w - 0.1 * g, params, grad)
    chex.assert_trees_all_close(out[0], learner.apply(w_1, q[0]), atol=1e-6)
    chex.assert_trees_all_equal_shapes(final, params)
