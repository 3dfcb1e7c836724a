"""Test-time training (Sun et al. 2024) as pure JAX: inner learners and the inner loop.

`inner_loop(kind, params, xq, xk, xv, lr, ...)` runs one head; `register_learner` adds an inner
learner. The Flax layer around it is `t3kan_jax.ttt.layer.TTTLayer` (imported separately, so this
package imports no Flax).
"""

from t3kan_jax.ttt.inner_loop import FORMS, default_token_scale, inner_loop
from t3kan_jax.ttt.learners import (
    DualForm,
    Learner,
    get_learner,
    register_learner,
    registered_learners,
)

__all__ = [
    "FORMS",
    "DualForm",
    "Learner",
    "default_token_scale",
    "get_learner",
    "inner_loop",
    "register_learner",
    "registered_learners",
]
