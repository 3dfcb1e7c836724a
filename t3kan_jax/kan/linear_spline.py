"""Linear-spline KAN layer (KANditioned) as pure functions.

Every edge is a uniform C⁰ spline with K control points on `[-w/2, w/2]`:
`u = (x + w/2)(K - 1)/w`, `j = clip(floor(u), 0, K - 2)`, `t = u - j` (not clipped, so the end
pieces extrapolate linearly), `φ(x) = (1 - t) c_j + t c_{j+1}`: a gather and a lerp, O(1) in K.
Params `{"c": [I, O, K], "b": [O] (optional)}`.
"""

import jax
import jax.numpy as jnp

LINEAR_SPLINE_INITS = ("random_normal", "identity", "zero")
LINEAR_SPLINE_IMPLS = ("dense", "gather")


def control_points(num_control_points: int, spline_width: float, dtype=jnp.float32):
    """The K uniform control-point positions on `[-w/2, w/2]`."""
    return jnp.linspace(-spline_width / 2, spline_width / 2, num_control_points, dtype=dtype)


def lerp_index(x, num_control_points: int, spline_width: float):
    """`(j, t)` with `x = knot_j + t · spacing`; `j` in `[0, K - 2]`, `t` unclipped."""
    if num_control_points < 2:
        raise ValueError(f"num_control_points must be >= 2, got {num_control_points}")
    x = jnp.asarray(x)
    dtype = jnp.result_type(x, jnp.float32)
    u = (x.astype(dtype) + spline_width / 2) * ((num_control_points - 1) / spline_width)
    j = jnp.clip(jnp.floor(u), 0, num_control_points - 2)
    return j.astype(jnp.int32), u - j


def linear_spline_init(
    key, in_features: int, out_features: int, num_control_points: int = 32,
    spline_width: float = 4.0, init: str = "random_normal", use_bias: bool = False,
    dtype=jnp.float32,
):  # fmt: skip
    """Every edge starts as a line `φ_io(x) = s_io x`, so `y = x S`: "random_normal" draws
    S ~ N(0, 1) with unit-norm columns (one per output neuron), "identity" is S = I (exactly
    `y = x`, also outside the domain), "zero" is S = 0."""
    if init == "random_normal":
        s_IO = jax.random.normal(key, (in_features, out_features), dtype)
        s_IO = s_IO / jnp.linalg.norm(s_IO, axis=0, keepdims=True)
    elif init == "identity":
        if in_features != out_features:
            raise ValueError(
                f"init='identity' needs in_features == out_features, got {in_features} != "
                f"{out_features}"
            )
        s_IO = jnp.eye(in_features, dtype=dtype)
    elif init == "zero":
        s_IO = jnp.zeros((in_features, out_features), dtype)
    else:
        raise ValueError(f"init must be one of {LINEAR_SPLINE_INITS}, got {init!r}")
    params = {"c": s_IO[..., None] * control_points(num_control_points, spline_width, dtype)}
    if use_bias:
        params["b"] = jnp.zeros((out_features,), dtype)
    return params


def linear_spline_edges(params, x, spline_width: float):
    """Every edge function `φ_io(x_i)`: `[..., I, O]` by gathering `c_j, c_{j+1}` and lerping."""
    c_IOK = params["c"]
    j, t = lerp_index(x, c_IOK.shape[-1], spline_width)
    j_IO1 = jnp.broadcast_to(j[..., None, None], (*j.shape, c_IOK.shape[1], 1))
    c = jnp.broadcast_to(c_IOK, (*j.shape[:-1], *c_IOK.shape))
    lo = jnp.take_along_axis(c, j_IO1, axis=-1)[..., 0]
    hi = jnp.take_along_axis(c, j_IO1 + 1, axis=-1)[..., 0]
    t = t[..., None].astype(lo.dtype)
    return lo + t * (hi - lo)


def hat_features(x, num_control_points: int, spline_width: float, dtype=None):
    """`[..., I K]`: per input the two nonzero hat weights, `1 - t` at `j` and `t` at `j + 1`."""
    j, t = lerp_index(x, num_control_points, spline_width)
    k = jnp.arange(num_control_points, dtype=jnp.int32)
    j1, t1 = j[..., None], t[..., None]
    h = jnp.where(k == j1, 1.0 - t1, 0.0) + jnp.where(k == j1 + 1, t1, 0.0)
    h = h.reshape(*h.shape[:-2], -1)
    return h if dtype is None else h.astype(dtype)


def _apply_dense(c_IOK, x, spline_width, compute_dtype):
    """One matmul of the hat features with `C` laid out `[I K, O]`: tensor-core friendly."""
    in_features, out_features, n = c_IOK.shape
    h = hat_features(x, n, spline_width, compute_dtype)
    w = jnp.swapaxes(c_IOK, 1, 2).reshape(in_features * n, out_features)
    w = w if compute_dtype is None else w.astype(compute_dtype)
    acc = jnp.result_type(h.dtype, w.dtype, jnp.float32)
    return jax.lax.dot_general(h, w, (((h.ndim - 1,), (0,)), ((), ())), preferred_element_type=acc)


def _apply_gather(c_IOK, x, spline_width, compute_dtype):
    """Gather the rows `c[i, :, j]`, `c[i, :, j + 1]` and lerp-sum over inputs (KANditioned's
    embedding-bag form); materialises `[..., I, O]`."""
    in_features, out_features, n = c_IOK.shape
    table = jnp.swapaxes(c_IOK, 1, 2).reshape(in_features * n, out_features)
    table = table if compute_dtype is None else table.astype(compute_dtype)
    j, t = lerp_index(x, n, spline_width)
    row = j + n * jnp.arange(in_features, dtype=jnp.int32)
    lo, hi = jnp.take(table, row, axis=0), jnp.take(table, row + 1, axis=0)
    acc = jnp.result_type(table.dtype, jnp.float32)
    t = t[..., None].astype(acc)
    return (lo.astype(acc) + t * (hi.astype(acc) - lo.astype(acc))).sum(axis=-2)


def linear_spline_apply(params, x, spline_width: float, *, impl="dense", compute_dtype=None):
    """The layer `[..., I] -> [..., O]`, `y_o = Σ_i φ_io(x_i) (+ b_o)`.

    impl "dense": hat features times `C` in one matmul (K x a Dense layer's FLOPs, no gathers);
    "gather": gather + lerp (O(1) in K, memory O(batch I O)). Both are exact and equal.
    """
    c_IOK = params["c"]
    if jnp.shape(x)[-1] != c_IOK.shape[0]:
        raise ValueError(f"x must have a last axis of size {c_IOK.shape[0]}, got {jnp.shape(x)}")
    if impl == "dense":
        y = _apply_dense(c_IOK, x, spline_width, compute_dtype)
    elif impl == "gather":
        y = _apply_gather(c_IOK, x, spline_width, compute_dtype)
    else:
        raise ValueError(f"impl must be one of {LINEAR_SPLINE_IMPLS}, got {impl!r}")
    if "b" in params:
        y = y + params["b"].astype(y.dtype)
    return y if compute_dtype is None else y.astype(compute_dtype)
