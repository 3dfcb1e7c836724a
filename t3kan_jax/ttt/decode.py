"""Constant-size decoding state of mini-batch TTT (Sun et al. 2024, §2.4–2.5), one head.

Inside a mini-batch every gradient is taken at its starting weights `W_0`, and token i (1-based)
uses `W_i = W_0 − s_i Σ_{j≤i} lr_j ∇ℓ_j(W_0)` (η_ij = s_i lr_j, TTT paper eq. 8 and §2.7). So all a
token needs is `W_0` and the gradient-shaped running sum `Σ_{j≤i} lr_j ∇ℓ_j(W_0)` (`jax.grad` of
the learner's loss); at the mini-batch end `W_0 ← W_0 − s_b Σ` and the sum restarts from zero, as
`inner_loop` carries `W_b` with no gradient. The state's size does not depend on the tokens seen;
the index inside the mini-batch is the token's position modulo b (mini-batches start at 0).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from t3kan_jax.ttt.inner_loop import default_token_scale, inner_loop
from t3kan_jax.ttt.learners import Learner, get_learner


class DecodeState(NamedTuple):
    """The updated inner entries at the current mini-batch start, and the gradient sum."""

    w0: dict
    grad_sum: dict


def tail(x_BTD: jax.Array, size: int) -> jax.Array:
    """The last `size` steps of `x_BTD` along T, zero-padded on the left (a causal conv window)."""
    b, t, d = x_BTD.shape
    if size == 0:
        return jnp.zeros((b, 0, d), x_BTD.dtype)
    if t < size:
        x_BTD = jnp.concatenate([jnp.zeros((b, size - t, d), x_BTD.dtype), x_BTD], axis=1)
    return x_BTD[:, -size:]


def conv_after_window(conv, x_BTD: jax.Array, window_BWD: jax.Array | None, width: int):
    """A causal conv (`conv`: [B, T, D] -> [B, T, D], width `width`) of `x_BTD` continuing after
    `window_BWD`, the width - 1 inputs before it (None at the sequence start); and the window
    after `x_BTD`."""
    if window_BWD is None:
        return conv(x_BTD), tail(x_BTD, width - 1)
    x_BTD = jnp.concatenate([window_BWD.astype(x_BTD.dtype), x_BTD], axis=1)
    return conv(x_BTD)[:, width - 1 :], tail(x_BTD, width - 1)


def _learner(kind) -> Learner:
    return kind if isinstance(kind, Learner) else get_learner(kind)


def _token_loss(learner: Learner, fixed: dict, w: dict, k_F, v_F):
    p = {**fixed, **w}
    return learner.loss(p, learner.apply(p, k_F), k_F, v_F)


def prefill(kind, params, xq, xk, xv, lr, *, mini_batch_size: int = 16, token_scale=None, **opts):
    """`inner_loop`'s outputs `[T, d]` for tokens 0..T-1 and the `DecodeState` after them.

    The whole mini-batches run through `inner_loop` (the parallel form `opts["form"]`), then the
    trailing partial one from their final weights `W_0`; its state's gradient sum is one `jax.grad`
    of `Σ_j lr_j ℓ_j(W_0)`. `opts` go to `inner_loop` (form, unroll, remat_every, impl).
    """
    learner = _learner(kind)
    n, t = mini_batch_size, xq.shape[0]
    full = t - t % n

    def run(p, start, stop):
        return inner_loop(
            learner, p, xq[start:stop], xk[start:stop], xv[start:stop], lr[start:stop],
            mini_batch_size=n, token_scale=token_scale, **opts,
        )  # fmt: skip

    outs = []
    if full:
        out, params = run(params, 0, full)
        outs.append(out)
    dtype = jnp.promote_types(
        jnp.result_type(xq, xk, xv, lr, *jax.tree.leaves(params)), jnp.float32
    )
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    w0, fixed = learner.split(params)
    if full < t:
        out, _ = run(params, full, t)
        outs.append(out)

        def weighted_loss(w):
            loss = jax.vmap(lambda k, v: _token_loss(learner, fixed, w, k, v))
            return jnp.sum(lr[full:].astype(dtype) * loss(xk[full:].astype(dtype),
                                                          xv[full:].astype(dtype)))  # fmt: skip

        grad_sum = jax.grad(weighted_loss)(w0)
    else:
        grad_sum = jax.tree.map(jnp.zeros_like, w0)
    return jnp.concatenate(outs), DecodeState(w0, grad_sum)


def step(kind, params, state: DecodeState, q_F, k_F, v_F, lr, position, *,
         mini_batch_size: int = 16, token_scale=None):  # fmt: skip
    """The output `[d]` of the token at `position` and the state after it.

    `params`: the head's inner params (only the entries the inner loop keeps fixed are read).
    """
    learner = _learner(kind)
    n = mini_batch_size
    _, fixed = learner.split(params)
    dtype = jax.tree.leaves(state.w0)[0].dtype
    fixed = jax.tree.map(lambda a: jnp.asarray(a, dtype), fixed)
    s_N = default_token_scale(n, dtype) if token_scale is None else jnp.asarray(token_scale, dtype)
    q_F, k_F, v_F, lr = (jnp.asarray(a, dtype) for a in (q_F, k_F, v_F, lr))
    index = position % n
    grad = jax.grad(lambda w: _token_loss(learner, fixed, w, k_F, v_F))(state.w0)
    grad_sum = jax.tree.map(lambda a, g: a + lr * g, state.grad_sum, grad)
    w_i = jax.tree.map(lambda w, a: w - s_N[index] * a, state.w0, grad_sum)
    p_i = {**fixed, **w_i}
    out_F = learner.readout(p_i, learner.apply(p_i, q_F), q_F)
    end = index == n - 1  # the carried weights are the last token's, W_b = W_0 − s_b Σ
    new = DecodeState(
        w0=jax.tree.map(lambda w, wi: jnp.where(end, wi, w), state.w0, w_i),
        grad_sum=jax.tree.map(lambda a: jnp.where(end, jnp.zeros_like(a), a), grad_sum),
    )
    return out_F, new
