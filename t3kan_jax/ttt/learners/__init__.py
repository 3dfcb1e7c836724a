"""Inner learners: the registry and the built-in linear, mlp, kan and (LaCT's) swiglu learners.

A new learner is one file that builds a `Learner` and calls `register_learner(name, learner)`;
import it (here, or anywhere before use) and `inner_loop(name, ...)` runs it in both forms.
"""

from t3kan_jax.ttt.learners import kan, linear, mlp, swiglu
from t3kan_jax.ttt.learners.base import (
    DualForm,
    Learner,
    get_learner,
    layer_norm,
    reconstruction_loss,
    register_learner,
    registered_learners,
    residual_readout,
)

__all__ = [
    "DualForm",
    "Learner",
    "get_learner",
    "kan",
    "layer_norm",
    "linear",
    "mlp",
    "reconstruction_loss",
    "register_learner",
    "registered_learners",
    "residual_readout",
    "swiglu",
]
