"""TTT-MLP inner learner: `f_res(x) = gelu(x W1 + b1) W2 + b2`, hidden width 4d (TTT paper §2.2).

GELU is the tanh approximation (`jax.nn.gelu`'s default), as in the official code.
"""

import jax
import jax.numpy as jnp

from t3kan_jax.ttt.learners.base import DualForm, Learner, register_learner


def init(key, width: int, *, hidden_ratio: int = 4, init_std: float = 0.02, dtype=jnp.float32):
    """Both kernels `~ N(0, init_std²)` as in the official code, zero biases, identity LayerNorm."""
    k1, k2 = jax.random.split(key)
    hidden = hidden_ratio * width
    return {
        "W1": init_std * jax.random.normal(k1, (width, hidden), dtype),
        "b1": jnp.zeros((hidden,), dtype),
        "W2": init_std * jax.random.normal(k2, (hidden, width), dtype),
        "b2": jnp.zeros((width,), dtype),
        "ln_scale": jnp.ones((width,), dtype),
        "ln_bias": jnp.zeros((width,), dtype),
    }


def apply(params, x_F):
    """`gelu(x W1 + b1) W2 + b2`."""
    return jax.nn.gelu(x_F @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


def _from_dense(params, dense):
    (w1, b1), (w2, b2) = dense
    return {**params, "W1": w1, "b1": b1, "W2": w2, "b2": b2}


MLP = register_learner(
    "mlp",
    Learner(
        init=init,
        apply=apply,
        inner_keys=("W1", "b1", "W2", "b2"),
        dual=DualForm(
            features=(lambda params, x_F: x_F, lambda params, z_M: jax.nn.gelu(z_M)),
            to_dense=lambda params: ((params["W1"], params["b1"]), (params["W2"], params["b2"])),
            from_dense=_from_dense,
        ),
        default_base_lr=0.1,
    ),
)
