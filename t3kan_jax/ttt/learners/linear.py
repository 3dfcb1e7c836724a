"""TTT-Linear inner learner: `f_res(x) = x W + b` (TTT paper §2.2)."""

import jax
import jax.numpy as jnp

from t3kan_jax.ttt.learners.base import DualForm, Learner, register_learner


def init(key, width: int, *, init_std: float = 0.02, dtype=jnp.float32):
    """`W ~ N(0, init_std²)` as in the official code, zero bias, identity LayerNorm."""
    return {
        "W": init_std * jax.random.normal(key, (width, width), dtype),
        "b": jnp.zeros((width,), dtype),
        "ln_scale": jnp.ones((width,), dtype),
        "ln_bias": jnp.zeros((width,), dtype),
    }


def apply(params, x_F):
    """`x W + b`."""
    return x_F @ params["W"] + params["b"]


LINEAR = register_learner(
    "linear",
    Learner(
        init=init,
        apply=apply,
        inner_keys=("W", "b"),
        dual=DualForm(
            features=(lambda params, x_F: x_F,),
            to_dense=lambda params: ((params["W"], params["b"]),),
            from_dense=lambda params, dense: {**params, "W": dense[0][0], "b": dense[0][1]},
        ),
        default_base_lr=1.0,
    ),
)
