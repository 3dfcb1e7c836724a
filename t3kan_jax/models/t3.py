"""T3 language models (T3Lin / T3MLP / T3KAN): TTT layers in the TTT paper's backbone."""

import dataclasses

import flax.linen as nn

from t3kan_jax.models.blocks import CausalLM, compute_dtype, dense_factory, param_dtype, rms_norm
from t3kan_jax.models.config import ModelConfig
from t3kan_jax.models.layers import CausalConv, SwiGLU
from t3kan_jax.ttt.decode import conv_after_window
from t3kan_jax.ttt.lact_layer import LaCTConfig, LaCTLayer
from t3kan_jax.ttt.layer import TTTConfig, TTTLayer
from t3kan_jax.ttt.titans_layer import TitansConfig, TitansLayer


def ttt_config(cfg: ModelConfig) -> TTTConfig:
    """The TTT layer's config; Q and K share one projection when the Q/K convs exist."""
    return TTTConfig(
        width=cfg.width,
        num_heads=cfg.num_heads,
        inner=cfg.inner,
        mini_batch_size=cfg.mini_batch_size,
        base_lr=cfg.base_lr,
        form=cfg.ttt_form,
        conv_width=cfg.conv_width,
        share_qk=cfg.conv_width > 0,
        rope_theta=cfg.rope_theta,
        rope=cfg.ttt_rope,
        qk_norm=cfg.ttt_qk_norm,
        impl=cfg.ttt_impl,
        kan_grid_size=cfg.kan_grid_size,
        kan_degree=cfg.kan_degree,
        kan_grid_min=cfg.kan_grid_min,
        kan_grid_max=cfg.kan_grid_max,
        remat_every=cfg.remat_every,
        dtype=cfg.dtype,
    )


def ttt_layer(cfg: ModelConfig, name: str) -> TTTLayer:
    """The block's TTT layer for `cfg.ttt_optimizer`: TTTLayer, TitansLayer or LaCTLayer."""
    common = dataclasses.asdict(ttt_config(cfg))
    if cfg.ttt_optimizer == "titans":
        titans = TitansConfig(
            **common,
            momentum_bias_init=cfg.titans_momentum_bias,
            forget_bias_init=cfg.titans_forget_bias,
        )
        return TitansLayer(titans, name=name)
    if cfg.ttt_optimizer == "lact":
        del common["form"], common["unroll"]  # no dual form; few chunks: LaCTConfig defaults
        lact = LaCTConfig(
            **common,
            muon=cfg.lact_muon,
            renorm=cfg.lact_renorm,
            window=cfg.lact_window,
            hidden_ratio=cfg.lact_hidden_ratio,
        )
        return LaCTLayer(lact, name=name)
    return TTTLayer(TTTConfig(**common), name=name)


class TTTBlock(nn.Module):
    """One T3 block (TTT paper §2.7 / official ttt-lm-jax, `pre_conv`).

    backbone "mamba":       h += Conv(RMSNorm h); h += TTT(RMSNorm h); h += SwiGLU(RMSNorm h)
    backbone "transformer": h += TTT(RMSNorm h); h += SwiGLU(RMSNorm h)
    The conv is depthwise and causal; `mask_BT` (1 = real token) goes to the TTT layer.
    Decoding (`cache`, `position`, `cache_len`: see CausalLM) returns `(h, cache)`: the conv's
    input window and the TTT layer's cache, both of constant size.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, h_BTD, mask_BT=None, *, cache=None, position=None, cache_len=None):
        cfg = self.cfg
        decoding, new_cache = cache is not None or cache_len is not None, {}
        if cfg.backbone == "mamba":
            conv = CausalConv(
                cfg.conv_width, dtype=compute_dtype(cfg), param_dtype=param_dtype(cfg), name="conv"
            )
            x_BTD = rms_norm(cfg, "conv_norm")(h_BTD)
            if decoding:
                window = None if cache is None else cache["conv"]
                conv_BTD, new_cache["conv"] = conv_after_window(conv, x_BTD, window, cfg.conv_width)
            else:
                conv_BTD = conv(x_BTD)
            h_BTD = h_BTD + conv_BTD.astype(h_BTD.dtype)
        ttt = ttt_layer(cfg, name="ttt")
        x_BTD = rms_norm(cfg, "ttt_norm")(h_BTD)
        if decoding:
            ttt_cache = None if cache is None else cache["ttt"]
            ttt_BTD, new_cache["ttt"] = ttt(
                x_BTD, mask_BT, cache=ttt_cache, position=position, prefill=cache is None
            )
        else:
            ttt_BTD = ttt(x_BTD, mask_BT)
        h_BTD = h_BTD + ttt_BTD.astype(h_BTD.dtype)
        mlp = SwiGLU(cfg.mlp_hidden_size, dense=dense_factory(cfg), name="mlp")
        h_BTD = h_BTD + mlp(rms_norm(cfg, "mlp_norm")(h_BTD)).astype(h_BTD.dtype)
        return (h_BTD, new_cache) if decoding else h_BTD


class T3(CausalLM):
    """The T3 language model; `cfg.inner` picks T3Lin ("linear"), T3MLP ("mlp"), T3KAN ("kan")."""

    def make_block(self, name: str) -> nn.Module:
        """One TTT block."""
        return self.maybe_remat(TTTBlock)(cfg=self.cfg, name=name)
