"""Muon-style orthogonalisation by a quintic Newton–Schulz iteration (Jordan et al. 2024, "Muon").

`X ← a X + (b A + c A²) X` with `A = X Xᵀ` maps every singular value σ of X (after scaling X to unit
Frobenius norm, so σ ≤ 1) through `p(σ) = aσ + bσ³ + cσ⁵` and keeps the singular vectors. The
coefficients (3.4445, −4.7750, 2.0315) trade exactness for speed: after 5 steps every singular
value that started in [2e-3, 1] (relative to ‖G‖_F) lies in [0.68, 1.21] instead of converging to
1, which is enough to use `NS(G) ≈ U Vᵀ` (G = U Σ Vᵀ) as an update direction. LaCT
(arXiv 2505.23884, §3) applies it to the fast-weight gradient of each chunk.
"""

import jax
import jax.numpy as jnp

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def frobenius_norm(x, axis=(-2, -1), keepdims=True):
    """`‖x‖` over `axis`, with a zero (not NaN) gradient at x = 0 (double-`where`)."""
    squares = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def newton_schulz(g_IO: jax.Array, steps: int = NS_STEPS, coeffs=NS_COEFFS, eps: float = NS_EPS):
    """Approximate orthogonalisation `U Vᵀ` of the matrices `g [..., I, O]` (same shape out).

    The iteration runs on the wide orientation (rows <= columns), so `A = X Xᵀ` is the smaller
    Gram matrix; a zero matrix maps to zero.
    """
    if g_IO.ndim < 2:
        raise ValueError(f"newton_schulz needs matrices [..., I, O], got shape {g_IO.shape}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r}: must be an int >= 0")
    a, b, c = coeffs
    tall = g_IO.shape[-2] > g_IO.shape[-1]
    x = jnp.swapaxes(g_IO, -1, -2) if tall else g_IO
    x = x / (frobenius_norm(x) + eps)
    for _ in range(steps):
        gram = x @ jnp.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return jnp.swapaxes(x, -1, -2) if tall else x
