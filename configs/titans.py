"""Titans (memory as a layer): the Titans memory, with momentum and forgetting, in the TTT layer's
place in every block; MLP memory (hidden width 4d), mini-batches of 16 tokens.

Run:    python -m experiments.train --config=configs/titans.py
Result: 99.7% test determined accuracy (accuracy 91.5%, last position 99.8%,
        loss 0.324) after 600 steps, 133 s wall on 2 CPU cores (docs/results.md).
"""

from configs import base


def get_config():
    """base.get_config() with this model's fields."""
    config = base.get_config()
    config.name = "titans"
    config.model.arch = "ttt"
    config.model.inner = "mlp"
    config.model.ttt_optimizer = "titans"
    return config
