"""The depthwise causal conv of the TTT layer and the T3 block (official code: `nn.Conv`)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


class DepthwiseCausalConv(nn.Module):
    """nn.Conv's depthwise causal conv along time (same parameters and init) as shifted adds."""

    width: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BTD):
        features = x_BTD.shape[-1]
        # nn.Conv's layout and init (kernel [width, in/groups = 1, D], lecun_normal; zero bias),
        # so checkpoints of either load into the other. XLA lowers nn.Conv's grouped conv to cuDNN,
        # whose backward takes ~6x the time of these fused multiply-adds (docs/performance.md).
        kernel_W1D = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.width, 1, features), self.param_dtype
        )
        bias_D = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        # Operands rounded to `dtype` as nn.Conv rounds them.
        return shifted_conv(*(a.astype(self.dtype) for a in (x_BTD, kernel_W1D, bias_D)))


# Recomputed in the backward pass: otherwise every float32 shifted slice of x is saved (width x
# 2x the bytes of a bf16 x, per conv and layer), where nn.Conv saves x alone.
@functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.nothing_saveable)
def shifted_conv(x_BTD, kernel_W1D, bias_D):
    """`y_t = b + Σ_j w_j x_{t-(width-1)+j}` (zero x before the start), float32 sums, x's dtype."""
    width, t = kernel_W1D.shape[0], x_BTD.shape[-2]
    x32_BTD, kernel_W1D, bias_D = (a.astype(jnp.float32) for a in (x_BTD, kernel_W1D, bias_D))
    pad = [(0, 0)] * (x_BTD.ndim - 2) + [(width - 1, 0), (0, 0)]
    padded_BSD = jnp.pad(x32_BTD, pad)
    taps = (padded_BSD[..., j : j + t, :] * kernel_W1D[j, 0] for j in range(width))
    return (bias_D + sum(taps)).astype(x_BTD.dtype)
