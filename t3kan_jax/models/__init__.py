"""Language models: T3Lin / T3MLP / T3KAN and the Transformer, Kansformer and KAT baselines.

`build_model(ModelConfig.from_config(config.model))` gives a Flax Linen module called as
`model.apply(params, tokens_BT, mask_BT=None) -> logits_BTV` (float32).
"""

from t3kan_jax.models.config import PRESETS, ModelConfig
from t3kan_jax.models.registry import (
    abstract_params,
    build_model,
    count_params,
    describe,
    model_name,
)
from t3kan_jax.models.t3 import T3
from t3kan_jax.models.transformer import KAT, Kansformer, Transformer

__all__ = [
    "KAT",
    "PRESETS",
    "T3",
    "Kansformer",
    "ModelConfig",
    "Transformer",
    "abstract_params",
    "build_model",
    "count_params",
    "describe",
    "model_name",
]
