"""Shared Flax layers: RMSNorm, SwiGLU, causal depthwise conv, causal self-attention with RoPE.

RoPE itself is `t3kan_jax.ttt.rope.apply_rope`, the one the TTT layer uses.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from t3kan_jax.ttt.conv import DepthwiseCausalConv
from t3kan_jax.ttt.rope import apply_rope

# A factory of modules, e.g. `functools.partial(nn.Dense, use_bias=False)`.
ModuleFactory = Callable[..., nn.Module]
# A factory of Dense-like layers: `dense(features, name=...)` returns a module mapping [..., I]
# to [..., features]; nn.Dense for the Transformer, KANDense for the Kansformer.
DenseFactory = ModuleFactory


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): `x / rms(x) * scale`, statistics in float32."""

    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BTD):
        scale_D = self.param("scale", nn.initializers.ones, (x_BTD.shape[-1],), self.param_dtype)
        x32_BTD = x_BTD.astype(jnp.float32)
        inv_BT1 = jax.lax.rsqrt(jnp.mean(jnp.square(x32_BTD), axis=-1, keepdims=True) + self.eps)
        return (x32_BTD * inv_BT1).astype(self.dtype) * scale_D.astype(self.dtype)


class SwiGLU(nn.Module):
    """SwiGLU MLP (Shazeer 2020): `w2(silu(w1 x) * w3 x)`, layer names as in the TTT-LM code."""

    hidden: int
    dense: DenseFactory

    @nn.compact
    def __call__(self, x_BTD):
        width = x_BTD.shape[-1]
        gate_BTM = self.dense(self.hidden, name="w1")(x_BTD)
        up_BTM = self.dense(self.hidden, name="w3")(x_BTD)
        return self.dense(width, name="w2")(nn.silu(gate_BTM) * up_BTM)


class CausalConv(DepthwiseCausalConv):
    """Depthwise causal conv along time (Mamba-style) whose parameters sit under `conv/`."""

    @nn.compact
    def __call__(self, x_BTD):
        conv = DepthwiseCausalConv(self.width, self.dtype, self.param_dtype, name="conv")
        return conv(x_BTD)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE on Q and K along the sequence axis.

    Padding needs no mask: with right padding, real tokens only attend to earlier (real) tokens.
    Decoding: `cache_len=L` also returns a KV cache of L positions holding these tokens (which
    start at position 0); `cache=..., position=p` attends one token at p to the cached keys and
    writes its own: `(y, cache)` either way.
    """

    num_heads: int
    dense: DenseFactory
    rope_theta: float = 10000.0
    implementation: str | None = None  # jax.nn.dot_product_attention backend; None = JAX picks

    @nn.compact
    def __call__(self, x_BTD, *, cache=None, position=None, cache_len=None):
        batch, seq_len, width = x_BTD.shape
        head_dim = width // self.num_heads

        def heads(name):
            y_BTD = self.dense(width, name=name)(x_BTD)
            return y_BTD.reshape(batch, seq_len, self.num_heads, head_dim)

        q_BTHF, k_BTHF, v_BTHF = heads("wq"), heads("wk"), heads("wv")
        positions_T = jnp.arange(seq_len) if cache is None else position + jnp.arange(seq_len)
        q_BTHF = apply_rope(q_BTHF, positions_T, self.rope_theta)
        k_BTHF = apply_rope(k_BTHF, positions_T, self.rope_theta)
        if cache is None:
            out_BTHF = jax.nn.dot_product_attention(
                q_BTHF, k_BTHF, v_BTHF, is_causal=True, implementation=self.implementation
            )
        else:
            if seq_len != 1 or position is None:
                raise ValueError(f"a decode step takes one token and its position, got T={seq_len}")
            start = (0, position, 0, 0)
            k_BSHF = jax.lax.dynamic_update_slice(
                cache["k"], k_BTHF.astype(cache["k"].dtype), start
            )
            v_BSHF = jax.lax.dynamic_update_slice(
                cache["v"], v_BTHF.astype(cache["v"].dtype), start
            )
            cached_S = jnp.arange(k_BSHF.shape[1]) <= position
            out_BTHF = jax.nn.dot_product_attention(
                q_BTHF, k_BSHF, v_BSHF, mask=cached_S[None, None, None, :], implementation="xla"
            )
            new_cache = {"k": k_BSHF, "v": v_BSHF}
        if cache_len is not None:
            empty = jnp.zeros((batch, cache_len, self.num_heads, head_dim), k_BTHF.dtype)
            new_cache = {
                "k": empty.at[:, :seq_len].set(k_BTHF),
                "v": empty.at[:, :seq_len].set(v_BTHF),
            }
        y_BTD = self.dense(width, name="wo")(out_BTHF.reshape(batch, seq_len, width))
        return y_BTD if cache is None and cache_len is None else (y_BTD, new_cache)
