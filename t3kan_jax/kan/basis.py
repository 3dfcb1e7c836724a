"""B-spline knots and bases (Cox–de Boor), pure JAX; KAN paper (Liu et al. 2024) §2.2."""

import jax.numpy as jnp


def uniform_knots(grid_size: int, degree: int, lo=-1.0, hi=1.0) -> jnp.ndarray:
    """Extended uniform knot vector `t_j = lo + (j - p) h`, j = 0..G+2p, h = (hi - lo) / G."""
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    lo, hi = jnp.asarray(lo), jnp.asarray(hi)
    dtype = jnp.result_type(lo, hi, jnp.float32)
    j_S = jnp.arange(grid_size + 2 * degree + 1, dtype=dtype)
    return lo.astype(dtype) + (j_S - degree) * (hi - lo).astype(dtype) / grid_size


def _safe_ratio(num, den):
    """`num / den` with 0/0 := 0 and finite gradients (the double-`where` pattern)."""
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1.0), 0.0)


def bspline_basis(x, knots, degree: int) -> jnp.ndarray:
    """All degree-`degree` B-spline bases at `x`: `[..., len(knots) - degree - 1]`.

    Half-open intervals `[t_i, t_{i+1})`; repeated knots give empty intervals and 0/0 := 0, so
    values and gradients (with respect to `x` and to the knots) stay finite.
    """
    knots_S = jnp.asarray(knots)
    if knots_S.ndim != 1 or knots_S.shape[0] < degree + 2:
        raise ValueError(
            f"knots must be 1-D with at least degree + 2 = {degree + 2} entries, "
            f"got shape {knots_S.shape}"
        )
    dtype = jnp.result_type(x, knots_S, jnp.float32)
    x_1 = jnp.asarray(x, dtype)[..., None]
    knots_S = knots_S.astype(dtype)
    b = ((x_1 >= knots_S[:-1]) & (x_1 < knots_S[1:])).astype(dtype)
    for p in range(1, degree + 1):
        lo_K, hi_K = knots_S[: -(p + 1)], knots_S[p + 1 :]
        left = _safe_ratio(x_1 - lo_K, knots_S[p:-1] - lo_K) * b[..., :-1]
        right = _safe_ratio(hi_K - x_1, hi_K - knots_S[1:-p]) * b[..., 1:]
        b = left + right
    return b
