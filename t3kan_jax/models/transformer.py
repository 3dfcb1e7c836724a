"""Baselines: Transformer, Kansformer (KAN Dense layers) and KAT (group-rational KAN MLPs)."""

import functools

import flax.linen as nn
import jax.numpy as jnp

from t3kan_jax.kan.layers import GRKAN, KANDense
from t3kan_jax.kan.rational import group_rational, variance_preserving_init
from t3kan_jax.models.blocks import (
    AttentionBlock,
    CausalLM,
    compute_dtype,
    dense_factory,
    param_dtype,
)
from t3kan_jax.models.config import KAT_GROUPS
from t3kan_jax.models.layers import DenseFactory, ModuleFactory, SwiGLU


class Transformer(CausalLM):
    """Llama-style decoder: pre-RMSNorm, causal attention with RoPE along the sequence, SwiGLU."""

    def dense(self) -> DenseFactory:
        """The Dense-like layer of the attention projections, the MLP and the head."""
        return dense_factory(self.cfg)

    def mlp(self) -> ModuleFactory:
        """The block MLP factory (`mlp(name=...)`)."""
        return functools.partial(SwiGLU, hidden=self.cfg.mlp_hidden_size, dense=self.dense())

    def make_block(self, name: str) -> nn.Module:
        """A pre-norm attention block."""
        block_cls = self.maybe_remat(AttentionBlock)
        return block_cls(cfg=self.cfg, dense=self.dense(), mlp=self.mlp(), name=name)

    def make_head(self) -> nn.Module:
        """The LM head, built by `dense()`."""
        return self.dense()(self.cfg.vocab_size, name="lm_head")


class Kansformer(Transformer):
    """The Transformer with every Dense layer (attention projections, SwiGLU, head) a KANDense.

    Seed 001 (Kansformers: minGPT with efficient-KAN layers for nn.Linear); the embedding stays.
    """

    def dense(self) -> DenseFactory:
        """Bias-free KANDense on the config's B-spline grid."""
        cfg = self.cfg
        return functools.partial(
            KANDense,
            grid_size=cfg.kan_grid_size,
            degree=cfg.kan_degree,
            grid_range=(cfg.kan_grid_min, cfg.kan_grid_max),
            use_bias=False,
            dtype=compute_dtype(cfg),
            param_dtype=param_dtype(cfg),
        )


class IdentityGroupRational(nn.Module):
    """GR-KAN activation initialised to the identity, `P(x) = x, Q(x) = 1` (KAT's `act1`)."""

    num_groups: int
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        numerator = self.param(
            "numerator", lambda _: jnp.zeros((6,), self.param_dtype).at[1].set(1.0)
        )
        denominator = self.param(
            "denominator", nn.initializers.zeros, (self.num_groups, 4), self.param_dtype
        )
        return group_rational({"numerator": numerator, "denominator": denominator}, x)


class KATMLP(nn.Module):
    """KAT MLP = two GR-KAN layers (Yang & Wang 2024 §4; official `katransformer.KAN`):

    `x -> φ_identity -> fc1 -> φ_gelu -> fc2`, φ group-rational (8 groups). Each Dense layer gets
    the variance-preserving init `Var[w] = 1 / (fan_in E[φ(x)²])` of the activation before it
    (E = 1 for the identity, so fc1 is LeCun-normal).
    """

    hidden: int
    num_groups: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BTD):
        h = IdentityGroupRational(self.num_groups, self.param_dtype, name="act1")(x_BTD)
        h = nn.Dense(
            self.hidden,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=variance_preserving_init(1.0),
            name="fc1",
        )(h)
        layer2 = GRKAN(
            x_BTD.shape[-1],
            num_groups=self.num_groups,
            rational_init="gelu",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="grkan2",
        )
        return layer2(h)


class KAT(Transformer):
    """Kolmogorov-Arnold Transformer: the Transformer with GR-KAN MLPs (KAT, seed 004).

    The MLP hidden width is 3/2 of the SwiGLU's, which matches its parameter count (two Dense
    layers instead of three) and gives KAT's mlp_ratio 4 at the 125M/760M presets.
    """

    def mlp(self) -> ModuleFactory:
        """The GR-KAN MLP factory."""
        cfg = self.cfg
        return functools.partial(
            KATMLP,
            hidden=cfg.kat_hidden_size,
            num_groups=KAT_GROUPS,
            dtype=compute_dtype(cfg),
            param_dtype=param_dtype(cfg),
        )
