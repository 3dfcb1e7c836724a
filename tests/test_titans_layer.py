"""TitansLayer: closed gates give the TTT layer with s_i = 1; causal; padding; dtype; config."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt.layer import TTTConfig, TTTLayer
from t3kan_jax.ttt.titans_layer import TitansConfig, TitansLayer

B, T, D, H, N = 2, 10, 8, 2, 4


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _x(seed=0, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), (B, T, D), dtype)


@pytest.mark.parametrize("inner", ["linear", "mlp"])
def test_closed_gates_equal_the_ttt_layer_with_unit_token_scale(inner):
    """η = α = 0 (gate biases −1e9): every shared weight equal, TTT's δ_i = 1 − 1/i (s_i = 1)."""
    common = {"width": D, "num_heads": H, "inner": inner, "mini_batch_size": N}
    titans = TitansLayer(TitansConfig(**common))
    params = jax.jit(titans.init)(jax.random.key(0), _x())["params"]
    closed = {"kernel": jnp.zeros((D, H)), "bias": jnp.full((H,), -1e9)}
    params = {**params, "momentum_gate": closed, "forget_gate": closed}
    ttt_params = {k: v for k, v in params.items() if not k.endswith("_gate")}
    ttt_params["lr_gate"] = params["lr_gate"]
    ttt_params["token_offset"] = 1.0 - 1.0 / jnp.arange(1, N + 1)
    ttt = TTTLayer(TTTConfig(**common))
    chex.assert_trees_all_equal_structs(
        ttt_params, jax.eval_shape(ttt.init, jax.random.key(0), _x())["params"]
    )
    x = _x(1)
    chex.assert_trees_all_close(
        jax.jit(titans.apply)({"params": params}, x),
        jax.jit(ttt.apply)({"params": ttt_params}, x),
        atol=1e-5,
        rtol=1e-5,
    )


def test_gates_start_where_configured():
    cfg = TitansConfig(width=D, num_heads=H, momentum_bias_init=1.0, forget_bias_init=-3.0)
    params = jax.jit(TitansLayer(cfg).init)(jax.random.key(0), _x())["params"]
    np.testing.assert_array_equal(params["momentum_gate"]["bias"], np.full(H, 1.0))
    np.testing.assert_array_equal(params["forget_gate"]["bias"], np.full(H, -3.0))


def test_causal_and_padding():
    """Later inputs (real or padding) never change earlier outputs; a masked run equals the
    unmasked one on the real tokens."""
    layer = TitansLayer(TitansConfig(width=D, num_heads=H, mini_batch_size=N))
    x = _x()
    params = jax.jit(layer.init)(jax.random.key(0), x)
    apply = jax.jit(layer.apply)
    y = apply(params, x)
    cut = 5
    x2 = x.at[:, cut:].add(jax.random.normal(jax.random.key(1), (B, T - cut, D)))
    mask = (jnp.arange(T) < cut).astype(jnp.float32)[None].repeat(B, 0)
    y2 = apply(params, x2)
    chex.assert_trees_all_close(y2[:, :cut], y[:, :cut], atol=1e-6)
    assert float(jnp.abs(y2[:, cut:] - y[:, cut:]).max()) > 1e-4
    chex.assert_trees_all_close(apply(params, x2, mask)[:, :cut], y[:, :cut], atol=1e-6)


def test_bfloat16_input_gives_bfloat16_output():
    layer = TitansLayer(TitansConfig(width=D, num_heads=H, mini_batch_size=N, dtype="bfloat16"))
    x = _x(dtype=jnp.bfloat16)
    y = jax.eval_shape(layer.apply, jax.eval_shape(layer.init, jax.random.key(0), x), x)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_shape(y, (B, T, D))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum_bias_init": "0"}, "TitansConfig.momentum_bias_init='0'"),
        ({"forget_bias_init": True}, "TitansConfig.forget_bias_init=True"),
        ({"form": "both"}, "form='both'"),
        ({"inner": "rbf"}, "unknown inner learner"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TitansConfig(width=D, num_heads=H, **kwargs)
