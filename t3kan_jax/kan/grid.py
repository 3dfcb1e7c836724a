"""Grids of a B-spline KAN layer: learnable-knot parametrisations, grid update from samples, and
grid extension, as pure functions (KAN, Liu et al. 2024 §2.5; efficient-KAN `update_grid`).

Knots are per input feature, `[I, S]`. The refits act on the raw coefficients `C` with the per-edge
`scale` untouched, so `C ⊙ scale` and the layer function are preserved (efficient-KAN refits
`C ⊙ scale` into `C` and so applies its scaler twice).
"""

import jax
import jax.numpy as jnp

from t3kan_jax.kan.basis import bspline_basis, uniform_knots


def knots_from_endpoints(lo_I, hi_I, grid_size: int, degree: int):
    """Uniform extended knots `[I, S]` between learnable per-input end points `lo_I < hi_I`."""
    return uniform_knots(
        grid_size, degree, jnp.asarray(lo_I)[..., None], jnp.asarray(hi_I)[..., None]
    )


def softplus_inverse(y):
    """`log(exp(y) - 1)` for y > 0, stable for large y."""
    y = jnp.asarray(y)
    return y + jnp.log(-jnp.expm1(-y))


def knots_from_increments(start_I, raw_IS1):
    """Sorted knots `[I, S]`: `t_0 = start`, `t_j = start + Σ_{l<j} softplus(raw_l)`.

    Monotone by construction; increments that underflow to 0 give colliding knots, which the basis
    treats as empty intervals (finite values and gradients).
    """
    steps = jax.nn.softplus(raw_IS1)
    zero = jnp.zeros_like(steps[..., :1])
    return jnp.asarray(start_I)[..., None] + jnp.cumsum(jnp.concatenate([zero, steps], -1), -1)


def increments_from_knots(knots_IS, min_step: float = 1e-6):
    """Inverse of `knots_from_increments` (steps clipped to `min_step` so the inverse exists)."""
    steps = jnp.maximum(jnp.diff(knots_IS, axis=-1), min_step)
    return knots_IS[..., 0], softplus_inverse(steps)


def _flatten_samples(x, in_features: int):
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(f"x must have a last axis of size {in_features}, got shape {x.shape}")
    return x.reshape(-1, in_features)


def grid_from_samples(x, grid_size: int, degree: int, *, grid_eps: float = 0.02, margin=0.01):
    """Knots `[I, S]` per input from samples `x [..., I]` (efficient-KAN `update_grid`).

    Inner knots mix `grid_eps` of a uniform grid on `[min - margin, max + margin]` with
    `1 - grid_eps` of the sample quantiles; `degree` knots are added each side at the uniform step.
    """
    if not 0.0 <= grid_eps <= 1.0:
        raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps}")
    x_NI = jnp.sort(_flatten_samples(x, jnp.shape(x)[-1]), axis=0)
    n = x_NI.shape[0]
    idx = jnp.linspace(0, n - 1, grid_size + 1).astype(jnp.int32)
    adaptive_GI = x_NI[idx]
    step_I = (x_NI[-1] - x_NI[0] + 2 * margin) / grid_size
    j_G = jnp.arange(grid_size + 1, dtype=x_NI.dtype)[:, None]
    uniform_GI = x_NI[0] - margin + j_G * step_I
    inner_GI = grid_eps * uniform_GI + (1.0 - grid_eps) * adaptive_GI
    ext = jnp.arange(1, degree + 1, dtype=x_NI.dtype)[:, None] * step_I
    knots_SI = jnp.concatenate([inner_GI[:1] - ext[::-1], inner_GI, inner_GI[-1:] + ext])
    return knots_SI.T


def transfer_matrix(x, old_knots, new_knots, degree: int, *, rcond: float | None = None):
    """`M [I, K_new, K_old]`: least-squares map of old to new spline coefficients on samples `x`.

    For every input i, `M_i = pinv(B_new(x_i)) B_old(x_i)`; a spline `B_old c` is refit as
    `B_new (M_i c)`. Forming `M` keeps memory at O(N I K) however many outputs the layer has.
    """
    new_knots = jnp.asarray(new_knots)
    in_features = new_knots.shape[0] if new_knots.ndim == 2 else jnp.shape(x)[-1]
    x_NI = _flatten_samples(x, in_features)
    a_new = jnp.moveaxis(bspline_basis(x_NI, new_knots, degree), 0, 1)  # [I, N, K_new]
    a_old = jnp.moveaxis(bspline_basis(x_NI, old_knots, degree), 0, 1)  # [I, N, K_old]
    return jnp.linalg.pinv(a_new, rtol=rcond) @ a_old


def refit_coefficients(c_IOK, transfer_IJK):
    """New coefficients `[I, O, K_new]` from `transfer_matrix`."""
    return jnp.einsum("ijk,iok->ioj", transfer_IJK, c_IOK)


def update_grid(params, knots, x, degree: int, *, grid_eps: float = 0.02, margin: float = 0.01):
    """`(params, knots [I, S])` adapted to samples `x [..., I]`, the layer function preserved."""
    in_features = params["c"].shape[0]
    knots = jnp.asarray(knots)
    grid_size = knots.shape[-1] - 2 * degree - 1
    new_knots = grid_from_samples(
        _flatten_samples(x, in_features), grid_size, degree, grid_eps=grid_eps, margin=margin
    )
    return refit_to_knots(params, knots, new_knots, x, degree), new_knots


def refit_to_knots(params, old_knots, new_knots, x, degree: int):
    """Params whose spline on `new_knots` least-squares matches the one on `old_knots` at `x`."""
    transfer = transfer_matrix(x, old_knots, new_knots, degree)
    return {**params, "c": refit_coefficients(params["c"], transfer).astype(params["c"].dtype)}


def refine_knots(knots_IS, degree: int, new_grid_size: int):
    """Knots `[I, S_new]` with `new_grid_size` intervals: the old inner knots interpolated linearly
    in their index (a uniform grid stays uniform, an adaptive one keeps its shape), extended by
    `degree` knots each side at the end spacing."""
    knots_IS = jnp.asarray(knots_IS)
    grid_size = knots_IS.shape[-1] - 2 * degree - 1
    inner = knots_IS[..., degree : degree + grid_size + 1]
    pos = jnp.linspace(0.0, grid_size, new_grid_size + 1)
    new_inner = jax.vmap(lambda row: jnp.interp(pos, jnp.arange(grid_size + 1.0), row))(
        inner.reshape(-1, grid_size + 1)
    ).reshape(*inner.shape[:-1], new_grid_size + 1)
    j = jnp.arange(1, degree + 1, dtype=knots_IS.dtype)
    left = new_inner[..., :1] - (new_inner[..., 1:2] - new_inner[..., :1]) * j[::-1]
    right = new_inner[..., -1:] + (new_inner[..., -1:] - new_inner[..., -2:-1]) * j
    return jnp.concatenate([left, new_inner, right], -1)


def range_samples(knots_IS, degree: int, num_samples: int):
    """`[num_samples, I]`: midpoints of equal cells of each input's range `[t_p, t_{S-p-1}]`."""
    knots_IS = jnp.asarray(knots_IS)
    lo, hi = knots_IS[..., degree], knots_IS[..., -degree - 1]
    u = (jnp.arange(num_samples, dtype=knots_IS.dtype) + 0.5) / num_samples
    return lo + (hi - lo) * u[:, None]


def extend_grid(params, knots, degree: int, new_grid_size: int, *, samples_per_interval: int = 8):
    """`(params, knots [I, S_new])` on a finer grid (KAN §2.5 grid extension).

    The spline is refit on `samples_per_interval (new_grid_size + degree)` uniform points of each
    input's grid range; refining a grid by an integer factor is exact.
    """
    in_features = params["c"].shape[0]
    knots_IS = jnp.broadcast_to(jnp.asarray(knots), (in_features, jnp.shape(knots)[-1]))
    grid_size = knots_IS.shape[-1] - 2 * degree - 1
    if new_grid_size < grid_size:
        raise ValueError(f"new_grid_size must be >= the grid size {grid_size}, got {new_grid_size}")
    new_knots = refine_knots(knots_IS, degree, new_grid_size)
    x_NI = range_samples(knots_IS, degree, samples_per_interval * (new_grid_size + degree))
    return refit_to_knots(params, knots_IS, new_knots, x_NI, degree), new_knots
