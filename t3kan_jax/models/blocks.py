"""The language-model skeleton shared by every arch, and the pre-norm attention block."""

import functools

import flax.linen as nn
import jax.numpy as jnp

from t3kan_jax.models.config import ModelConfig
from t3kan_jax.models.layers import CausalSelfAttention, DenseFactory, ModuleFactory, RMSNorm


def compute_dtype(cfg: ModelConfig) -> jnp.dtype:
    """The dtype matmuls and activations run in."""
    return jnp.dtype(cfg.dtype)


def param_dtype(cfg: ModelConfig) -> jnp.dtype:
    """The dtype parameters are stored in."""
    return jnp.dtype(cfg.param_dtype)


def dense_factory(cfg: ModelConfig, kernel_init=None) -> DenseFactory:
    """Bias-free nn.Dense in the config's dtypes, normal(init_std) init as in the TTT-LM code."""
    return functools.partial(
        nn.Dense,
        use_bias=False,
        dtype=compute_dtype(cfg),
        param_dtype=param_dtype(cfg),
        kernel_init=kernel_init or nn.initializers.normal(cfg.init_std),
    )


def rms_norm(cfg: ModelConfig, name: str) -> RMSNorm:
    """RMSNorm in the config's dtypes."""
    return RMSNorm(dtype=compute_dtype(cfg), param_dtype=param_dtype(cfg), name=name)


def attention_impl(cfg: ModelConfig) -> str | None:
    """`implementation` argument of jax.nn.dot_product_attention ("auto" -> None)."""
    return None if cfg.attention_impl == "auto" else cfg.attention_impl


class AttentionBlock(nn.Module):
    """Pre-norm Transformer block: `h += Attn(RMSNorm h); h += MLP(RMSNorm h)`.

    `dense` builds the attention projections; `mlp` builds the MLP (`mlp(name=...)`).
    """

    cfg: ModelConfig
    dense: DenseFactory
    mlp: ModuleFactory

    @nn.compact
    def __call__(self, h_BTD, mask_BT=None):
        del mask_BT  # causal attention: right padding cannot reach real tokens
        cfg = self.cfg
        attn = CausalSelfAttention(
            num_heads=cfg.num_heads,
            dense=self.dense,
            rope_theta=cfg.rope_theta,
            implementation=attention_impl(cfg),
            name="attn",
        )
        h_BTD = h_BTD + attn(rms_norm(cfg, "attn_norm")(h_BTD)).astype(h_BTD.dtype)
        mlp_out_BTD = self.mlp(name="mlp")(rms_norm(cfg, "mlp_norm")(h_BTD))
        return h_BTD + mlp_out_BTD.astype(h_BTD.dtype)


class CausalLM(nn.Module):
    """Token embedding -> `depth` blocks -> final RMSNorm -> untied LM head; logits float32.

    Subclasses define `make_block(name)` and may override `make_head()`. The residual stream is
    kept in float32; each sub-layer computes in `cfg.dtype`.
    """

    cfg: ModelConfig

    def make_block(self, name: str) -> nn.Module:
        """One residual block, called as `block(h_BTD, mask_BT)`."""
        raise NotImplementedError(f"{type(self).__name__} must define make_block")

    def make_head(self) -> nn.Module:
        """The LM head: [..., D] -> [..., V]."""
        return dense_factory(self.cfg)(self.cfg.vocab_size, name="lm_head")

    def maybe_remat(self, block_cls: type[nn.Module]) -> type[nn.Module]:
        """`block_cls` wrapped in nn.remat when `cfg.remat` (recompute it in the backward pass)."""
        return nn.remat(block_cls) if self.cfg.remat else block_cls

    @nn.compact
    def __call__(self, tokens_BT, mask_BT=None):
        cfg = self.cfg
        if tokens_BT.ndim != 2:
            raise ValueError(f"tokens_BT must be [batch, time], got shape {tokens_BT.shape}")
        if tokens_BT.shape[1] > cfg.max_len:
            raise ValueError(
                f"sequence length {tokens_BT.shape[1]} exceeds ModelConfig.max_len={cfg.max_len}"
            )
        if mask_BT is not None and mask_BT.shape != tokens_BT.shape:
            raise ValueError(
                f"mask_BT shape {mask_BT.shape} must equal tokens_BT shape {tokens_BT.shape}"
            )
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.width,
            embedding_init=nn.initializers.normal(cfg.init_std),
            dtype=compute_dtype(cfg),
            param_dtype=param_dtype(cfg),
            name="embed",
        )
        h_BTD = embed(tokens_BT).astype(jnp.float32)
        for i in range(cfg.depth):
            h_BTD = self.make_block(f"block_{i}")(h_BTD, mask_BT)
        h_BTD = rms_norm(cfg, "final_norm")(h_BTD)
        return self.make_head()(h_BTD).astype(jnp.float32)
