"""Writes a synthetic dataset (sequences, mqar): `python -m experiments.generate_data --out=DIR`.

Any data field can be overridden, e.g. `--config.vocab_size=256 --config.samples=100000`, and a
preset of configs/data.py follows a colon: `--config=configs/data.py:mqar`. The format is in
docs/data.md; an --out that holds a different dataset is refused, never overwritten. The text task
has nothing to generate (its rows are windows of the files at `path`, read at run time).
"""

import os
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from t3kan_jax.data import make_splits, save_dataset, task_of
from t3kan_jax.data.dataset import SPLITS

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "data.py"), "Data config."
)
_OUT = flags.DEFINE_string("out", None, "Directory to write the dataset to.", required=True)


def summary(splits, pad_id: int, task: str = "sequences") -> str:
    """Rows, draws and pad fraction per split; the histogram of C (sequences) or answers (mqar)."""
    lines = []
    for name in SPLITS:
        s = splits[name]
        pad = float(np.mean(s.targets == pad_id)) if len(s) else 0.0
        draws = np.unique(s.draw).size
        lines.append(f"{name:>5}: {len(s):7d} rows  {draws:7d} draws  pad fraction {pad:.3f}")
    if task == "mqar":
        answers = np.concatenate([np.sum(splits[n].targets != pad_id, axis=1) for n in SPLITS])
        lines.append(f"answers per row: {int(answers.min())}..{int(answers.max())}")
        return "\n".join(lines)
    comps = np.concatenate([splits[name].components for name in SPLITS])
    values, counts = np.unique(comps, return_counts=True)
    hist = "  ".join(
        f"C={v}: {c} ({c / comps.size:.3f})" for v, c in zip(values, counts, strict=True)
    )
    lines.append(f"rows by C: {hist}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if config.dir:
        raise app.UsageError("--config.dir is for loading a dataset; pass the target as --out")
    try:
        task = task_of(config)
        if task == "text":
            raise ValueError(
                "task='text' has nothing to generate: its rows are windows of the files at "
                "--config.path, read when training starts"
            )
        splits = make_splits(config)
        save_dataset(_OUT.value, splits, config)
    except (ValueError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    print(summary(splits, config.pad_id, task))
    print(f"dataset: {os.path.abspath(_OUT.value)}")


if __name__ == "__main__":
    app.run(main)
