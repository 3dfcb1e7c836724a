"""LaCTLayer: block-causal fast weights, window attention, padding, dtype, config."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt.lact_layer import LaCTConfig, LaCTLayer

B, T, D, H, N = 2, 8, 8, 2, 4


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _x(seed=0, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), (B, T, D), dtype)


def _dependence(layer, x):
    """`[t, s]`: whether output t of row 0 depends on input s (the Jacobian's non-zeros)."""
    params = jax.jit(layer.init)(jax.random.key(0), x)
    jac = jax.jit(jax.jacrev(lambda x0: layer.apply(params, x0[None])[0]))(x[0])  # [T, D, T, D]
    return np.abs(np.asarray(jac)).sum(axis=(1, 3)) > 0.0


@pytest.mark.parametrize("muon", [True, False])
def test_fast_weights_alone_are_block_causal(muon):
    """No convs, no attention: output t reads input t and the chunks before its own, nothing else
    (apply-then-update: a chunk's own keys never reach its outputs)."""
    cfg = LaCTConfig(
        width=D, num_heads=H, mini_batch_size=N, window=0, conv_width=0, share_qk=False, muon=muon
    )
    chunk = np.arange(T) // N
    expected = (chunk[None, :] < chunk[:, None]) | np.eye(T, dtype=bool)
    np.testing.assert_array_equal(_dependence(LaCTLayer(cfg), _x()), expected)


def test_window_attention_reaches_back_window_tokens():
    """With a window of 3 and no convs, output t also reads inputs t−2..t inside its chunk."""
    cfg = LaCTConfig(
        width=D, num_heads=H, mini_batch_size=N, window=3, conv_width=0, share_qk=False
    )
    t, s = np.arange(T)[:, None], np.arange(T)[None, :]
    expected = ((s // N) < (t // N)) | ((s <= t) & (s >= t - 2))
    np.testing.assert_array_equal(_dependence(LaCTLayer(cfg), _x()), expected)


def test_padding_and_shapes():
    """A masked run equals the unmasked one on real tokens; SwiGLU hidden = hidden_ratio · d."""
    layer = LaCTLayer(LaCTConfig(width=D, num_heads=H, mini_batch_size=N, window=N, hidden_ratio=2))
    x = _x()
    params = jax.jit(layer.init)(jax.random.key(0), x)
    chex.assert_shape(params["params"]["inner"]["W1"], (H, D // H, 2 * D // H))
    cut = 5
    x2 = x.at[:, cut:].set(0.0)
    mask = (jnp.arange(T) < cut).astype(jnp.float32)[None].repeat(B, 0)
    apply = jax.jit(layer.apply)
    chex.assert_trees_all_close(
        apply(params, x2, mask)[:, :cut], apply(params, x)[:, :cut], atol=1e-6
    )


def test_bfloat16_input_gives_bfloat16_output():
    layer = LaCTLayer(LaCTConfig(width=D, num_heads=H, mini_batch_size=N, dtype="bfloat16"))
    x = _x(dtype=jnp.bfloat16)
    y = jax.eval_shape(layer.apply, jax.eval_shape(layer.init, jax.random.key(0), x), x)
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_shape(y, (B, T, D))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"muon": 1}, "LaCTConfig.muon=1"),
        ({"renorm": "yes"}, "LaCTConfig.renorm='yes'"),
        ({"window": -1}, "LaCTConfig.window=-1"),
        ({"hidden_ratio": 0}, "LaCTConfig.hidden_ratio=0"),
        ({"ns_steps": 0}, "LaCTConfig.ns_steps=0"),
        ({"mini_batch_size": 0}, "mini_batch_size=0"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LaCTConfig(width=D, num_heads=H, **kwargs)
