"""`build_model(cfg)`, parameter counting and one-line model descriptions."""

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax.models.blocks import CausalLM
from t3kan_jax.models.config import ModelConfig
from t3kan_jax.models.t3 import T3
from t3kan_jax.models.transformer import KAT, Kansformer, Transformer

_ARCH_CLASSES = {"ttt": T3, "transformer": Transformer, "kansformer": Kansformer, "kat": KAT}
_INNER_NAMES = {"linear": "T3Lin", "mlp": "T3MLP", "kan": "T3KAN"}
_OPTIMIZER_PREFIXES = {"titans": "Titans", "lact": "LaCT"}


def build_model(cfg: ModelConfig) -> CausalLM:
    """The Flax Linen model of `cfg.arch`: `model.apply(params, tokens_BT, mask_BT=None)`."""
    if not isinstance(cfg, ModelConfig):
        raise ValueError(
            f"build_model needs a ModelConfig (use ModelConfig.from_config), got {type(cfg)}"
        )
    return _ARCH_CLASSES[cfg.arch](cfg)


def model_name(cfg: ModelConfig) -> str:
    """Display name: T3Lin, T3MLP, T3KAN, Transformer, Kansformer or KAT."""
    if cfg.arch == "ttt" and cfg.ttt_optimizer in _OPTIMIZER_PREFIXES:
        # TitansLin/TitansMLP/TitansKAN, LaCT (SwiGLU fast weights), LaCTLin/LaCTMLP/LaCTKAN.
        suffix = "" if cfg.inner == "swiglu" else _INNER_NAMES[cfg.inner][2:]
        return _OPTIMIZER_PREFIXES[cfg.ttt_optimizer] + suffix
    if cfg.arch == "ttt":
        return _INNER_NAMES[cfg.inner]
    return _ARCH_CLASSES[cfg.arch].__name__


def count_params(params) -> int:
    """Number of scalars in a parameter tree (arrays or jax.ShapeDtypeStruct leaves)."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def abstract_params(cfg: ModelConfig, seq_len: int | None = None):
    """Shapes and dtypes of `model.init` as jax.ShapeDtypeStruct leaves, nothing materialised."""
    seq_len = seq_len or min(cfg.max_len, 2 * cfg.mini_batch_size)
    tokens_BT = jax.ShapeDtypeStruct((1, seq_len), jnp.int32)
    return jax.eval_shape(build_model(cfg).init, jax.random.key(0), tokens_BT)


def describe(cfg: ModelConfig) -> str:
    """One line for logs: name, size, shape, the arch-specific settings and dtype."""
    parts = [
        f"{model_name(cfg)} [{cfg.size}]",
        f"depth={cfg.depth} width={cfg.width} heads={cfg.num_heads}",
        f"mlp_hidden={cfg.mlp_hidden_size} vocab={cfg.vocab_size} max_len={cfg.max_len}",
    ]
    if cfg.arch == "ttt":
        lr = "default" if cfg.base_lr is None else cfg.base_lr
        parts.append(
            f"backbone={cfg.backbone} form={cfg.ttt_form} b={cfg.mini_batch_size} base_lr={lr} "
            f"conv={cfg.conv_width} optimizer={cfg.ttt_optimizer}"
        )
    if cfg.arch == "kansformer" or (cfg.arch == "ttt" and cfg.inner == "kan"):
        parts.append(
            f"kan G={cfg.kan_grid_size} p={cfg.kan_degree} "
            f"grid=[{cfg.kan_grid_min}, {cfg.kan_grid_max}]"
        )
    flags = (" remat" if cfg.remat else "") + (" scan_layers" if cfg.scan_layers else "")
    parts.append(f"dtype={cfg.dtype}/{cfg.param_dtype}" + flags)
    return ", ".join(parts)
