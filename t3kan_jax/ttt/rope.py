"""Rotary position embedding along the sequence axis (Su et al. 2021, RoFormer eq. 34)."""

import jax
import jax.numpy as jnp


def apply_rope(x_THF: jax.Array, positions_T: jax.Array, theta: float = 10000.0) -> jax.Array:
    """Rotates feature pairs `(x_i, x_{i+F/2})` of `x [..., T, H, F]` by `position · θ^(-2i/F)`.

    Dot products of rotated queries and keys then depend on positions only through their
    difference. The rotation is computed in float32 (at least) and cast back to `x.dtype`.
    """
    f = x_THF.shape[-1]
    if f % 2:
        raise ValueError(f"RoPE needs an even head dim, got {f}")
    dtype = jnp.promote_types(x_THF.dtype, jnp.float32)
    inv_freq = theta ** (-jnp.arange(0, f, 2, dtype=dtype) / f)
    angles = (jnp.asarray(positions_T, dtype)[:, None] * inv_freq)[:, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x_THF.astype(dtype), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x_THF.dtype)
