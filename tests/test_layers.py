"""Tests for t3kan_jax/kan/layers.py: the Flax KAN layers.

Every Flax call is jitted: eager Linen code compiles op by op, which would dominate the test time.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.kan import (
    GRKAN,
    GroupRational,
    KANDense,
    LinearSplineKAN,
    bspline_basis,
    extend_kan_dense,
    kan_apply,
    kan_regularization,
    uniform_knots,
)
from t3kan_jax.kan.layers import GRID_MODES

N_IN, N_OUT, G, P = 3, 4, 5, 3


def init(layer, x, seed=0):
    return jax.jit(layer.init)(jax.random.key(seed), x)


def cubic_variables(layer, seed=0, noise=0.0):
    """Variables whose edges are exact cubics on [-1, 1] (plus `noise` on the coefficients), with
    per-edge scales far from 1."""
    rng = np.random.default_rng(seed)
    variables = init(layer, jnp.zeros((1, N_IN)), seed)
    x = np.linspace(-1.0, 1.0, 64, endpoint=False)
    design = np.asarray(jax.jit(bspline_basis, static_argnums=2)(x, uniform_knots(G, P), P))
    values = np.einsum("iom,nm->ion", rng.normal(size=(N_IN, N_OUT, 4)), x[:, None] ** np.arange(4))
    params = dict(variables["params"])
    c = np.einsum("kn,ion->iok", np.linalg.pinv(design.astype(np.float64)), values)
    params["c"] = jnp.asarray(c + noise * rng.normal(size=c.shape), jnp.float32)
    params["scale"] = jnp.asarray(
        rng.uniform(0.5, 3.0, (N_IN, N_OUT)) * rng.choice([-1, 1], (N_IN, N_OUT))
    )
    return {**variables, "params": params}


def test_kan_dense_is_a_dense_drop_in():
    class MLP(nn.Module):
        dense: type

        @nn.compact
        def __call__(self, x):
            return self.dense(N_OUT)(jax.nn.gelu(self.dense(8)(x)))

    for dense in (nn.Dense, KANDense):
        model = MLP(dense)
        variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, N_IN)))
        for lead in ((5,), (2, 3), (2, 1, 3)):
            y = jax.eval_shape(model.apply, variables, jnp.ones((*lead, N_IN)))
            assert y.shape == (*lead, N_OUT)


def test_grid_modes_agree_at_init_and_match_pure_function():
    x = np.random.default_rng(1).uniform(-1.5, 1.5, (6, N_IN)).astype(np.float32)
    outputs = []
    for mode in GRID_MODES:
        layer = KANDense(N_OUT, grid_mode=mode)

        @jax.jit
        def run(x, layer=layer):
            variables = layer.init(jax.random.key(0), x)
            params, knots = layer.apply(variables, method="export")
            return layer.apply(variables, x), kan_apply(params, x, knots, P), variables

        y, y_pure, variables = run(x)
        np.testing.assert_allclose(y_pure, y, atol=1e-6)
        outputs.append(y)
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], atol=1e-5)
    assert set(variables["params"]) == {"w_base", "c", "scale", "b", "knot_start", "knot_raw"}


def test_learnable_grids_get_finite_nonzero_gradients():
    """Two stacked layers, one per learnable grid mode, differentiated in one compile."""

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = KANDense(N_IN, grid_mode="endpoints", spline_init="silu", name="ends")(x)
            return KANDense(N_OUT, grid_mode="knots", spline_init="silu", name="knots")(h)

    model = Stack()
    x = np.random.default_rng(2).uniform(-1.0, 1.0, (16, N_IN)).astype(np.float32)
    variables = init(model, x)
    grads = jax.jit(jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2)))(variables)["params"]
    for layer, name in (("ends", "grid_lo"), ("ends", "grid_hi"), ("knots", "knot_start"),
                        ("knots", "knot_raw")):  # fmt: skip
        g = grads[layer][name]
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


@pytest.mark.parametrize("mode", ["buffer", "endpoints", "knots"])
def test_update_grid_preserves_function(mode):
    """In-range samples, per-edge scales far from 1: the update must keep the layer's function."""
    layer = KANDense(N_OUT, grid_mode=mode)
    variables = cubic_variables(layer)
    rng = np.random.default_rng(3)
    x = jnp.asarray(-1.0 + 1.98 * rng.beta(2.0, 5.0, (4, 500, N_IN)), jnp.float32)

    @jax.jit
    def run(variables, x):
        with jax.default_matmul_precision("highest"):
            _, new = layer.apply(variables, x, method="update_grid", mutable=["params", "grid"])
            knots = layer.apply(new, method="export")[1]
            return layer.apply(variables, x), layer.apply(new, x), knots

    before, after, knots = run(variables, x)
    assert float(jnp.abs(knots[:, P] + 1.0).min()) > 0.005  # the grid really moved
    np.testing.assert_allclose(after, before, atol=1e-3)


def test_update_grid_needs_a_stored_grid():
    layer = KANDense(N_OUT)
    variables = init(layer, jnp.zeros((2, N_IN)))
    with pytest.raises(ValueError, match="grid_mode"):
        layer.apply(variables, jnp.zeros((2, N_IN)), method="update_grid", mutable=["params"])


@pytest.mark.parametrize("mode", ["fixed", "knots"])
def test_extend_kan_dense_is_exact_for_integer_refinement(mode):
    layer = KANDense(N_OUT, grid_mode=mode)
    variables = cubic_variables(layer, seed=1, noise=0.3)
    fine_layer = layer.clone(grid_size=2 * G)
    x = np.random.default_rng(5).uniform(-1.0, 0.999, (200, N_IN)).astype(np.float32)

    @jax.jit
    def run(variables, x):
        new_layer, fine = extend_kan_dense(layer, variables, 2 * G)
        assert new_layer.grid_size == 2 * G
        with jax.default_matmul_precision("highest"):
            return fine_layer.apply(fine, x), layer.apply(variables, x), fine

    y_fine, y, fine = run(variables, x)
    assert fine["params"]["c"].shape == (N_IN, N_OUT, 2 * G + P)
    np.testing.assert_allclose(y_fine, y, atol=1e-4)


def test_regularization_method_matches_pure_function():
    layer = KANDense(N_OUT)
    x = np.random.default_rng(6).uniform(-1.0, 1.0, (8, N_IN)).astype(np.float32)
    variables = init(layer, x)

    @jax.jit
    def run(variables, x):
        params, knots = layer.apply(variables, method="export")
        pure = kan_regularization(params, x, knots, P)
        return layer.apply(variables, x, method="regularization"), pure

    got, pure = run(variables, x)
    np.testing.assert_allclose(got, pure, rtol=1e-6)


def test_bf16_dtype_keeps_fp32_params():
    layer = KANDense(N_OUT, dtype=jnp.bfloat16)
    x = jnp.linspace(-1.0, 1.0, 4 * N_IN).reshape(4, N_IN)
    variables = init(layer, x)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
    y = jax.jit(layer.apply)(variables, x)
    assert y.dtype == jnp.bfloat16
    y32 = jax.jit(KANDense(N_OUT).apply)(variables, x)
    np.testing.assert_allclose(y.astype(jnp.float32), y32, atol=3e-2)


def test_bad_attributes_raise():
    x = jnp.zeros((2, N_IN))
    for kwargs, field in (
        ({"grid_mode": "free"}, "grid_mode"),
        ({"spline_init": "ones"}, "spline_init"),
        ({"grid_range": (1.0, -1.0)}, "grid_range"),
    ):
        with pytest.raises(ValueError, match=field):
            jax.eval_shape(KANDense(N_OUT, **kwargs).init, jax.random.key(0), x)


def test_linear_spline_kan_identity_and_impls():
    x = np.random.default_rng(7).normal(size=(2, 5, N_IN)).astype(np.float32) * 5
    layer = LinearSplineKAN(N_IN, spline_init="identity")
    variables = init(layer, x)
    gather = LinearSplineKAN(N_IN, spline_init="identity", impl="gather")
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(jax.jit(layer.apply)(variables, x), x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(jax.jit(gather.apply)(variables, x), x, rtol=1e-5, atol=1e-5)
    shapes = jax.eval_shape(LinearSplineKAN(N_OUT, use_bias=True).init, jax.random.key(0), x)
    assert shapes["params"]["b"].shape == (N_OUT,) and shapes["params"]["c"].shape == (
        N_IN,
        N_OUT,
        32,
    )


def test_grkan_layer():
    x = np.random.default_rng(8).normal(size=(4096, 64)).astype(np.float32)
    layer = GRKAN(32, num_groups=8, rational_init="gelu")
    variables = init(layer, x)
    assert variables["params"]["rational"]["denominator"].shape == (8, 4)
    assert variables["params"]["rational"]["numerator"].shape == (6,)
    y = jax.jit(layer.apply)(variables, x)
    assert y.shape == (4096, 32)
    np.testing.assert_allclose(float(y.var()), 1.0, rtol=0.15)  # variance-preserving init
    act = GroupRational(num_groups=4, rational_init="swish")
    xs = jnp.linspace(-3.0, 3.0, 64).reshape(8, 8)
    y_act = jax.jit(act.apply)(init(act, xs), xs)
    np.testing.assert_allclose(y_act, jax.nn.silu(xs), atol=1e-2)
