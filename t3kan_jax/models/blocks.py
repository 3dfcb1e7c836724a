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
    def __call__(self, h_BTD, mask_BT=None, *, cache=None, position=None, cache_len=None):
        del mask_BT  # causal attention: right padding cannot reach real tokens
        cfg = self.cfg
        decoding = cache is not None or cache_len is not None
        attn = CausalSelfAttention(
            num_heads=cfg.num_heads,
            dense=self.dense,
            rope_theta=cfg.rope_theta,
            implementation=attention_impl(cfg),
            name="attn",
        )
        x_BTD = rms_norm(cfg, "attn_norm")(h_BTD)
        if decoding:
            attn_BTD, new_cache = attn(x_BTD, cache=cache, position=position, cache_len=cache_len)
        else:
            attn_BTD = attn(x_BTD)
        h_BTD = h_BTD + attn_BTD.astype(h_BTD.dtype)
        mlp_out_BTD = self.mlp(name="mlp")(rms_norm(cfg, "mlp_norm")(h_BTD))
        h_BTD = h_BTD + mlp_out_BTD.astype(h_BTD.dtype)
        return (h_BTD, new_cache) if decoding else h_BTD


class CausalLM(nn.Module):
    """Token embedding -> `depth` blocks -> final RMSNorm -> untied LM head; logits float32.

    Subclasses define `make_block(name)` and may override `make_head()`. The residual stream is
    kept in float32; each sub-layer computes in `cfg.dtype`.

    Decoding (t3kan_jax/generate/decode.py): `cache_len=L` runs the tokens (from position 0) in
    the parallel form and returns `(logits, cache)`, the cache sized for L positions in all;
    `cache=cache` runs one token `[B, 1]` at `cache["position"]`: `(logits, next cache)`. Blocks
    take the same keywords (`cache`, `position`, `cache_len`) and then return `(h, block cache)`.
    """

    cfg: ModelConfig

    def make_block(self, name: str) -> nn.Module:
        """One residual block, called as `block(h_BTD, mask_BT)` (decode keywords: see above)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_block")

    def make_head(self) -> nn.Module:
        """The LM head: [..., D] -> [..., V]."""
        return dense_factory(self.cfg)(self.cfg.vocab_size, name="lm_head")

    def maybe_remat(self, block_cls: type[nn.Module]) -> type[nn.Module]:
        """`block_cls` wrapped in nn.remat when `cfg.remat` (recompute it in the backward pass)."""
        return nn.remat(block_cls) if self.cfg.remat else block_cls

    @nn.compact
    def __call__(self, tokens_BT, mask_BT=None, *, cache=None, cache_len=None):
        cfg = self.cfg
        if tokens_BT.ndim != 2:
            raise ValueError(f"tokens_BT must be [batch, time], got shape {tokens_BT.shape}")
        if tokens_BT.shape[1] > cfg.max_len:
            raise ValueError(
                f"sequence length {tokens_BT.shape[1]} exceeds ModelConfig.max_len={cfg.max_len}"
            )
        decoding = cache is not None or cache_len is not None
        if decoding:
            check_decode_args(cfg, tokens_BT.shape[1], cache, cache_len)
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
        position = None if cache is None else cache["position"]
        caches = []
        for i in range(cfg.depth):
            block = self.make_block(f"block_{i}")
            if decoding:
                block_cache = None if cache is None else cache["blocks"][i]
                h_BTD, block_cache = block(
                    h_BTD, mask_BT, cache=block_cache, position=position, cache_len=cache_len
                )
                caches.append(block_cache)
            else:
                h_BTD = block(h_BTD, mask_BT)
        h_BTD = rms_norm(cfg, "final_norm")(h_BTD)
        logits_BTV = self.make_head()(h_BTD).astype(jnp.float32)
        if not decoding:
            return logits_BTV
        next_position = jnp.int32(tokens_BT.shape[1]) if cache is None else position + 1
        return logits_BTV, {"position": next_position, "blocks": caches}


def check_decode_args(cfg: ModelConfig, seq_len: int, cache, cache_len) -> None:
    """ValueError for a bad prefill (`cache_len`) or decode step (`cache`) call."""
    if (cache is None) == (cache_len is None):
        raise ValueError("decoding takes either cache_len (prefill) or cache (a step), not both")
    if cfg.remat:
        raise ValueError(
            "decoding needs ModelConfig.remat=False (remat only saves training memory)"
        )
    if cache is not None and seq_len != 1:
        raise ValueError(f"a decode step takes tokens of shape [batch, 1], got length {seq_len}")
    if cache_len is not None and not seq_len <= cache_len <= cfg.max_len:
        raise ValueError(
            f"cache_len={cache_len}: must lie in [prompt length {seq_len}, "
            f"ModelConfig.max_len={cfg.max_len}]"
        )
