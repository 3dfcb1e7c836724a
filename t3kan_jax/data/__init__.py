"""The data tasks (synthetic sequences, MQAR, byte-level text): splits, datasets, batches."""

from t3kan_jax.data.batches import eval_batches, train_batch
from t3kan_jax.data.dataset import load_dataset, make_splits, save_dataset, split_by_draw
from t3kan_jax.data.mqar import generate_mqar
from t3kan_jax.data.sequences import Sequences, extrapolation_split, generate_sequences
from t3kan_jax.data.tasks import TASKS, row_length, task_of
from t3kan_jax.data.text import bits_per_byte, text_splits

__all__ = [
    "TASKS",
    "Sequences",
    "bits_per_byte",
    "eval_batches",
    "extrapolation_split",
    "generate_mqar",
    "generate_sequences",
    "load_dataset",
    "make_splits",
    "row_length",
    "save_dataset",
    "split_by_draw",
    "task_of",
    "text_splits",
    "train_batch",
]
