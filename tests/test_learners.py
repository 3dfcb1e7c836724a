"""Inner learners: `jax.grad` of the inner loss against the TTT paper's analytic gradients."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import BSpline

from t3kan_jax.ttt import Learner, get_learner, inner_loop, registered_learners
from t3kan_jax.ttt.learners import base, kan, layer_norm, register_learner

KINDS = ("linear", "mlp", "kan")
F = 6


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _params(kind, key, **options):
    """Learner params with non-trivial LayerNorm scale and bias (so γ, β enter the gradients)."""
    k_init, k_scale, k_bias = jax.random.split(key, 3)
    params = get_learner(kind).init(k_init, F, init_std=0.5, dtype=jnp.float64, **options)
    params["ln_scale"] = 1.0 + 0.3 * jax.random.normal(k_scale, (F,), jnp.float64)
    params["ln_bias"] = 0.3 * jax.random.normal(k_bias, (F,), jnp.float64)
    return params


def _token(key):
    k_k, k_v = jax.random.split(key)
    return jax.random.normal(k_k, (F,), jnp.float64), jax.random.normal(k_v, (F,), jnp.float64)


def _grad(kind, params, k, v):
    learner = get_learner(kind)
    inner, fixed = learner.split(params)

    def loss(w):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k), k, v)

    return jax.grad(loss)(inner)


def _ln_delta(params, z, y):
    """`∂ℓ/∂z = (1/(dσ)) (d ĝ − Σ ĝ − ẑ Σ ĝ ẑ)`, `ĝ = γ (LN(z) − y)` (TTT paper appendix)."""
    d = z.shape[-1]
    mu, var = z.mean(), z.var()
    sigma = np.sqrt(var + base.LN_EPS)
    zhat = (z - mu) / sigma
    ghat = params["ln_scale"] * (params["ln_scale"] * zhat + params["ln_bias"] - y)
    return (d * ghat - ghat.sum() - zhat * (ghat * zhat).sum()) / (d * sigma)


def _gelu_tanh_derivative(x):
    c = np.sqrt(2.0 / np.pi)
    u = c * (x + 0.044715 * x**3)
    th = np.tanh(u)
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th**2) * c * (1.0 + 3 * 0.044715 * x**2)


def test_linear_gradient_with_layer_norm(x64):
    params = _params("linear", jax.random.key(0))
    k, v = _token(jax.random.key(1))
    delta = _ln_delta(params, k @ params["W"] + params["b"], v - k)
    grads = _grad("linear", params, k, v)
    chex.assert_trees_all_close(grads, {"W": np.outer(k, delta), "b": delta}, atol=1e-12)


def _l2_loss(params, z_O, k_F, v_F):
    return 0.5 * jnp.sum(jnp.square(z_O - (v_F - k_F)))


NO_LN = dataclasses.replace(
    get_learner("linear"), loss=_l2_loss, readout=lambda params, z_O, q_F: q_F + z_O
)


def test_linear_gradient_without_layer_norm(x64):
    params = _params("linear", jax.random.key(2))
    k, v = _token(jax.random.key(3))
    delta = k @ params["W"] + params["b"] - (v - k)
    inner, fixed = NO_LN.split(params)
    grads = jax.grad(lambda w: NO_LN.loss(params, NO_LN.apply({**fixed, **w}, k), k, v))(inner)
    chex.assert_trees_all_close(grads, {"W": np.outer(k, delta), "b": delta}, atol=1e-12)


def test_swapped_loss_runs_in_both_forms(x64):
    """A learner with another loss (here without LN) needs no change to the inner loop."""
    params = _params("linear", jax.random.key(4))
    keys = jax.random.split(jax.random.key(5), 3)
    q, k, v = (0.5 * jax.random.normal(key, (7, F), jnp.float64) for key in keys)
    lr = jnp.linspace(0.05, 0.2, 7)
    out_p, final_p = inner_loop(NO_LN, params, q, k, v, lr, mini_batch_size=3, form="primal")
    out_d, final_d = inner_loop(NO_LN, params, q, k, v, lr, mini_batch_size=3, form="dual")
    chex.assert_trees_all_close((out_p, final_p), (out_d, final_d), atol=1e-10)


def test_mlp_gradient_with_layer_norm_and_gelu(x64):
    params = _params("mlp", jax.random.key(6))
    k, v = _token(jax.random.key(7))
    z1 = k @ params["W1"] + params["b1"]
    a = jax.nn.gelu(z1)
    g2 = _ln_delta(params, a @ params["W2"] + params["b2"], v - k)
    g1 = (g2 @ params["W2"].T) * _gelu_tanh_derivative(np.asarray(z1))
    expected = {"W1": np.outer(k, g1), "b1": g1, "W2": np.outer(a, g2), "b2": g2}
    chex.assert_trees_all_close(_grad("mlp", params, k, v), expected, atol=1e-12)


def _scipy_bases(x_I, knots, degree):
    """`[I, K]` B-spline bases from scipy's basis elements (NaN outside the support -> 0)."""
    t = np.asarray(knots)
    n_basis = len(t) - degree - 1
    cols = [
        np.nan_to_num(BSpline.basis_element(t[g : g + degree + 2], extrapolate=False)(x_I))
        for g in range(n_basis)
    ]
    return np.stack(cols, axis=-1)


def test_kan_gradient_is_features_times_deltas(x64):
    params = _params("kan", jax.random.key(8), grid_size=4, degree=3, grid_range=(-2.0, 2.0))
    k, v = _token(jax.random.key(9))
    silu_k = np.asarray(jax.nn.silu(k))
    b_IK = _scipy_bases(np.asarray(k), params["knots"], 3)
    z = silu_k @ params["W_base"] + np.einsum("ik,iok->o", b_IK, params["C"]) + params["b"]
    delta = _ln_delta(params, z, v - k)
    expected = {
        "W_base": np.outer(silu_k, delta),
        "C": b_IK[:, None, :] * delta[None, :, None],
        "b": delta,
    }
    chex.assert_trees_all_close(_grad("kan", params, k, v), expected, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_dense_form_composes_to_apply(kind, x64):
    learner = get_learner(kind)
    params = _params(kind, jax.random.key(10))
    x, _ = _token(jax.random.key(11))
    dense = learner.dual.to_dense(params)
    z = x
    for phi, (w, b) in zip(learner.dual.features, dense, strict=True):
        z = phi(params, z) @ w + b
    np.testing.assert_allclose(z, learner.apply(params, x), atol=1e-12)
    chex.assert_trees_all_equal(learner.dual.from_dense(params, dense), params)


@pytest.mark.parametrize(
    ("kind", "shapes"),
    [
        ("linear", {"W": (F, F), "b": (F,), "ln_scale": (F,), "ln_bias": (F,)}),
        (
            "mlp",
            {"W1": (F, 4 * F), "b1": (4 * F,), "W2": (4 * F, F), "b2": (F,)}
            | {"ln_scale": (F,), "ln_bias": (F,)},
        ),
        (
            "kan",
            {"W_base": (F, F), "C": (F, F, 8), "b": (F,), "knots": (12,)}
            | {"ln_scale": (F,), "ln_bias": (F,)},
        ),
    ],
)
def test_init_shapes(kind, shapes):
    params = get_learner(kind).init(jax.random.key(0), F)
    assert set(params) == set(shapes)
    for name, shape in shapes.items():
        chex.assert_shape(params[name], shape)
        chex.assert_type(params[name], jnp.float32)
    chex.assert_trees_all_equal(params["ln_scale"], jnp.ones(F))


def test_kan_init_knots_and_degree():
    params = get_learner("kan").init(jax.random.key(0), F, grid_size=5, degree=2)
    assert kan.spline_degree(params) == 2
    np.testing.assert_allclose(params["knots"], -3.0 + 1.2 * (np.arange(10) - 2), atol=1e-6)
    with pytest.raises(ValueError, match="grid_range"):
        get_learner("kan").init(jax.random.key(0), F, grid_range=(1.0, -1.0))


def test_kan_outside_grid_keeps_only_the_base_path():
    params = get_learner("kan").init(jax.random.key(0), F)
    x = jnp.full((F,), 10.0)
    np.testing.assert_allclose(
        kan.apply(params, x), jax.nn.silu(x) @ params["W_base"] + params["b"], rtol=1e-6
    )


def test_inner_keys_leave_layer_norm_and_knots_fixed():
    assert get_learner("linear").inner_keys == ("W", "b")
    assert get_learner("mlp").inner_keys == ("W1", "b1", "W2", "b2")
    assert get_learner("kan").inner_keys == ("W_base", "C", "b")
    _, fixed = get_learner("kan").split(get_learner("kan").init(jax.random.key(0), F))
    assert set(fixed) == {"ln_scale", "ln_bias", "knots"}


def test_split_reports_missing_entries():
    with pytest.raises(ValueError, match=r"lack the inner entries \['b'\]"):
        get_learner("linear").split({"W": jnp.eye(2), "ln_scale": jnp.ones(2)})


def test_registry():
    assert set(KINDS) <= set(registered_learners())
    with pytest.raises(ValueError, match=r"unknown inner learner kind='rbf'.*'kan'.*'linear'"):
        get_learner("rbf")
    with pytest.raises(ValueError, match="already registered"):
        register_learner("linear", NO_LN)
    with pytest.raises(ValueError, match="expected a Learner"):
        register_learner("bad", object())
    probe = Learner(init=lambda key, width: {}, apply=lambda p, x: x, inner_keys=())
    try:
        assert register_learner("test-probe", probe) is probe
        assert get_learner("test-probe") is probe
    finally:
        base._REGISTRY.pop("test-probe")


def test_layer_norm_matches_definition():
    z = jnp.array([1.0, 2.0, 4.0, -3.0])
    params = {"ln_scale": jnp.array([1.0, 2.0, 0.5, 1.0]), "ln_bias": jnp.array([0.0, 1.0, 0, 0])}
    zhat = (z - z.mean()) / jnp.sqrt(z.var() + 1e-6)
    np.testing.assert_allclose(
        layer_norm(params, z), zhat * params["ln_scale"] + params["ln_bias"], rtol=1e-6
    )
