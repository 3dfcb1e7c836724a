"""LaCT's SwiGLU fast-weight learner: `f(x) = (silu(x W1) ⊙ x W3) W2`, no biases (arXiv 2505.23884).

Its self-supervised loss is LaCT's negative dot product `ℓ = −f(k)·v` (§3.1, eq. 3), and the
readout is `f(q)` itself, without the TTT learners' residual and LayerNorm (the LaCT layer
normalises the output per head). No `DualForm` (the layers have no biases): `inner_loop` runs it
with form="primal", `lact_inner_loop` with `jax.grad` of the chunk's weighted loss.
"""

import jax
import jax.numpy as jnp

from t3kan_jax.ttt.learners.base import Learner, register_learner


def init(
    key, width: int, *, hidden_ratio: int = 1, init_std: float | None = None, dtype=jnp.float32
):
    """`W ~ N(0, 1/fan_in)` as in the LaCT code (or `N(0, init_std²)`); hidden width
    `hidden_ratio · d` (LaCT's `inter_multi`, 1 by default)."""
    if isinstance(hidden_ratio, bool) or not isinstance(hidden_ratio, int) or hidden_ratio < 1:
        raise ValueError(f"hidden_ratio={hidden_ratio!r}: must be an int >= 1")
    hidden = hidden_ratio * width
    k1, k2, k3 = jax.random.split(key, 3)

    def normal(k, shape):
        std = shape[0] ** -0.5 if init_std is None else init_std
        return std * jax.random.normal(k, shape, dtype)

    return {
        "W1": normal(k1, (width, hidden)),
        "W3": normal(k3, (width, hidden)),
        "W2": normal(k2, (hidden, width)),
    }


def apply(params, x_F):
    """`(silu(x W1) ⊙ x W3) W2`."""
    return (jax.nn.silu(x_F @ params["W1"]) * (x_F @ params["W3"])) @ params["W2"]


def dot_product_loss(params, z_O, k_F, v_F):
    """`ℓ = −f(k)·v` (LaCT eq. 3): a gradient step moves `f(k)` towards `v`."""
    del params, k_F
    return -jnp.sum(z_O * v_F)


def readout(params, z_O, q_F):
    """`f(q)`: LaCT reads the fast weights without a residual."""
    del params, q_F
    return z_O


SWIGLU = register_learner(
    "swiglu",
    Learner(
        init=init,
        apply=apply,
        inner_keys=("W1", "W3", "W2"),
        loss=dot_product_loss,
        readout=readout,
        default_base_lr=1.0,
    ),
)
