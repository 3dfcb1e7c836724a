"""The data tasks, chosen by `config.task`: their defining fields, row length and generator.

- "sequences": interleaved arithmetic progressions (sequences.py);
- "mqar": multi-query associative recall (mqar.py);
- "text": byte-level language modelling on local files (text.py), read rather than generated.

A config without a `task` field is a "sequences" config (the only task there was at first).
"""

from t3kan_jax.data.mqar import generate_mqar, validate_mqar_config
from t3kan_jax.data.sequences import Sequences, generate_sequences, validate_config
from t3kan_jax.data.text import validate_text_config

TASKS = ("sequences", "mqar", "text")
SYNTHETIC_TASKS = ("sequences", "mqar")


def task_of(config) -> str:
    """The config's task, after checking it is one of TASKS."""
    task = config.get("task", "sequences")
    if task not in TASKS:
        raise ValueError(f"task={task!r}: must be one of {', '.join(map(repr, TASKS))}")
    return task


def task_config(config) -> dict:
    """The validated fields that define the task's rows (a dataset manifest's generator_config).

    A "sequences" config gives its generator fields alone, as manifests always held them; the other
    tasks add `task`.
    """
    task = task_of(config)
    if task == "sequences":
        return validate_config(config)
    if task == "mqar":
        return {"task": task, **validate_mqar_config(config)}
    return {"task": task, **validate_text_config(config)}


def generate(config) -> Sequences:
    """All rows of a synthetic task, in draw order (split them with `split_by_draw`)."""
    task = task_of(config)
    if task == "sequences":
        return generate_sequences(config)
    if task == "mqar":
        return generate_mqar(config)
    raise ValueError(
        "task='text' has no generator: its rows are windows of the files at `path` "
        "(make_splits reads them)"
    )


def row_length(config) -> int:
    """Columns of every row of the task (the model's max_len must be at least this)."""
    cfg = task_config(config)
    if "task" not in cfg:
        return cfg["vocab_size"] // cfg["seq_step"]
    return cfg["input_seq_len"] if cfg["task"] == "mqar" else cfg["seq_len"]
