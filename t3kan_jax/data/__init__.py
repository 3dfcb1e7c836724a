"""The synthetic sequence task: seeded generator, splits by draw, on-disk dataset, batches."""

from t3kan_jax.data.batches import eval_batches, train_batch
from t3kan_jax.data.dataset import load_dataset, make_splits, save_dataset, split_by_draw
from t3kan_jax.data.sequences import Sequences, generate_sequences

__all__ = [
    "Sequences",
    "eval_batches",
    "generate_sequences",
    "load_dataset",
    "make_splits",
    "save_dataset",
    "split_by_draw",
    "train_batch",
]
