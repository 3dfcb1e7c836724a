"""Tests for t3kan_jax/kan/spline.py: the fused B-spline KAN layer as pure functions."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.kan import (
    bspline_basis,
    kan_apply,
    kan_edge_parts,
    kan_features,
    kan_flat_features,
    kan_flat_weight,
    kan_init,
    kan_regularization,
    spline_coefficients,
    uniform_knots,
)
from t3kan_jax.kan.spline import fit_silu_coefficients

G, P, N_IN, N_OUT = 5, 3, 4, 3
K = G + P


# Jitted once: eager calls compile op by op, which would dominate the test time.
init = jax.jit(
    kan_init, static_argnums=(1, 2, 4), static_argnames=("spline_init", "spline_scale", "use_bias")
)
apply = jax.jit(kan_apply, static_argnums=3)
edge_parts = jax.jit(kan_edge_parts, static_argnums=3)


def make_params(dtype=jnp.float32):
    params = init(jax.random.key(0), N_IN, N_OUT, uniform_knots(G, P), P, use_bias=True)
    # Non-trivial coefficients and bias so every path is exercised.
    params["c"] = np.random.default_rng(1).normal(size=(N_IN, N_OUT, K)).astype(np.float32)
    params["b"] = jnp.linspace(-1.0, 1.0, N_OUT)
    return jax.tree.map(lambda a: a.astype(dtype), params)


@jax.jit
def reference_apply(params, x, knots):
    """The efficient-KAN formula spelled out with the plain (autodiff) basis."""
    b = bspline_basis(x, knots, P)
    y = jax.nn.silu(x) @ params["w_base"]
    return y + jnp.einsum("...ik,iok->...o", b, spline_coefficients(params)) + params["b"]


def test_flat_layout():
    params, knots = make_params(), uniform_knots(G, P)
    x = np.random.default_rng(2).uniform(-1.2, 1.2, (5, N_IN)).astype(np.float32)
    phi = jax.jit(kan_flat_features, static_argnums=2)(x, knots, P).reshape(5, N_IN, K + 1)
    silu, b = jax.jit(kan_features, static_argnums=2)(x, knots, P)
    chex.assert_trees_all_close(phi[..., 0], silu)
    chex.assert_trees_all_close(phi[..., 1:], b)
    w = kan_flat_weight(params).reshape(N_IN, K + 1, N_OUT)
    chex.assert_trees_all_close(w[:, 0], params["w_base"])
    chex.assert_trees_all_close(
        w[:, 1:], jnp.swapaxes(params["c"] * params["scale"][..., None], 1, 2)
    )


@pytest.mark.parametrize(("lead", "per_input"), [((5,), False), ((2, 3), True), ((2, 1, 3), False)])
def test_apply_matches_sum_of_edges(lead, per_input):
    params = make_params()
    knots = uniform_knots(G, P)
    if per_input:
        knots = knots * jnp.linspace(0.8, 1.3, N_IN)[:, None]
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (*lead, N_IN)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        y = apply(params, x, knots, P)
        base, spline = edge_parts(params, x, knots, P)
        ref = reference_apply(params, x, knots)
    chex.assert_shape(y, (*lead, N_OUT))
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_allclose(y, np.sum(base + spline, -2) + params["b"], atol=1e-5)


def test_gradients_match_plain_autodiff(x64):
    """The custom JVP of the basis (dB/dx only kept) equals autodiff through Cox–de Boor."""
    params = make_params(dtype=jnp.float64)
    knots = (
        uniform_knots(G, P, jnp.float64(-1.0), jnp.float64(1.0))
        * jnp.linspace(0.9, 1.2, N_IN)[:, None]
    )
    x = np.random.default_rng(4).uniform(-1.3, 1.3, (6, N_IN))

    def loss(fn, params, x, knots):
        return jnp.sum(jnp.sin(fn(params, x, knots)))

    ours = functools.partial(loss, lambda p, x, t: kan_apply(p, x, t, P))
    ref = functools.partial(loss, reference_apply)
    g_ours = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(params, x, knots)
    g_ref = jax.jit(jax.grad(ref, argnums=(0, 1, 2)))(params, x, knots)
    chex.assert_trees_all_close(g_ours, g_ref, atol=1e-10)
    jf = jax.jit(jax.jacfwd(lambda x: kan_apply(params, x, knots, P)))(x[0])
    jr = jax.jit(jax.jacrev(lambda x: reference_apply(params, x, knots)))(x[0])
    chex.assert_trees_all_close(jf, jr, atol=1e-10)


def test_bf16_matmul_accumulates_in_fp32():
    params, knots = make_params(), uniform_knots(G, P)
    x = np.random.default_rng(5).uniform(-1.0, 1.0, (8, N_IN)).astype(np.float32)
    fn = functools.partial(kan_apply, knots=knots, degree=P, compute_dtype=jnp.bfloat16)
    y = jax.jit(fn)(params, x)
    assert y.dtype == jnp.bfloat16
    dots = [e for e in jax.make_jaxpr(fn)(params, x).eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1
    assert all(v.aval.dtype == jnp.bfloat16 for v in dots[0].invars)
    assert dots[0].params["preferred_element_type"] == jnp.float32
    y32 = apply(params, x, knots, P)
    np.testing.assert_allclose(y.astype(jnp.float32), y32, rtol=3e-2, atol=3e-2)


def test_init_modes():
    knots = uniform_knots(G, P)
    p = init(jax.random.key(0), 64, 8, knots, P, spline_init="noise")
    assert set(p) == {"w_base", "c", "scale"}
    assert float(jnp.abs(p["c"]).max()) <= 0.05 / G
    assert float(jnp.abs(p["w_base"]).max()) <= 1 / np.sqrt(64)
    p = init(jax.random.key(0), N_IN, N_OUT, knots, P, spline_init="zero", spline_scale=False)
    assert set(p) == {"w_base", "c"} and not jnp.any(p["c"])
    p = init(jax.random.key(0), N_IN, N_OUT, knots, P, spline_init="silu", use_bias=True)
    x = jnp.linspace(-1.0, 0.999, 50)[:, None] * jnp.ones(N_IN)
    _, spline = edge_parts(p, x, knots, P)
    expected = jax.nn.silu(x)[..., None] * p["scale"]
    np.testing.assert_allclose(spline, expected, atol=1e-3)
    with pytest.raises(ValueError, match="spline_init"):
        kan_init(jax.random.key(0), N_IN, N_OUT, knots, P, spline_init="gaussian")


def test_fit_silu_per_input_knots():
    knots = uniform_knots(G, P) * jnp.array([1.0, 2.0])[:, None]
    c_IK = jax.jit(fit_silu_coefficients, static_argnums=1)(knots, P)
    x = jnp.stack([jnp.linspace(-1, 0.99, 20), jnp.linspace(-2, 1.99, 20)], -1)
    fit = jnp.einsum("nik,ik->ni", jax.jit(bspline_basis, static_argnums=2)(x, knots, P), c_IK)
    np.testing.assert_allclose(fit, jax.nn.silu(x), atol=1e-3)


def test_regularization_matches_pykan_formula():
    params, knots = make_params(), uniform_knots(G, P)
    x = np.random.default_rng(6).uniform(-1.0, 1.0, (2, 10, N_IN)).astype(np.float32)
    reg = jax.jit(functools.partial(kan_regularization, degree=P, l1=0.5, entropy=2.0))
    got = reg(params, x, knots)
    base, spline = edge_parts(params, x, knots, P)
    a = np.abs(np.asarray(base + spline)).reshape(-1, N_IN, N_OUT).mean(0)
    p = a / a.sum()
    np.testing.assert_allclose(got, 0.5 * a.sum() - 2.0 * np.sum(p * np.log2(p)), rtol=1e-5)
    zero = jax.tree.map(jnp.zeros_like, params)
    g = jax.grad(reg)(zero, x, knots)
    assert float(reg(zero, x, knots)) == 0.0
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))


def test_far_outside_float32_finite_gradients():
    params, knots = make_params(), uniform_knots(G, P)
    x = jnp.array([[-1e30, -1e6, 1e6, 1e30]], jnp.float32)
    grads = jax.jit(jax.grad(lambda p, x, t: kan_apply(p, x, t, P).sum(), argnums=(0, 1, 2)))(
        params, x, knots
    )
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(grads))


def test_jit_vmap_consistency():
    params, knots = make_params(), uniform_knots(G, P)
    x = np.random.default_rng(7).uniform(-1.0, 1.0, (3, 5, N_IN)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        batched = apply(params, x, knots, P)
        mapped = jax.jit(jax.vmap(lambda r: kan_apply(params, r, knots, P)))(x)
        rows = jnp.stack([apply(params, r, knots, P) for r in x])
    chex.assert_trees_all_close(batched, mapped, atol=1e-5)
    chex.assert_trees_all_close(batched, rows, atol=1e-5)
