"""t3kan_jax/ttt/conv.py: the shifted-add depthwise causal conv against flax's nn.Conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from t3kan_jax.ttt.conv import DepthwiseCausalConv

B, T, D = 2, 11, 6


def reference(width, dtype):
    return nn.Conv(D, (width,), padding=[(width - 1, 0)], feature_group_count=D, dtype=dtype)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_same_parameters_outputs_and_gradients_as_nn_conv(width):
    x = jax.random.normal(jax.random.key(0), (B, T, D))
    conv, ref = DepthwiseCausalConv(width), reference(width, jnp.float32)
    params = jax.jit(conv.init)(jax.random.key(1), x)
    ref_params = jax.jit(ref.init)(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)  # layout and init
    params = jax.tree.map(lambda a: a + 0.3, params)  # a nonzero bias

    def loss(module):
        return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    with jax.default_matmul_precision("highest"):
        got = jax.jit(jax.value_and_grad(loss(conv), argnums=(0, 1)))(params, x)
        want = jax.jit(jax.value_and_grad(loss(ref), argnums=(0, 1)))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


def test_causal_and_bf16_like_nn_conv():
    x = jax.random.normal(jax.random.key(0), (B, T, D))
    conv = DepthwiseCausalConv(4, dtype=jnp.bfloat16)
    params = conv.init(jax.random.key(1), x)
    y = conv.apply(params, x)
    assert y.dtype == jnp.bfloat16 and params["params"]["kernel"].dtype == jnp.float32
    # nn.Conv in float32 on the bf16-rounded operands: the output differs by its bf16 rounding.
    rounded = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), (params, x))
    with jax.default_matmul_precision("highest"):
        want = reference(4, jnp.float32).apply(*rounded)
    np.testing.assert_allclose(np.float32(y), want, rtol=2**-8, atol=1e-6)
    # Input 3 reaches outputs 3..6 only.
    changed = conv.apply(params, x.at[:, 3].add(1.0))
    np.testing.assert_array_equal(changed[:, :3], y[:, :3])
    assert np.asarray(changed[:, 3:7] != y[:, 3:7]).any(axis=-1).all()
    np.testing.assert_array_equal(changed[:, 7:], y[:, 7:])


def test_backward_saves_only_the_rounded_input_and_kernel(capsys):
    # Inside a scan over layers every saved residual is stacked per layer: the shifted float32
    # slices would cost width x 2x a bf16 input per conv.
    x = jnp.ones((B, T, D))
    conv = DepthwiseCausalConv(4, dtype=jnp.bfloat16)
    params = conv.init(jax.random.key(0), x)
    print_saved_residuals(lambda p, x: jnp.sum(conv.apply(p, x).astype(jnp.float32)), params, x)
    saved = sorted(line.split()[0] for line in capsys.readouterr().out.splitlines())
    assert saved == [f"bf16[{B},{T},{D}]", f"bf16[4,1,{D}]"]
