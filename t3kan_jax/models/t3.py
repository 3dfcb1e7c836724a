"""T3 language models (T3Lin / T3MLP / T3KAN): TTT layers in the TTT paper's backbone."""

import flax.linen as nn

from t3kan_jax.models.blocks import CausalLM, compute_dtype, dense_factory, param_dtype, rms_norm
from t3kan_jax.models.config import ModelConfig
from t3kan_jax.models.layers import CausalConv, SwiGLU
from t3kan_jax.ttt.layer import TTTConfig, TTTLayer


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
        kan_grid_size=cfg.kan_grid_size,
        kan_degree=cfg.kan_degree,
        kan_grid_min=cfg.kan_grid_min,
        kan_grid_max=cfg.kan_grid_max,
        remat_every=cfg.remat_every,
        dtype=cfg.dtype,
    )


class TTTBlock(nn.Module):
    """One T3 block (TTT paper §2.7 / official ttt-lm-jax, `pre_conv`).

    backbone "mamba":       h += Conv(RMSNorm h); h += TTT(RMSNorm h); h += SwiGLU(RMSNorm h)
    backbone "transformer": h += TTT(RMSNorm h); h += SwiGLU(RMSNorm h)
    The conv is depthwise and causal; `mask_BT` (1 = real token) goes to the TTT layer.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, h_BTD, mask_BT=None):
        cfg = self.cfg
        if cfg.backbone == "mamba":
            conv = CausalConv(
                cfg.conv_width, dtype=compute_dtype(cfg), param_dtype=param_dtype(cfg), name="conv"
            )
            h_BTD = h_BTD + conv(rms_norm(cfg, "conv_norm")(h_BTD)).astype(h_BTD.dtype)
        ttt = TTTLayer(ttt_config(cfg), name="ttt")
        h_BTD = h_BTD + ttt(rms_norm(cfg, "ttt_norm")(h_BTD), mask_BT).astype(h_BTD.dtype)
        mlp = SwiGLU(cfg.mlp_hidden_size, dense=dense_factory(cfg), name="mlp")
        return h_BTD + mlp(rms_norm(cfg, "mlp_norm")(h_BTD)).astype(h_BTD.dtype)


class T3(CausalLM):
    """The T3 language model; `cfg.inner` picks T3Lin ("linear"), T3MLP ("mlp"), T3KAN ("kan")."""

    def make_block(self, name: str) -> nn.Module:
        """One TTT block."""
        return self.maybe_remat(TTTBlock)(cfg=self.cfg, name=name)
