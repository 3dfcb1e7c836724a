"""The Titans memory as a layer (Behrouz et al. 2025, §4.3 "memory as a layer", MAL), Flax Linen.

The TTT layer (`TTTLayer`: Q/K/V projections, causal convs, RoPE, the lr gate θ, post-norm, output
gate and projection) with its inner loop replaced by the Titans memory (`titans_inner_loop`):
per head and token, two more gates read the layer input,

    η_t = sigmoid(x_t·w_η + c_η)   (momentum: how much past surprise is kept)
    α_t = sigmoid(x_t·w_α + c_α)   (forgetting: how much of the memory decays)

next to TTT's `θ_t = base_lr · sigmoid(x_t·w_θ + c_θ) / d`. Padded tokens get θ = 0 (as in TTT);
their η and α only act after the last real token, which no real output reads.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from t3kan_jax.ttt.layer import TTTConfig, TTTLayer
from t3kan_jax.ttt.titans import titans_inner_loop


@dataclasses.dataclass(frozen=True)
class TitansConfig(TTTConfig):
    """`TTTConfig` plus the initial biases of the momentum and forgetting gates.

    momentum_bias_init: `c_η` at init (0 gives η ≈ 0.5). forget_bias_init: `c_α` at init (−4 gives
    α ≈ 0.018 per token, so the learned initial memory is not forgotten within a few tokens).
    """

    momentum_bias_init: float = 0.0
    forget_bias_init: float = -4.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("momentum_bias_init", "forget_bias_init"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"TitansConfig.{name}={value!r}: must be a number")


class TitansLayer(TTTLayer):
    """Titans memory layer: `__call__(x_BTD, mask_BT=None) -> y_BTD`, as `TTTLayer`."""

    cfg: TitansConfig

    def inner_outputs(self, x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH):
        """The Titans memory per (B, H), with gates η, α read from `x_BTD`."""
        cfg = self.cfg
        x_BTD = x_BTD.astype(jnp.float32)

        def gate(name, bias):
            dense = nn.Dense(
                cfg.num_heads,
                kernel_init=nn.initializers.normal(0.02),
                bias_init=nn.initializers.constant(bias),
                name=name,
            )
            return jax.nn.sigmoid(dense(x_BTD))

        momentum_BTH = gate("momentum_gate", cfg.momentum_bias_init)
        forget_BTH = gate("forget_gate", cfg.forget_bias_init)
        inner_H = self.param("inner", self._init_inner)

        def one_head(params, q_TF, k_TF, v_TF, lr_T, momentum_T, forget_T):
            out_TF, _ = titans_inner_loop(
                cfg.inner,
                params,
                q_TF,
                k_TF,
                v_TF,
                lr_T,
                momentum_T,
                forget_T,
                mini_batch_size=cfg.mini_batch_size,
                form=cfg.form,
                unroll=cfg.unroll,
                remat_every=cfg.remat_every,
            )
            return out_TF

        per_head = jax.vmap(one_head, in_axes=(0, 1, 1, 1, 1, 1, 1), out_axes=1)
        return jax.vmap(per_head, in_axes=(None, 0, 0, 0, 0, 0, 0))(
            inner_H, q_BTHF, k_BTHF, v_BTHF, lr_BTH, momentum_BTH, forget_BTH
        )
