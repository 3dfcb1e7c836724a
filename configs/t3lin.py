"""T3Lin: TTT layers with a linear inner learner (TTT-Linear, Sun et al. 2024), Mamba backbone.

Run:    python -m experiments.train --config=configs/t3lin.py
Result: 98.9% test determined accuracy (accuracy 90.7%, last position 98.6%,
        loss 0.395) after 300 steps, 70 s wall on 2 CPU cores (docs/results.md).
"""

from configs import base


def get_config():
    """base.get_config() with this model's fields."""
    config = base.get_config()
    config.name = "t3lin"
    config.model.arch = "ttt"
    config.model.inner = "linear"
    # As configs/t3kan.py: 300 steps of 32 rows.
    config.train.steps = 300
    return config
