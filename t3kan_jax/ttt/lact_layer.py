"""The LaCT layer (Zhang et al. 2025, arXiv 2505.23884, §3–4): large-chunk TTT with SwiGLU fast
weights plus sliding-window attention, Flax Linen.

Built on `TTTLayer` (Q/K/V projections, causal convs, RoPE, the per-token lr gate, post-norm,
output gate and projection); per head the mixer is

    fast_t = RMSNorm(f(q̂_t; W_{c(t)−1}))     q̂, k̂ = L2norm(silu(q, k)), v̂ = silu(v)   (LaCT §3.2)
    out_t  = fast_t + SWA(q, k, v)_t         causal attention over the last `window` tokens

where `W` is updated once per chunk of `mini_batch_size` tokens (`lact_inner_loop`, apply-then-
update, optional Muon and weight renormalisation). Chunk c's own tokens never reach its fast-weight
outputs: the window attention (window ≥ chunk) carries the context inside the chunk, as in LaCT's
hybrid layer. Padded tokens get lr 0 and so never change the fast weights.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from t3kan_jax.ttt.lact import lact_inner_loop
from t3kan_jax.ttt.layer import TTTConfig, TTTLayer
from t3kan_jax.ttt.muon import NS_STEPS

L2_EPS = 1e-5  # as in the LaCT code
RMS_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class LaCTConfig(TTTConfig):
    """`TTTConfig` with LaCT's defaults and options (mini_batch_size is the chunk size).

    muon: orthogonalise each chunk's update (Newton–Schulz, `ns_steps` steps).
    renorm: keep every fast-weight column at its learned initial norm.
    window: sliding-window attention span in tokens (0 = no attention branch).
    hidden_ratio: SwiGLU fast-weight hidden width / head dim (LaCT's `inter_multi`).
    """

    inner: str = "swiglu"
    mini_batch_size: int = 2048
    form: str = "primal"
    muon: bool = True
    ns_steps: int = NS_STEPS
    renorm: bool = True
    window: int = 2048
    hidden_ratio: int = 1
    unroll: int = 1

    def __post_init__(self):
        super().__post_init__()
        for name in ("muon", "renorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"LaCTConfig.{name}={getattr(self, name)!r}: must be True or False"
                )
        for name, low in (("ns_steps", 1), ("window", 0), ("hidden_ratio", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"LaCTConfig.{name}={value!r}: must be an int >= {low}")

    def learner_options(self) -> dict:
        """Keyword options for the learner's `init` (the SwiGLU hidden width)."""
        if self.inner == "swiglu":
            return {"hidden_ratio": self.hidden_ratio}
        return super().learner_options()


def _l2_normalise(x_F):
    """`x / (‖x‖ + eps)` along the head dim (LaCT's `l2_norm`)."""
    return x_F / (jnp.linalg.norm(x_F, axis=-1, keepdims=True) + L2_EPS)


class LaCTLayer(TTTLayer):
    """LaCT layer: `__call__(x_BTD, mask_BT=None) -> y_BTD`, as `TTTLayer`."""

    cfg: LaCTConfig

    def inner_outputs(self, x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH):
        """Large-chunk fast weights per (B, H), normalised, plus sliding-window attention."""
        del x_BTD
        cfg = self.cfg
        q_hat = _l2_normalise(jax.nn.silu(q_BTHF))
        k_hat = _l2_normalise(jax.nn.silu(k_BTHF))
        inner_H = self.param("inner", self._init_inner)

        def one_head(params, q_TF, k_TF, v_TF, lr_T):
            out_TF, _ = lact_inner_loop(
                cfg.inner,
                params,
                q_TF,
                k_TF,
                v_TF,
                lr_T,
                chunk_size=cfg.mini_batch_size,
                muon=cfg.muon,
                ns_steps=cfg.ns_steps,
                renorm=cfg.renorm,
                unroll=cfg.unroll,
                remat_every=cfg.remat_every,
            )
            return out_TF

        per_head = jax.vmap(one_head, in_axes=(0, 1, 1, 1, 1), out_axes=1)
        fast_BTHF = jax.vmap(per_head, in_axes=(None, 0, 0, 0, 0))(
            inner_H, q_hat, k_hat, jax.nn.silu(v_BTHF), lr_BTH
        )
        # Per-head RMSNorm with a learnable scale per head and channel (LaCT's output norm).
        scale_HF = self.param("fast_norm", nn.initializers.ones, q_BTHF.shape[2:], jnp.float32)
        rms = jax.lax.rsqrt(jnp.mean(jnp.square(fast_BTHF), axis=-1, keepdims=True) + RMS_EPS)
        out_BTHF = fast_BTHF * rms * scale_HF
        if cfg.window:
            out_BTHF = out_BTHF + jax.nn.dot_product_attention(
                q_BTHF, k_BTHF, v_BTHF, is_causal=True, local_window_size=(cfg.window - 1, 0)
            )
        return out_BTHF
