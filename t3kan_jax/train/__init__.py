"""Training: the loop, its state, sharding, checkpoints, metrics and optimizer."""

from t3kan_jax.train.loop import NonFiniteLossError, train_and_evaluate
from t3kan_jax.train.workdir import default_workdir

__all__ = ["NonFiniteLossError", "default_workdir", "train_and_evaluate"]
