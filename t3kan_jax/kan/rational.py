"""Group-rational KAN (GR-KAN, KAT: Yang & Wang 2024, §4) as pure functions.

`φ_g(x) = P(x) / Q_g(x)` with `P(x) = Σ_{i=0..5} a_i x^i` shared by all channels and
`Q_g(x) = 1 + Σ_{i=1..4} |b_{g,i}| |x|^i` (never below 1) per channel group: the channels of
`x [..., D]` are split into G contiguous groups of D / G.
Params `{"numerator": [6], "denominator": [G, 4]}`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax.kan import rational_coeffs

RATIONAL_INITS = ("swish", "gelu", "identity")


def _horner(coeffs, x):
    """`Σ_i coeffs[i] x^i`, coefficients over the last axis of `coeffs`, lowest order first."""
    acc = coeffs[..., -1]
    for i in range(coeffs.shape[-1] - 2, -1, -1):
        acc = acc * x + coeffs[..., i]
    return acc


def rational(x, numerator, denominator):
    """`P(x) / Q(x)` elementwise for one group (`denominator [4]`) or broadcast coefficients."""
    ax = jnp.abs(x)
    return _horner(numerator, x) / (1.0 + ax * _horner(jnp.abs(denominator), ax))


def group_rational(params, x):
    """GR-KAN activation `[..., D] -> [..., D]`, group g = channel // (D / G)."""
    den_G4 = params["denominator"]
    num_groups = den_G4.shape[0]
    width = x.shape[-1]
    if width % num_groups:
        raise ValueError(f"width {width} must be divisible by num_groups={num_groups}")
    dtype = jnp.result_type(x, jnp.float32)
    x_GC = x.astype(dtype).reshape(*x.shape[:-1], num_groups, width // num_groups)
    den = den_G4.astype(dtype)[:, None, :]  # [G, 1, 4] broadcasts over the group's channels
    y = rational(x_GC, params["numerator"].astype(dtype), den)
    return y.reshape(x.shape).astype(x.dtype)


def rational_init_coefficients(init: str):
    """`(numerator [6], denominator [4])`: fitted to Swish or GELU (experiments/fit_rational.py),
    or the identity `P(x) = x, Q = 1` (KAT's first activation of each MLP)."""
    if init == "swish":
        return np.asarray(rational_coeffs.SWISH_NUMERATOR), np.asarray(
            rational_coeffs.SWISH_DENOMINATOR
        )
    if init == "gelu":
        return np.asarray(rational_coeffs.GELU_NUMERATOR), np.asarray(
            rational_coeffs.GELU_DENOMINATOR
        )
    if init == "identity":
        return np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0]), np.zeros(4)
    raise ValueError(f"init must be one of {RATIONAL_INITS}, got {init!r}")


def group_rational_init(num_groups: int = 8, init: str = "swish", dtype=jnp.float32):
    """Params with every group starting at the same fitted rational."""
    if num_groups < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}")
    num, den = rational_init_coefficients(init)
    return {
        "numerator": jnp.asarray(num, dtype),
        "denominator": jnp.tile(jnp.asarray(den, dtype)[None], (num_groups, 1)),
    }


def rational_second_moment(numerator, denominator, std: float = 1.0, num_points: int = 64):
    """`E[φ(x)²]` for x ~ N(0, std²) by Gauss–Hermite quadrature (numpy, for initialisers)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_points)
    x = std * nodes
    num, den = np.asarray(numerator, np.float64), np.abs(np.asarray(denominator, np.float64))
    p = np.polyval(num[::-1], x)
    q = 1.0 + np.abs(x) * np.polyval(den[::-1], np.abs(x))
    return float(np.sum(weights * (p / q) ** 2) / math.sqrt(2 * math.pi))


def variance_preserving_init(second_moment: float, distribution: str = "normal"):
    """Initializer `(key, shape, dtype)` for the Dense layer after φ (KAT §4.3): with inputs of unit
    variance, `Var[y] = fan_in Var[w] E[φ(x)²]`, so `Var[w] = 1 / (fan_in E[φ(x)²])`."""
    if second_moment <= 0:
        raise ValueError(f"second_moment must be > 0, got {second_moment}")
    return jax.nn.initializers.variance_scaling(1.0 / second_moment, "fan_in", distribution)
