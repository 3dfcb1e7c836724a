"""Mini-batch bookkeeping shared by the inner-loop implementations (the scan and the kernels)."""

import jax
import numpy as np


def carried_rates(s_N: jax.Array, lr_MN: jax.Array, t: int) -> jax.Array:
    """`η_last [M, b] = s_last · lr`: the rates of the update each mini-batch carries on."""
    # The carried state is that of the mini-batch's last real token (TTT paper §2.4): a shorter
    # last mini-batch of the `t` tokens (padded with lr 0) uses the scale of its own last token.
    m, n = lr_MN.shape
    last_M = np.clip(t - n * np.arange(m), 1, n) - 1
    return s_N[last_M][:, None] * lr_MN
