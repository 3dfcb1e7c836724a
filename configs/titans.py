"""Titans (memory as a layer): the Titans memory, with momentum and forgetting, in the TTT layer's
place in every block; MLP memory (hidden width 4d), mini-batches of 16 tokens.

Run:    python -m experiments.train --config=configs/titans.py
Result: (to be measured)
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
