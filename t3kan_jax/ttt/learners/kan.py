"""TTT-KAN inner learner: one B-spline KAN layer d -> d (KAN paper, Liu et al. 2024, eq. 2.10).

`f_res(x)_o = Σ_i [W_base[i, o] silu(x_i) + Σ_k C[i, o, k] B_k(x_i)] + b_o`, one spline per edge
(coefficients `[I, O, K]`). The inner loop updates `W_base`, `C`, `b`; the knots stay fixed inside a
sequence (the outer loop may learn them), so the features `φ(x) = [silu(x), B(x)]` do not depend on
the updated weights and TTT-KAN is TTT-Linear on `φ`: the dual kernel is `φ(q)·φ(k)`.
"""

import jax
import jax.numpy as jnp

from t3kan_jax.kan import uniform_knots
from t3kan_jax.kan.spline import kan_features
from t3kan_jax.ttt.learners.base import DualForm, Learner, register_learner


def init(
    key,
    width: int,
    *,
    grid_size: int = 5,
    degree: int = 3,
    grid_range: tuple[float, float] = (-3.0, 3.0),
    init_std: float = 0.02,
    spline_noise: float = 0.1,
    dtype=jnp.float32,
):
    """`W_base ~ N(0, init_std²)` (as TTT-Linear's `W`), a small-noise spline
    `C ~ N(0, (spline_noise · init_std)²)`, and uniform knots on `grid_range` (see docs/ttt.md)."""
    lo, hi = grid_range
    if not lo < hi:
        raise ValueError(f"grid_range must have lo < hi, got {grid_range}")
    k_base, k_spline = jax.random.split(key)
    n_basis = grid_size + degree
    return {
        "W_base": init_std * jax.random.normal(k_base, (width, width), dtype),
        "C": spline_noise * init_std * jax.random.normal(k_spline, (width, width, n_basis), dtype),
        "b": jnp.zeros((width,), dtype),
        "ln_scale": jnp.ones((width,), dtype),
        "ln_bias": jnp.zeros((width,), dtype),
        "knots": uniform_knots(grid_size, degree, lo, hi).astype(dtype),
    }


def spline_degree(params) -> int:
    """Spline degree from the shapes: `n_knots = n_basis + degree + 1`."""
    return params["knots"].shape[-1] - params["C"].shape[-1] - 1


def apply(params, x_F):
    """`silu(x) W_base + Σ_{i,k} B_k(x_i) C[i, :, k] + b`."""
    silu_I, b_IK = kan_features(x_F, params["knots"], spline_degree(params))
    spline_O = jnp.einsum("ik,iok->o", b_IK, params["C"])
    return silu_I @ params["W_base"] + spline_O + params["b"]


def features(params, x_F):
    """`φ(x) = [silu(x) (I), B(x) flattened (I·K)]`: the input of the dense layer."""
    silu_I, b_IK = kan_features(x_F, params["knots"], spline_degree(params))
    return jnp.concatenate([silu_I, b_IK.reshape(-1)])


def to_dense(params):
    """`w = [W_base; C as [(i, k), o]]`, matching the row order of `features`."""
    w_base_IO, c_IOK = params["W_base"], params["C"]
    c_rows = jnp.swapaxes(c_IOK, 1, 2).reshape(-1, c_IOK.shape[1])
    return ((jnp.concatenate([w_base_IO, c_rows]), params["b"]),)


def from_dense(params, dense):
    """Inverse of `to_dense` (shapes from `params`)."""
    ((w, b),) = dense
    i, o, k = params["C"].shape
    c_IOK = jnp.swapaxes(w[i:].reshape(i, k, o), 1, 2)
    return {**params, "W_base": w[:i], "C": c_IOK, "b": b}


KAN = register_learner(
    "kan",
    Learner(
        init=init,
        apply=apply,
        inner_keys=("W_base", "C", "b"),
        dual=DualForm(features=(features,), to_dense=to_dense, from_dense=from_dense),
        default_base_lr=0.1,
    ),
)
