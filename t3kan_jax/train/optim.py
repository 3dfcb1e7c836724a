"""AdamW with linear warmup, cosine decay and global-norm gradient clipping (optax)."""

from collections.abc import Mapping

import jax
import optax

from t3kan_jax.models.blocks import is_stacked

# The train config fields that define the optimizer (and so the compiled train step).
FIELDS = (
    "steps",
    "learning_rate",
    "warmup_steps",
    "end_lr_ratio",
    "weight_decay",
    "b1",
    "b2",
    "grad_clip",
)


def make_schedule(train: Mapping) -> optax.Schedule:
    """Linear warmup from 0 to the peak learning rate, then cosine decay to end_lr_ratio of it."""
    steps, warmup, peak = train["steps"], train["warmup_steps"], train["learning_rate"]
    if steps < 1:
        raise ValueError(f"train.steps must be >= 1, got {steps}")
    if not 0 <= warmup <= steps:
        raise ValueError(f"train.warmup_steps must be in [0, train.steps={steps}], got {warmup}")
    if not peak > 0:
        raise ValueError(f"train.learning_rate must be > 0, got {peak}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=steps,
        end_value=peak * train["end_lr_ratio"],
    )


def _decay_mask(params):
    """Weight decay on matrices and larger tensors only, not on biases, norm scales or gates (the
    leading depth axis of ModelConfig.scan_layers parameters not counted)."""
    return jax.tree_util.tree_map_with_path(lambda path, p: p.ndim - is_stacked(path) >= 2, params)


def make_optimizer(train: Mapping) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer of a train config (a ConfigDict or a mapping of FIELDS) and its schedule."""
    if train["grad_clip"] < 0:
        raise ValueError(
            f"train.grad_clip must be >= 0 (0 = no clipping), got {train['grad_clip']}"
        )
    schedule = make_schedule(train)
    adamw = optax.adamw(
        schedule,
        b1=train["b1"],
        b2=train["b2"],
        weight_decay=train["weight_decay"],
        mask=_decay_mask,
    )
    # identity() keeps the optimizer state's structure when clipping is switched off on resume.
    clip = (
        optax.clip_by_global_norm(train["grad_clip"])
        if train["grad_clip"] > 0
        else optax.identity()
    )
    return optax.chain(clip, adamw), schedule
