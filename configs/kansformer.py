"""Kansformer baseline: the Transformer with B-spline KAN layers in place of its Dense layers.

Run:    python -m experiments.train --config=configs/kansformer.py
Result: (to be measured)
"""

from configs import base


def get_config():
    """base.get_config() with this model's fields."""
    config = base.get_config()
    config.name = "kansformer"
    config.model.arch = "kansformer"
    # KAN Dense layers make each step ~8x a Transformer step on CPU; 600 steps (base default).
    return config
