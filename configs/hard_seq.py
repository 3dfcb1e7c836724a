"""Training on the hard sequence preset: up to 4 components, descending steps, vocabulary 1024.

Rows have 1024 // 4 = 256 columns; the preset's extrapolation split (rows up to 512 columns, steps
1..2) tests length generalisation. The study trains the 8 cells of GRID (T3Lin, T3MLP, T3KAN and
the Transformer at width 64 and 128, 2 layers) and writes their determined accuracy on test and
on the extrapolation split:

Run:    python -m experiments.study --study=hard --out_dir=runs/study_hard \
            --results=docs/results_hard.md [--steps=N] [--only=t3kan,transformer]
One cell:
        python -m experiments.train --config=configs/hard_seq.py:t3kan-w128
Result: test determined accuracy 96.2-99.2% for every cell; T3Lin/T3MLP/T3KAN 88.8-96.4%
        beyond the training length vs the Transformer's 16.2% / 45.1% (docs/results_hard.md).
"""

from ml_collections import config_dict

from configs import base, data
from configs.mqar_study import MODELS

WIDTHS = (64, 128)

# The 8 cells: per width the 4 models, in the order of the results table.
GRID = tuple({"name": f"{m}-w{w}", "model": m, "width": w} for w in WIDTHS for m in MODELS)


def get_config(cell: str = "t3kan-w64") -> config_dict.ConfigDict:
    """base with the hard sequence preset and the model and width of `cell`."""
    cells = {c["name"]: c for c in GRID}
    if cell not in cells:
        raise ValueError(f"cell={cell!r}: must be one of {', '.join(map(repr, cells))}")
    config = base.get_config()
    # Updated in place: the model's vocab_size and max_len refer to the data fields. base keeps
    # its 20000 rows (the preset's draws are cheap; 2000 extrapolation rows of 512 columns).
    config.data.update(data.PRESETS["hard"])
    config.model.depth = 2
    config.train.steps = 3000
    config.train.batch_size = 64
    config.train.warmup_steps = 150
    config.train.checkpoint_every = 1000
    c = cells[cell]
    config.name = f"hard-{c['name']}"
    config.model.update(MODELS[c["model"]])
    config.model.width = c["width"]
    return config
