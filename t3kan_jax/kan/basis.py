"""B-spline knots and bases (Cox–de Boor), pure JAX; KAN paper (Liu et al. 2024) §2.2.

Knots are `[..., S]`: one shared knot vector `[S]`, or one per input feature `[I, S]` that
broadcasts against the last axis of `x` (the grid update gives every input its own knots).
"""

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


def _reciprocal(den):
    """`1 / den` for positive knot spans, 0 for empty ones, finite gradients (double `where`)."""
    positive = den > 0
    return jnp.where(positive, 1.0 / jnp.where(positive, den, 1.0), 0.0)


def _check_knots(knots, degree: int, min_bases: int = 1) -> jnp.ndarray:
    knots_S = jnp.asarray(knots)
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    if knots_S.ndim < 1 or knots_S.shape[-1] < degree + 1 + min_bases:
        raise ValueError(
            f"knots must have a last axis of at least degree + {1 + min_bases} = "
            f"{degree + 1 + min_bases} entries, got shape {knots_S.shape}"
        )
    return knots_S


def _basis(x_1, knots_S, degree: int):
    """Cox–de Boor recursion from degree 0 up to `degree`; `x_1` is `x[..., None]`."""
    ge = x_1 >= knots_S  # compared once, reused for every support mask
    b = (ge[..., :-1] & ~ge[..., 1:]).astype(x_1.dtype)
    for p in range(1, degree + 1):
        b = _step(x_1, knots_S, ge, b, p)
    return b


def _promote(x, knots_S):
    dtype = jnp.result_type(x, knots_S, jnp.float32)
    return jnp.asarray(x, dtype)[..., None], knots_S.astype(dtype)


def bspline_basis(x, knots, degree: int) -> jnp.ndarray:
    """All degree-`degree` B-spline bases at `x`: `[..., len(knots) - degree - 1]`.

    Half-open intervals `[t_i, t_{i+1})`; repeated knots give empty intervals and 0/0 := 0, so
    values and gradients (with respect to `x` and to the knots) stay finite.
    """
    knots_S = _check_knots(knots, degree)
    return _basis(*_promote(x, knots_S), degree)


def _step(x_1, knots_S, ge, b, p: int):
    """One Cox–de Boor step, degree p - 1 bases `b` -> degree p:
    `B_{i,p} = (x - t_i)/(t_{i+p} - t_i) B_{i,p-1}
             + (t_{i+p+1} - x)/(t_{i+p+1} - t_{i+1}) B_{i+1,p-1}`.

    Each ratio is kept only on the support of the basis it multiplies (`ge[j] = x >= t_j`), where
    it lies in [0, 1]: unmasked, ratios far outside the grid or beside nearly colliding knots
    overflow in the backward pass (an inf cotangent times a zero basis is NaN).
    """
    lo, hi = knots_S[..., : -(p + 1)], knots_S[..., p + 1 :]
    left_hi, right_lo = knots_S[..., p:-1], knots_S[..., 1:-p]
    in_left = ge[..., : -(p + 1)] & ~ge[..., p:-1]  # x in [t_i, t_{i+p})
    in_right = ge[..., 1:-p] & ~ge[..., p + 1 :]  # x in [t_{i+1}, t_{i+p+1})
    left = jnp.where(in_left, (x_1 - lo) * _reciprocal(left_hi - lo), 0.0)
    right = jnp.where(in_right, (hi - x_1) * _reciprocal(hi - right_lo), 0.0)
    return left * b[..., :-1] + right * b[..., 1:]


def _derivative(knots_S, b, p: int):
    """`dB_{i,p}/dx` from the degree p - 1 bases `b` (p >= 1)."""
    left = b[..., :-1] * _reciprocal(knots_S[..., p:-1] - knots_S[..., : -(p + 1)])
    right = b[..., 1:] * _reciprocal(knots_S[..., p + 1 :] - knots_S[..., 1:-p])
    return p * (left - right)


def bspline_basis_and_derivative(x, knots, degree: int):
    """`(B(x), dB/dx)`, both `[..., len(knots) - degree - 1]`, from one recursion.

    `dB_{i,p}/dx = p B_{i,p-1}/(t_{i+p} - t_i) - p B_{i+1,p-1}/(t_{i+p+1} - t_{i+1})` with 0/0 := 0;
    zero for degree 0.
    """
    knots_S = _check_knots(knots, degree)
    x_1, knots_S = _promote(x, knots_S)
    if degree == 0:
        b = _basis(x_1, knots_S, 0)
        return b, jnp.zeros_like(b)
    b = _basis(x_1, knots_S, degree - 1)
    ge = x_1 >= knots_S
    return _step(x_1, knots_S, ge, b, degree), _derivative(knots_S, b, degree)


def bspline_basis_derivative(x, knots, degree: int) -> jnp.ndarray:
    """`dB/dx` alone (see `bspline_basis_and_derivative`)."""
    return bspline_basis_and_derivative(x, knots, degree)[1]
