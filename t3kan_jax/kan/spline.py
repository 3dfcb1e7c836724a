"""Dense B-spline KAN layer as pure functions (efficient-KAN form of KAN, Liu et al. 2024 eq. 2.10).

`y = silu(x) W_base + B(x)·(C ⊙ scale) (+ b)` with params `{"w_base": [I, O], "c": [I, O, K],
"scale": [I, O] (optional), "b": [O] (optional)}` and knots `[S]` or `[I, S]`, K = S - degree - 1.
The layer is one matmul of the features `[silu(x_i), B_0(x_i), ..., B_{K-1}(x_i)]_i`
(`[..., I(K+1)]`) with the weight `[I(K+1), O]` built from `W_base` and `C ⊙ scale`: (K+1)x the
FLOPs of a Dense layer.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from t3kan_jax.kan.basis import bspline_basis, bspline_basis_and_derivative

SPLINE_INITS = ("noise", "zero", "silu")


@functools.cache
def basis_fn(degree: int):
    """`(x, knots) -> B(x)` for one degree, lean in memory: a custom JVP takes `dB/dx` from one
    recursion (not autodiff through every step), and remat makes the backward pass recompute it
    from `x` where it is consumed, so no `[..., I, K]` residual is kept."""

    @jax.custom_jvp
    def basis(x, knots):
        return bspline_basis(x, knots, degree)

    def basis_jvp(primals, tangents):
        x, knots = primals
        dx, dknots = tangents
        b, db_dx = bspline_basis_and_derivative(x, knots, degree)
        db = jnp.zeros_like(b)
        if not isinstance(dx, SymbolicZero):
            db = db_dx * jnp.asarray(dx, b.dtype)[..., None]
        if not isinstance(dknots, SymbolicZero):
            db = db + jax.jvp(lambda t: bspline_basis(x, t, degree), (knots,), (dknots,))[1]
        return b, db

    basis.defjvp(basis_jvp, symbolic_zeros=True)
    return jax.checkpoint(basis, policy=jax.checkpoint_policies.nothing_saveable)


def kan_features(x, knots, degree: int):
    """`(silu(x) [..., I], B(x) [..., I, K])`: the two feature sets a KAN layer is linear in."""
    x = jnp.asarray(x)
    b = basis_fn(degree)(x, jnp.asarray(knots))
    return jax.nn.silu(x.astype(b.dtype)), b


def kan_flat_features(x, knots, degree: int, dtype=None):
    """`[..., I(K+1)]`: per input i the row `[silu(x_i), B_0(x_i), ..., B_{K-1}(x_i)]`."""
    silu_I, b_IK = kan_features(x, knots, degree)
    phi = jnp.concatenate([silu_I[..., None], b_IK], axis=-1)
    phi = phi.reshape(*phi.shape[:-2], -1)
    return phi if dtype is None else phi.astype(dtype)


def spline_coefficients(params):
    """`C ⊙ scale` `[I, O, K]` (just `C` when the params have no per-edge scale)."""
    c_IOK = params["c"]
    return c_IOK * params["scale"][..., None] if "scale" in params else c_IOK


def kan_flat_weight(params, dtype=None):
    """`[I(K+1), O]`: row `(i, 0)` is `W_base[i]`, row `(i, 1 + k)` is `(C ⊙ scale)[i, :, k]`."""
    c_IKO = jnp.swapaxes(spline_coefficients(params), 1, 2)
    w = jnp.concatenate([params["w_base"][:, None, :].astype(c_IKO.dtype), c_IKO], axis=1)
    w = w.reshape(-1, w.shape[-1])
    return w if dtype is None else w.astype(dtype)


def kan_apply(params, x, knots, degree: int, *, compute_dtype=None):
    """The layer `[..., I] -> [..., O]` as one fused matmul.

    `compute_dtype` (e.g. bfloat16) casts features and weight for the matmul, which accumulates in
    float32 (`preferred_element_type`); the output then has `compute_dtype`.
    """
    phi = kan_flat_features(x, knots, degree, compute_dtype)
    w = kan_flat_weight(params, compute_dtype)
    acc = jnp.result_type(phi.dtype, w.dtype, jnp.float32)
    y = jax.lax.dot_general(phi, w, (((phi.ndim - 1,), (0,)), ((), ())), preferred_element_type=acc)
    if "b" in params:
        y = y + params["b"].astype(acc)
    return y if compute_dtype is None else y.astype(compute_dtype)


def kan_edge_parts(params, x, knots, degree: int):
    """Per-edge base and spline paths `(w_base_io silu(x_i), Σ_k (C ⊙ scale)_iok B_k(x_i))`,
    each `[..., I, O]` (for plots and regularisation; the layer output is their sum over I + b)."""
    silu_I, b_IK = kan_features(x, knots, degree)
    base = silu_I[..., None] * params["w_base"]
    spline = jnp.einsum("...ik,iok->...io", b_IK, spline_coefficients(params))
    return base, spline


def kan_regularization(params, x, knots, degree: int, *, l1: float = 1.0, entropy: float = 2.0):
    """pykan's regulariser: `l1 Σ_e A_e + entropy H(A / Σ A)`, A_e = mean |φ_e(x)| per edge."""
    base, spline = kan_edge_parts(params, x, knots, degree)
    act = jnp.abs(base + spline)
    a_IO = act.reshape(-1, *act.shape[-2:]).mean(axis=0)
    total = a_IO.sum()
    p = jnp.where(total > 0, a_IO / jnp.where(total > 0, total, 1.0), 0.0)
    positive = p > 0
    plogp = jnp.where(positive, p * jnp.log2(jnp.where(positive, p, 1.0)), 0.0)
    return l1 * total - entropy * plogp.sum()


def _uniform(key, shape, dtype, lo, hi):
    """`jax.random.uniform` drawn flat and reshaped: XLA:CPU compiles N-d threefry ~10x slower."""
    return jax.random.uniform(key, (math.prod(shape),), dtype, lo, hi).reshape(shape)


def kaiming_uniform_bound(fan_in: int, a: float) -> float:
    """PyTorch's `kaiming_uniform_(w, a)` bound `sqrt(6 / ((1 + a^2) fan_in))` (efficient-KAN)."""
    return math.sqrt(6.0 / ((1.0 + a * a) * fan_in))


def init_base_weight(key, in_features: int, out_features: int, scale_base=1.0, dtype=jnp.float32):
    """`W_base [I, O]` ~ U(±bound), efficient-KAN's `kaiming_uniform_(a = sqrt(5) scale_base)`."""
    bound = kaiming_uniform_bound(in_features, math.sqrt(5.0) * scale_base)
    return _uniform(key, (in_features, out_features), dtype, -bound, bound)


def init_spline_scale(
    key, in_features: int, out_features: int, scale_spline=1.0, dtype=jnp.float32
):
    """Per-edge `scale [I, O]`, efficient-KAN's `kaiming_uniform_(a = sqrt(5) scale_spline)`."""
    bound = kaiming_uniform_bound(in_features, math.sqrt(5.0) * scale_spline)
    return _uniform(key, (in_features, out_features), dtype, -bound, bound)


def fit_silu_coefficients(knots, degree: int, num_samples: int = 256):
    """Least-squares `[..., K]` with `B(x)·c ≈ silu(x)` on each knot vector's `[t_p, t_{S-p-1}]`."""
    knots = jnp.asarray(knots, jnp.float32)
    lo, hi = knots[..., degree], knots[..., -degree - 1]
    u = jnp.linspace(0.0, 1.0, num_samples, endpoint=False)
    x_MN = jnp.moveaxis(lo[..., None] + (hi - lo)[..., None] * u, -1, 0)  # [M, ...]
    a = jnp.moveaxis(bspline_basis(x_MN, knots, degree), 0, -2)  # [..., M, K]
    y = jnp.moveaxis(jax.nn.silu(x_MN), 0, -1)[..., None]  # [..., M, 1]
    return (jnp.linalg.pinv(a) @ y)[..., 0]


def init_spline_coefficients(
    key, in_features: int, out_features: int, knots, degree: int, mode="noise", scale_noise=0.1,
    dtype=jnp.float32,
):  # fmt: skip
    """`C [I, O, K]`: "noise" U(±scale_noise / 2G) (efficient-KAN), "zero", or "silu" (every edge
    starts as the least-squares spline of silu, so `scale` alone sets its size)."""
    knots = jnp.asarray(knots)
    n_basis = knots.shape[-1] - degree - 1
    shape = (in_features, out_features, n_basis)
    if mode == "noise":
        grid_size = n_basis - degree
        return _uniform(key, shape, dtype, -0.5, 0.5) * (scale_noise / grid_size)
    if mode == "zero":
        return jnp.zeros(shape, dtype)
    if mode == "silu":
        c_K = fit_silu_coefficients(knots, degree)
        c_IK = jnp.broadcast_to(c_K, (in_features, n_basis))
        return jnp.broadcast_to(c_IK[:, None, :], shape).astype(dtype)
    raise ValueError(f"spline_init must be one of {SPLINE_INITS}, got {mode!r}")


def kan_init(
    key, in_features: int, out_features: int, knots, degree: int, *, spline_init="noise",
    scale_noise=0.1, scale_base=1.0, scale_spline=1.0, spline_scale=True, use_bias=False,
    dtype=jnp.float32,
):  # fmt: skip
    """Params dict of one KAN layer (see the module docstring) with efficient-KAN's init."""
    k_base, k_c, k_scale = jax.random.split(key, 3)
    params = {
        "w_base": init_base_weight(k_base, in_features, out_features, scale_base, dtype),
        "c": init_spline_coefficients(
            k_c, in_features, out_features, knots, degree, spline_init, scale_noise, dtype
        ),
    }
    if spline_scale:
        params["scale"] = init_spline_scale(k_scale, in_features, out_features, scale_spline, dtype)
    if use_bias:
        params["b"] = jnp.zeros((out_features,), dtype)
    return params
