"""Tests for t3kan_jax/kan/grid.py: grid update, extension, and learnable-knot parametrisations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.kan import bspline_basis, kan_apply, kan_init, uniform_knots
from t3kan_jax.kan import grid as grid_lib

G, P, N_IN, N_OUT = 5, 3, 3, 4

apply = jax.jit(kan_apply, static_argnums=3)
from_samples = jax.jit(
    grid_lib.grid_from_samples, static_argnums=(1, 2), static_argnames=("grid_eps", "margin")
)
update = jax.jit(grid_lib.update_grid, static_argnums=3)
extend = jax.jit(grid_lib.extend_grid, static_argnums=(2, 3))


def cubic_spline_params(seed=0):
    """Every edge an exact cubic polynomial (representable on any cubic grid covering its range),
    per-edge scales far from 1 and of both signs, so a refit that reapplies the scale shows."""
    rng = np.random.default_rng(seed)
    knots = uniform_knots(G, P)
    x = np.linspace(-1.0, 1.0, 64, endpoint=False)
    design = np.asarray(jax.jit(bspline_basis, static_argnums=2)(x, knots, P), np.float64)
    poly_IOM = rng.normal(size=(N_IN, N_OUT, 4))
    values = np.einsum("iom,nm->ion", poly_IOM, x[:, None] ** np.arange(4))
    c = np.einsum("kn,ion->iok", np.linalg.pinv(design), values)  # design [N, K]
    params = kan_init(jax.random.key(seed), N_IN, N_OUT, knots, P, use_bias=True)
    params["c"] = jnp.asarray(c, jnp.float32)
    params["scale"] = jnp.asarray(
        rng.uniform(0.5, 3.0, (N_IN, N_OUT)) * rng.choice([-1, 1], (N_IN, N_OUT))
    )
    return params, jnp.broadcast_to(knots, (N_IN, knots.shape[0]))


def skewed_in_range_samples(n=2000, seed=1):
    """Samples inside [-1, 1) with a skewed density, so the quantile grid is far from uniform."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(-1.0 + 1.98 * rng.beta(2.0, 5.0, (n, N_IN)), jnp.float32)


def test_grid_from_samples_mixes_uniform_and_quantiles():
    x = skewed_in_range_samples()
    knots = from_samples(x, G, P, grid_eps=0.02)
    assert knots.shape == (N_IN, G + 2 * P + 1)
    assert bool(jnp.all(jnp.diff(knots, axis=-1) > 0))
    xs = np.sort(np.asarray(x), axis=0)
    uniform = from_samples(x, G, P, grid_eps=1.0, margin=0.01)
    np.testing.assert_allclose(uniform[:, P], xs[0] - 0.01, atol=1e-6)
    np.testing.assert_allclose(uniform[:, P + G], xs[-1] + 0.01, atol=1e-6)
    steps = np.diff(uniform, axis=-1)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[:, :1], steps.shape), rtol=1e-4)
    adaptive = from_samples(x, G, P, grid_eps=0.0)
    idx = np.linspace(0, len(xs) - 1, G + 1).astype(int)
    np.testing.assert_allclose(adaptive[:, P : P + G + 1], xs[idx].T, atol=1e-6)
    with pytest.raises(ValueError, match="grid_eps"):
        grid_lib.grid_from_samples(x, G, P, grid_eps=1.5)


def test_update_grid_preserves_function_with_non_unit_scale():
    params, knots = cubic_spline_params()
    x = skewed_in_range_samples()
    with jax.default_matmul_precision("highest"):
        before = apply(params, x, knots, P)
        new_params, new_knots = update(params, knots, x, P)
        after = apply(new_params, x, new_knots, P)
        # efficient-KAN's refit reapplies the per-edge scale; that must visibly break the function.
        twice = apply(
            {**new_params, "c": new_params["c"] * params["scale"][..., None]}, x, new_knots, P
        )
    assert float(jnp.abs(new_knots - knots).max()) > 0.1
    np.testing.assert_allclose(after, before, atol=1e-3)
    assert float(jnp.abs(twice - before).max()) > 0.1


def test_update_grid_preserves_default_init_on_in_range_samples():
    """efficient-KAN's defaults (noise spline, per-edge scale ~ U(±1/sqrt(fan_in)))."""
    knots = uniform_knots(G, P)
    params = kan_init(jax.random.key(2), N_IN, N_OUT, knots, P)
    x = np.random.default_rng(3).uniform(-1.0, 0.99, (1000, N_IN)).astype(np.float32)
    knots_IS = jnp.broadcast_to(knots, (N_IN, knots.shape[0]))
    new_params, new_knots = update(params, knots_IS, x, P)
    before = apply(params, x, knots, P)
    np.testing.assert_allclose(apply(new_params, x, new_knots, P), before, atol=1e-3)
    twice = {**new_params, "c": new_params["c"] * params["scale"][..., None]}
    assert float(jnp.abs(apply(twice, x, new_knots, P) - before).max()) > 1e-3


def test_extend_grid_is_exact_for_integer_refinement():
    params, knots = cubic_spline_params(seed=4)
    params["c"] = params["c"] + np.random.default_rng(5).normal(size=params["c"].shape).astype(
        np.float32
    )
    adapted, adapted_knots = update(params, knots, skewed_in_range_samples(seed=6), P)
    for p, t in ((params, knots), (adapted, adapted_knots)):
        fine, fine_knots = extend(p, t, P, 2 * G)
        assert fine["c"].shape == (N_IN, N_OUT, 2 * G + P) and fine_knots.shape == (
            N_IN,
            2 * G + 2 * P + 1,
        )
        u = jnp.linspace(0.0, 0.999, 200)[:, None]
        x = t[:, P] + (t[:, P + G] - t[:, P]) * u
        with jax.default_matmul_precision("highest"):
            np.testing.assert_allclose(apply(fine, x, fine_knots, P), apply(p, x, t, P), atol=1e-4)
    with pytest.raises(ValueError, match="new_grid_size"):
        grid_lib.extend_grid(params, knots, P, G - 1)


def test_refine_uniform_knots_stays_uniform():
    knots = jnp.broadcast_to(uniform_knots(G, P, -2.0, 1.0), (2, G + 2 * P + 1))
    np.testing.assert_allclose(
        jax.jit(grid_lib.refine_knots, static_argnums=(1, 2))(knots, P, 3 * G)[0],
        uniform_knots(3 * G, P, -2.0, 1.0),
        atol=1e-6,
    )


def test_knots_from_endpoints_rows_are_uniform_knots():
    lo, hi = jnp.array([-1.0, 0.0]), jnp.array([1.0, 3.0])
    knots = grid_lib.knots_from_endpoints(lo, hi, G, P)
    np.testing.assert_allclose(knots[1], uniform_knots(G, P, 0.0, 3.0), atol=1e-6)


def test_increments_roundtrip_and_sorted():
    knots = jnp.asarray(
        np.sort(np.random.default_rng(7).uniform(0.0, 1.0, (N_IN, 12)), -1), jnp.float32
    )
    start, raw = jax.jit(grid_lib.increments_from_knots)(knots)
    rebuilt = jax.jit(grid_lib.knots_from_increments)(start, raw)
    np.testing.assert_allclose(rebuilt, knots, atol=1e-5)
    any_raw = np.random.default_rng(8).normal(size=raw.shape).astype(np.float32) * 5
    assert np.all(np.diff(jax.jit(grid_lib.knots_from_increments)(start, any_raw), axis=-1) >= 0)


def test_colliding_learnable_knots_have_finite_gradients():
    """softplus(-200) underflows to 0: knots collide; the layer's gradients stay finite."""
    params = kan_init(jax.random.key(9), N_IN, N_OUT, uniform_knots(G, P), P)
    start, raw = jax.jit(grid_lib.increments_from_knots)(
        jnp.broadcast_to(uniform_knots(G, P), (N_IN, 12))
    )
    raw = raw.at[:, 4:7].set(-200.0)
    x = jnp.linspace(-1.2, 1.2, 25)[:, None] * jnp.ones(N_IN)

    def loss(start, raw, params):
        return kan_apply(params, x, grid_lib.knots_from_increments(start, raw), P).sum()

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(start, raw, params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_transfer_matrix_independent_of_outputs():
    """Refitting is `M_i c` per edge: a bigger output dim just reuses the same M."""
    params, knots = cubic_spline_params()
    x = skewed_in_range_samples()
    new_knots = from_samples(x, G, P)
    m = jax.jit(grid_lib.transfer_matrix, static_argnums=3)(x, knots, new_knots, P)
    assert m.shape == (N_IN, G + P, G + P)
    refit = jax.jit(functools.partial(grid_lib.refit_coefficients, transfer_IJK=m))
    np.testing.assert_allclose(
        refit(params["c"])[:, :2], refit(params["c"][:, :2]), rtol=1e-5, atol=1e-6
    )
