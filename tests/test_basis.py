"""Tests for t3kan_jax/kan/basis.py: knots, Cox–de Boor values, and derivatives."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import BSpline

from t3kan_jax.kan import (
    bspline_basis,
    bspline_basis_and_derivative,
    bspline_basis_derivative,
    uniform_knots,
)

DEGREES = range(5)
# Jitted once: eager Cox–de Boor compiles op by op, which dominates the test time.
basis = jax.jit(bspline_basis, static_argnums=2)
derivative = jax.jit(bspline_basis_derivative, static_argnums=2)


def scipy_basis(x, knots, degree):
    """`basis_element(t[i:i+p+2], extrapolate=False)` with NaN -> 0, stacked over i."""
    knots = np.asarray(knots, np.float64)
    cols = [
        np.nan_to_num(BSpline.basis_element(knots[i : i + degree + 2], extrapolate=False)(x))
        for i in range(len(knots) - degree - 1)
    ]
    return np.stack(cols, axis=-1)


def off_knot_points(knots, n, seed=0):
    """Random points over the whole extended grid and beyond, none on a knot (scipy's degree-0
    element is closed on the right, ours half-open)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(knots[0] - 0.5, knots[-1] + 0.5, n)
    assert np.min(np.abs(x[:, None] - np.asarray(knots)[None])) > 1e-9
    return x


def test_uniform_knots_layout():
    t = uniform_knots(5, 3, -1.0, 1.0)
    chex.assert_shape(t, (5 + 2 * 3 + 1,))
    np.testing.assert_allclose(t, -1.0 + (np.arange(12) - 3) * 0.4, atol=1e-6)
    with pytest.raises(ValueError, match="grid_size"):
        uniform_knots(0, 3)
    with pytest.raises(ValueError, match="degree"):
        uniform_knots(5, -1)


@pytest.mark.parametrize("degree", DEGREES)
def test_matches_scipy_and_partition_of_unity(x64, degree):
    """Against scipy over the whole extended grid and beyond; bases sum to 1 on [lo, hi)
    (knots included), vanish far outside. One evaluation, so one compile per degree."""
    knots = uniform_knots(5, degree, jnp.float64(-1.0), jnp.float64(1.0))
    x_off = off_knot_points(np.asarray(knots), 400, seed=degree)
    x_in = np.concatenate([np.linspace(-1.0, 1.0, 101)[:-1], [1.0 - 1e-9]])
    b = np.asarray(basis(np.concatenate([x_off, x_in, [-5.0, 5.0]]), knots, degree))
    np.testing.assert_allclose(b[:400], scipy_basis(x_off, knots, degree), atol=1e-12)
    np.testing.assert_allclose(b[400:-2].sum(-1), 1.0, atol=1e-12)
    assert b.min() >= 0.0
    np.testing.assert_array_equal(b[-2:], 0.0)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_matches_scipy_nonuniform_per_input_knots(x64, degree):
    rng = np.random.default_rng(1)
    knots_IS = np.sort(rng.uniform(-2, 2, (3, 6 + 2 * degree + 1)), axis=-1)
    x_NI = rng.uniform(-2.5, 2.5, (50, 3))
    got = basis(x_NI, knots_IS, degree)
    chex.assert_shape(got, (50, 3, 6 + degree))
    for i in range(3):
        np.testing.assert_allclose(
            got[:, i], scipy_basis(x_NI[:, i], knots_IS[i], degree), atol=1e-12
        )


def test_half_open_intervals():
    knots = uniform_knots(4, 0, 0.0, 4.0)  # knots 0, 1, 2, 3, 4
    b = basis(jnp.array([0.0, 1.0, 3.0, 4.0]), knots, 0)
    np.testing.assert_array_equal(b, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])


@settings(max_examples=25, deadline=None)
@given(
    degree=st.integers(0, 4),
    steps=st.lists(st.floats(0.05, 2.0), min_size=9, max_size=9),
    u=st.floats(0.0, 0.999),
)
def test_partition_of_unity_random_knots(degree, steps, u):
    knots = np.concatenate([[0.0], np.cumsum(steps)])
    lo, hi = knots[degree], knots[len(knots) - degree - 1]
    b = np.asarray(basis(np.float32(lo + u * (hi - lo)), knots.astype(np.float32), degree))
    np.testing.assert_allclose(b.sum(), 1.0, atol=1e-5)
    assert b.min() >= -1e-7


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_x_derivative_matches_formula(x64, degree):
    knots = uniform_knots(5, degree, jnp.float64(-1.0), jnp.float64(1.0))
    x = jnp.asarray(off_knot_points(np.asarray(knots), 64, seed=10 + degree))
    jac_fwd = jax.jit(jax.vmap(jax.jacfwd(lambda s: bspline_basis(s, knots, degree))))(x)
    jac_rev = jax.jit(jax.vmap(jax.jacrev(lambda s: bspline_basis(s, knots, degree))))(x)
    formula = derivative(x, knots, degree)
    np.testing.assert_allclose(jac_fwd, formula, atol=1e-10)
    np.testing.assert_allclose(jac_rev, formula, atol=1e-10)
    if degree > 0:  # uniform knots: dB_{i,p}/dx = (B_{i,p-1} - B_{i+1,p-1}) / h
        lower = basis(x, knots, degree - 1)
        np.testing.assert_allclose(formula, (lower[:, :-1] - lower[:, 1:]) / 0.4, atol=1e-10)


def test_basis_and_derivative_agree(x64):
    knots = jnp.asarray(np.sort(np.random.default_rng(2).uniform(-1, 1, 12)))
    x = jnp.linspace(-1.2, 1.2, 31)
    b, db = jax.jit(bspline_basis_and_derivative, static_argnums=2)(x, knots, 3)
    np.testing.assert_allclose(b, basis(x, knots, 3), atol=1e-14)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda s: bspline_basis(s, knots, 3))))(x)
    np.testing.assert_allclose(db, jac, atol=1e-10)


@pytest.mark.parametrize("degree", [1, 3])
def test_knot_gradients_translation_and_scaling(x64, degree):
    rng = np.random.default_rng(degree)
    knots = jnp.asarray(np.sort(rng.uniform(-1, 1, 6 + 2 * degree + 1)))
    x = jnp.asarray(off_knot_points(np.asarray(knots), 32, seed=20 + degree))
    d_x_rev = jax.jit(jax.vmap(jax.jacrev(lambda s: bspline_basis(s, knots, degree))))(x)
    d_t = jax.jit(  # [N, K, S]
        jax.vmap(jax.jacrev(lambda t, s: bspline_basis(s, t, degree)), in_axes=(None, 0))
    )(knots, x)
    d_x = derivative(x, knots, degree)
    np.testing.assert_allclose(d_x_rev, d_x, atol=1e-10)
    np.testing.assert_allclose(d_t.sum(-1), -d_x, atol=1e-10)  # translation
    np.testing.assert_allclose(d_t @ knots, -x[:, None] * d_x, atol=1e-10)  # scaling


@pytest.mark.parametrize("degree", [1, 3])
def test_endpoint_gradients(x64, degree):
    lo, hi = jnp.float64(-0.7), jnp.float64(1.3)
    x = jnp.linspace(-0.69, 1.29, 23)

    def basis_of_ends(lo, hi):
        return bspline_basis(x, uniform_knots(5, degree, lo, hi), degree)

    d_lo, d_hi = jax.jit(jax.jacfwd(basis_of_ends, argnums=(0, 1)))(lo, hi)
    d_x = derivative(x, uniform_knots(5, degree, lo, hi), degree)
    x_hat = ((x - lo) / (hi - lo))[:, None]
    np.testing.assert_allclose(d_lo, (x_hat - 1) * d_x, atol=1e-10)
    np.testing.assert_allclose(d_hi, -x_hat * d_x, atol=1e-10)


def test_repeated_knots_finite_values_and_gradients():
    knots = jnp.array([-1.0, -1.0, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    x = jnp.array([-1.0, -0.75, 0.0, 0.25, 0.999, 3.0])

    def total(x, t):
        return (basis(x, t, 3) ** 2).sum()

    gx, gt = jax.jit(jax.grad(total, argnums=(0, 1)))(x, knots)
    assert bool(jnp.all(jnp.isfinite(basis(x, knots, 3))))
    assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.all(jnp.isfinite(gt)))
    assert bool(jnp.all(jnp.isfinite(derivative(x, knots, 3))))


def test_far_outside_float32_finite_gradients():
    knots = uniform_knots(5, 3)
    x = jnp.array([-1e30, -1e6, 1e6, 1e30], jnp.float32)
    grad = jax.jit(jax.grad(lambda x, t: bspline_basis(x, t, 3).sum(), argnums=(0, 1)))
    gx, gt = grad(x, knots)
    np.testing.assert_array_equal(gx, 0.0)
    np.testing.assert_array_equal(gt, 0.0)


@pytest.mark.parametrize("lead", [(7,), (2, 3), (2, 1, 3)])
def test_leading_shapes(lead):
    x = np.random.default_rng(0).uniform(-1.2, 1.2, lead).astype(np.float32)
    b = basis(x, uniform_knots(5, 3), 3)
    chex.assert_shape(b, (*lead, 8))
    np.testing.assert_allclose(b.reshape(-1, 8), basis(x.reshape(-1), uniform_knots(5, 3), 3))


def test_jit_vmap_consistency():
    knots = uniform_knots(5, 3)
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 6)).astype(np.float32)
    batched = basis(x, knots, 3)
    mapped = jax.jit(jax.vmap(lambda r: bspline_basis(r, knots, 3)))(x)
    rows = jnp.stack([basis(r, knots, 3) for r in x])
    chex.assert_trees_all_close(batched, mapped, rows, atol=1e-6)


def test_bad_knots_raise():
    with pytest.raises(ValueError, match="knots"):
        basis(jnp.zeros(3), jnp.zeros(4), 3)
    with pytest.raises(ValueError, match="degree"):
        basis(jnp.zeros(3), jnp.arange(8.0), -1)


def test_nearly_colliding_knots_finite_gradients():
    """Knot gaps of 1e-30 (a softplus increment that almost underflowed) keep gradients finite."""
    knots = jnp.array([-1.0, -0.6, -0.2, -0.2 + 1e-30, 0.2, 0.6, 1.0, 1.4, 1.8], jnp.float32)
    x = jnp.linspace(-1.0, 1.0, 41, dtype=jnp.float32)
    grad = jax.jit(jax.grad(lambda x, t: bspline_basis(x, t, 3).sum(), argnums=(0, 1)))
    gx, gt = grad(x, knots)
    assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.all(jnp.isfinite(gt)))
