"""Tests for t3kan_jax/kan/linear_spline.py: the KANditioned linear-spline KAN layer."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t3kan_jax.kan.linear_spline import (
    control_points,
    hat_features,
    linear_spline_apply,
    linear_spline_edges,
    linear_spline_init,
)

N_IN, N_OUT, N_CP, WIDTH = 3, 4, 6, 4.0

init = jax.jit(linear_spline_init, static_argnums=(1, 2, 3, 4, 5, 6))
apply = jax.jit(linear_spline_apply, static_argnums=2, static_argnames=("impl", "compute_dtype"))
edges = jax.jit(linear_spline_edges, static_argnums=2)


def random_params(seed=0, use_bias=True):
    c = np.random.default_rng(seed).normal(size=(N_IN, N_OUT, N_CP)).astype(np.float32)
    return {"c": c, "b": jnp.arange(N_OUT, dtype=jnp.float32)} if use_bias else {"c": c}


def numpy_edges(c_IOK, x_NI, width):
    """Direct numpy lerp with end-piece extrapolation, edge by edge."""
    knots = np.linspace(-width / 2, width / 2, c_IOK.shape[-1])
    out = np.zeros((*x_NI.shape, c_IOK.shape[1]))
    for n, i, o in np.ndindex(x_NI.shape[0], c_IOK.shape[0], c_IOK.shape[1]):
        x = x_NI[n, i]
        j = int(np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(knots) - 2))
        t = (x - knots[j]) / (knots[j + 1] - knots[j])
        out[n, i, o] = (1 - t) * c_IOK[i, o, j] + t * c_IOK[i, o, j + 1]
    return out


def test_edges_match_numpy_including_extrapolation():
    params = random_params()
    x = np.random.default_rng(0).uniform(-5.0, 5.0, (20, N_IN)).astype(np.float32)
    np.testing.assert_allclose(
        edges(params, x, WIDTH), numpy_edges(np.asarray(params["c"]), x, WIDTH), atol=1e-5
    )


@pytest.mark.parametrize("lead", [(5,), (2, 3), (2, 1, 3)])
def test_dense_and_gather_agree_with_edge_sum(lead):
    params = random_params()
    x = np.random.default_rng(1).uniform(-3.0, 3.0, (*lead, N_IN)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        dense = apply(params, x, WIDTH, impl="dense")
        gather = apply(params, x, WIDTH, impl="gather")
    chex.assert_shape(dense, (*lead, N_OUT))
    expected = np.asarray(edges(params, x, WIDTH)).sum(-2) + np.asarray(params["b"])
    np.testing.assert_allclose(dense, expected, atol=1e-5)
    np.testing.assert_allclose(gather, expected, atol=1e-5)


def test_identity_init_is_the_identity_everywhere():
    params = init(jax.random.key(0), 5, 5, 32, 4.0, "identity", False)
    x = jnp.asarray(np.random.default_rng(2).uniform(-50.0, 50.0, (64, 5)), jnp.float32)
    for impl in ("dense", "gather"):
        with jax.default_matmul_precision("highest"):
            np.testing.assert_allclose(apply(params, x, 4.0, impl=impl), x, rtol=1e-5, atol=1e-5)
    grad = jax.jit(jax.grad(lambda x: linear_spline_apply(params, x, 4.0).sum()))(x)
    np.testing.assert_allclose(grad, 1.0, rtol=1e-5)


def test_zero_and_random_normal_inits():
    zero = init(jax.random.key(0), N_IN, N_OUT, N_CP, WIDTH, "zero", True)
    assert not jnp.any(zero["c"]) and not jnp.any(zero["b"])
    params = init(jax.random.key(1), N_IN, N_OUT, N_CP, WIDTH, "random_normal", False)
    slopes = params["c"][..., -1] / (WIDTH / 2)  # every edge a line through 0 at init
    np.testing.assert_allclose(
        params["c"], slopes[..., None] * control_points(N_CP, WIDTH), atol=1e-6
    )
    np.testing.assert_allclose(jnp.linalg.norm(slopes, axis=0), 1.0, rtol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="identity"):
        linear_spline_init(jax.random.key(0), 3, 4, init="identity")
    with pytest.raises(ValueError, match="init"):
        linear_spline_init(jax.random.key(0), 3, 4, init="ones")
    with pytest.raises(ValueError, match="num_control_points"):
        hat_features(jnp.zeros(3), 1, 4.0)
    with pytest.raises(ValueError, match="impl"):
        linear_spline_apply(random_params(), jnp.zeros(N_IN), WIDTH, impl="sparse")
    with pytest.raises(ValueError, match="last axis"):
        linear_spline_apply(random_params(), jnp.zeros(N_IN + 1), WIDTH)


def test_bf16_compute_dtype():
    params = random_params()
    x = jnp.linspace(-2.0, 2.0, 8 * N_IN).reshape(8, N_IN)
    y = apply(params, x, WIDTH, compute_dtype=jnp.bfloat16)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), apply(params, x, WIDTH), atol=0.1)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(0, N_CP - 1))
def test_control_points_are_interpolated(k):
    params = random_params(use_bias=False)
    x = jnp.full((1, N_IN), control_points(N_CP, WIDTH)[k])
    np.testing.assert_allclose(edges(params, x, WIDTH)[0], params["c"][..., k], atol=1e-5)


def test_jit_vmap_consistency():
    params = random_params()
    x = jnp.linspace(-3.0, 3.0, 4 * 5 * N_IN).reshape(4, 5, N_IN)
    fn = functools.partial(linear_spline_apply, params, spline_width=WIDTH)
    with jax.default_matmul_precision("highest"):
        chex.assert_trees_all_close(jax.jit(fn)(x), jax.jit(jax.vmap(fn))(x), atol=1e-5)
