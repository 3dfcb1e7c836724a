"""The depthwise causal conv of the TTT layer and the T3 block (official code: `nn.Conv`)."""

import flax.linen as nn
import jax.numpy as jnp


class DepthwiseCausalConv(nn.Module):
    """nn.Conv's depthwise causal conv along time (same parameters and init) as shifted adds."""

    width: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BTD):
        t, features = x_BTD.shape[-2:]
        # nn.Conv's layout and init (kernel [width, in/groups = 1, D], lecun_normal; zero bias),
        # so checkpoints of either load into the other. XLA lowers nn.Conv's grouped conv to cuDNN,
        # whose backward takes ~6x the time of these fused multiply-adds (docs/performance.md).
        kernel_W1D = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.width, 1, features), self.param_dtype
        )
        bias_D = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        # Operands rounded to `dtype` as nn.Conv rounds them; products and sum in float32.
        x_BTD, kernel_W1D, bias_D = (
            a.astype(self.dtype).astype(jnp.float32) for a in (x_BTD, kernel_W1D, bias_D)
        )
        pad = [(0, 0)] * (x_BTD.ndim - 2) + [(self.width - 1, 0), (0, 0)]
        padded_BSD = jnp.pad(x_BTD, pad)
        # Output t sees inputs t-width+1..t: tap j multiplies input t-(width-1)+j.
        taps = (padded_BSD[..., j : j + t, :] * kernel_W1D[j, 0] for j in range(self.width))
        return (bias_D + sum(taps)).astype(self.dtype)
