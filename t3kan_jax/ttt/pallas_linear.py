"""TTT-Linear dual form as two fused Pallas (Triton) kernels with a custom VJP (issue 7).

The dual form (Sun et al. 2024, arXiv 2407.04620, §2.5) is a chain of T/b dependent mini-batch
steps of a few small matmuls each; XLA runs each step as several kernels, so the chain is
launch-latency bound (docs/performance.md). Here one program per head runs the whole chain:

forward: a loop over the mini-batches with `W`, `b` carried on chip; per mini-batch it loads the
  `b × d` tiles of q, k, v (and lr), writes the output tile and, under `jax.grad`, saves `W`, `b`
  at the start of the mini-batch (`[T/b, d, d]` per head) for the backward.
backward: the same loop in reverse; from the saved state it recomputes the step's `jax.vjp`,
  carries the cotangent of `W`, `b` to the previous mini-batch and writes the tiles' cotangents of
  q, k, v, lr and the mini-batch's share of those of the LayerNorm parameters and token scale
  (summed outside by XLA's tree reduction, more accurate than a running sum over T/b steps).

Both kernels run `dual_step`, the one definition of a mini-batch (pure jnp; its inner gradient is
`jax.grad` of the learner's loss). Triton needs power-of-two tiles of at least 16 (`supports`).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from t3kan_jax.ttt.learners import linear
from t3kan_jax.ttt.minibatch import carried_rates

# The kernels' fp32 dots: each a sum of six bf16 tensor-core products of the operands split into
# three bf16 terms (Henry et al. 2019), measured within 2.2e-6 of IEEE fp32 in the gradient check
# and 1.2x faster than IEEE fp32 dots, which Triton runs on the FMA units (docs/performance.md).
PRECISION = jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X6
# Interpret mode (CPU) and float64 inputs: IEEE dots.
EXACT = jax.lax.Precision.HIGHEST
# Passing Triton params also picks the Triton backend (pallas_call's GPU default is Mosaic GPU).
# Two pipeline stages let the next mini-batch's tile loads overlap the step (H100: 4.28 ms vs
# 4.60 ms with one, docs/benchmarks.md).
TRITON = plt.CompilerParams(num_warps=8, num_stages=2)
MIN_TILE = 16  # Triton dots need every dim >= 16


class Options(NamedTuple):
    """The kernels' static options: interpret mode, Triton params, dot precision."""

    interpret: bool
    triton: plt.CompilerParams
    precision: Any


def supports(width: int, mini_batch_size: int) -> bool:
    """Whether the kernels take head dim `width` and mini-batch `mini_batch_size`."""
    return all(n >= MIN_TILE and n & (n - 1) == 0 for n in (width, mini_batch_size))


def applies(learner, form: str, remat_every: int, width: int, mini_batch_size: int) -> bool:
    """Whether the kernels compute this inner loop (the one rule of every `impl` check)."""
    # The backward keeps the state of every mini-batch: no remat groups.
    return (
        learner is linear.LINEAR
        and form == "dual"
        and remat_every == 0
        and supports(width, mini_batch_size)
    )


def dual_step(ln, s_N, state, xs, *, precision=EXACT):
    """One TTT-Linear mini-batch, dual form: `((W, b), (q, k, v, lr, η_last)) -> ((W', b'), out)`.

    ln: the fixed `ln_scale`, `ln_bias`. s_N: token scale, `η_ij = s_i lr_j` (j <= i).
    η_last: `s_last · lr`, the rates of the carried update (`s_last` = scale of the mini-batch's
    last real token). A `lax.scan` body as `functools.partial(dual_step, ln, s_N)`. precision:
    of every dot (a `lax.Precision` or `lax.DotAlgorithmPreset`).
    """
    w_FF, b_F = state
    q_NF, k_NF, v_NF, lr_N, eta_last_N = xs
    n = q_NF.shape[0]
    dot = functools.partial(jnp.dot, precision=precision)
    token_loss = jax.vmap(functools.partial(linear.LINEAR.loss, ln))
    # G = ∂(Σ_j ℓ_j)/∂z_k at the mini-batch's starting weights: every token's delta (§2.5).
    g_NF = jax.grad(lambda z: jnp.sum(token_loss(z, k_NF, v_NF)))(dot(k_NF, w_FF) + b_F)
    # The causal triangle by iota: a Pallas kernel cannot capture a constant mask.
    causal_NN = jax.lax.broadcasted_iota(jnp.int32, (n, n), 0) >= jax.lax.broadcasted_iota(
        jnp.int32, (n, n), 1
    )
    eta_NN = jnp.where(causal_NN, s_N[:, None] * lr_N[None, :], 0.0)
    # z_q = q W + b − (η ⊙ tril(q kᵀ + 1)) G: token i's output at its own weights W_i.
    zq_NF = dot(q_NF, w_FF) + b_F - dot(eta_NN * (dot(q_NF, k_NF.T) + 1.0), g_NF)
    out_NF = jax.vmap(functools.partial(linear.LINEAR.readout, ln))(zq_NF, q_NF)
    scaled_NF = eta_last_N[:, None] * g_NF
    # A vector-matrix product is a row sum: Triton dots need both operands 2-D with dims >= 16.
    new = (w_FF - dot(k_NF.T, scaled_NF), b_F - jnp.sum(scaled_NF, axis=0))
    return new, out_NF


def dual_linear(
    params,
    xq,
    xk,
    xv,
    lr,
    *,
    mini_batch_size,
    token_scale,
    interpret=False,
    triton=TRITON,
    precision=None,
):
    """`inner_loop("linear", ..., form="dual")` of one head in two kernels: `(out, final_params)`.

    Takes the inputs as `inner_loop` checked them; `token_scale` `[b]` is required. interpret:
    run the kernels in Pallas interpret mode (any backend; tests). triton: the kernels'
    `plt.CompilerParams` (warps, pipeline stages). precision: of the kernels' dots; None =
    PRECISION for float32 on a GPU, EXACT in interpret mode or float64. vmap over heads and batch
    adds grid axes: one program per (batch, head).
    """
    n = mini_batch_size
    t, d = xq.shape
    if not supports(d, n):
        raise ValueError(
            f"dual_linear: head dim {d} and mini_batch_size {n} must be powers of 2 >= {MIN_TILE}"
        )
    dtype = jnp.promote_types(
        jnp.result_type(xq, xk, xv, lr, *jax.tree.leaves(params)), jnp.float32
    )
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    if precision is None:
        precision = EXACT if interpret or dtype == jnp.float64 else PRECISION
    m = -(-t // n)

    def pad(a):
        return jnp.pad(a.astype(dtype), [(0, m * n - t)] + [(0, 0)] * (a.ndim - 1))

    q_TF, k_TF, v_TF, lr_T = map(pad, (xq, xk, xv, lr))
    s_N = jnp.asarray(token_scale, dtype)
    eta_last_T = carried_rates(s_N, lr_T.reshape(m, n), t).reshape(m * n)
    ln = {"ln_scale": params["ln_scale"], "ln_bias": params["ln_bias"]}
    state = (params["W"], params["b"])
    out_TF, (w_FF, b_F) = _fused(
        Options(interpret, triton, precision), ln, s_N, state, (q_TF, k_TF, v_TF, lr_T, eta_last_T)
    )
    return out_TF[:t], {**params, "W": w_FF, "b": b_F}


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(options, ln, s_N, state, xs_T):
    """`(out_T, final_state)` of every mini-batch, without saving the per-mini-batch state."""
    return _forward(options, ln, s_N, state, xs_T, save=False)[:2]


def _fused_fwd(options, ln, s_N, state, xs_T):
    out_TF, final, history = _forward(options, ln, s_N, state, xs_T, save=True)
    return (out_TF, final), (ln, s_N, history, xs_T)


def _forward(options, ln, s_N, state, xs_T, *, save):
    """The forward kernel: `(out_T, final_state, history)`, history the state per mini-batch."""
    t, d = xs_T[0].shape
    n = s_N.shape[0]
    m = t // n
    dtype = xs_T[0].dtype
    shapes = [(t, d), (d, d), (d,)] + ([(m, d, d), (m, d)] if save else [])

    def kernel(*refs):
        ln_refs, s_ref, state_refs, xs_refs = refs[:2], refs[2], refs[3:5], refs[5:10]
        out_ref, final_refs, history_refs = refs[10], refs[11:13], refs[13:]
        ln_k = {"ln_scale": ln_refs[0][...], "ln_bias": ln_refs[1][...]}
        step = functools.partial(dual_step, ln_k, s_ref[...], precision=options.precision)

        def body(i, state):
            rows = pl.ds(pl.multiple_of(i * n, n), n)
            for history_ref, a in zip(history_refs, state, strict=False):
                history_ref[i] = a
            state, out_ref[rows, :] = step(state, _tile(xs_refs, rows))
            return state

        final = jax.lax.fori_loop(0, m, body, tuple(r[...] for r in state_refs))
        for ref, a in zip(final_refs, final, strict=True):
            ref[...] = a

    outs = _call(kernel, options, shapes, dtype, "ttt_linear_fwd")(
        ln["ln_scale"], ln["ln_bias"], s_N, *state, *xs_T
    )
    return outs[0], tuple(outs[1:3]), tuple(outs[3:])


def _fused_bwd(options, residuals, cotangents):
    ln, s_N, history, xs_T = residuals
    dout_TF, dstate = cotangents
    t, d = xs_T[0].shape
    n = s_N.shape[0]
    m = t // n
    shapes = [(d, d), (d,), (m, d), (m, d), (m, n)] + [(t, d)] * 3 + [(t,)] * 2

    def kernel(*refs):
        ln_refs, s_ref, history_refs, xs_refs = refs[:2], refs[2], refs[3:5], refs[5:10]
        dout_ref, dfinal_refs = refs[10], refs[11:13]
        dstate_refs, shared_refs, dxs_refs = refs[13:15], refs[15:18], refs[18:]
        ln_k = {"ln_scale": ln_refs[0][...], "ln_bias": ln_refs[1][...]}
        s_k = s_ref[...]

        def body(i, dstate):
            j = m - 1 - i
            rows = pl.ds(pl.multiple_of(j * n, n), n)
            state = tuple(r[j] for r in history_refs)
            # Recompute the step from its saved starting state and pull the cotangents through it.
            step = functools.partial(dual_step, precision=options.precision)
            _, vjp = jax.vjp(step, ln_k, s_k, state, _tile(xs_refs, rows))
            dln, ds, dstate, dxs = vjp((dstate, dout_ref[rows, :]))
            for ref, a in zip(shared_refs, (dln["ln_scale"], dln["ln_bias"], ds), strict=True):
                ref[j] = a
            for ref, a in zip(dxs_refs, dxs, strict=True):
                ref[rows, ...] = a
            return dstate

        dstate = jax.lax.fori_loop(0, m, body, tuple(r[...] for r in dfinal_refs))
        for ref, a in zip(dstate_refs, dstate, strict=True):
            ref[...] = a

    outs = _call(kernel, options, shapes, dout_TF.dtype, "ttt_linear_bwd")(
        ln["ln_scale"], ln["ln_bias"], s_N, *history, *xs_T, dout_TF, *dstate
    )
    dstate, dxs = tuple(outs[:2]), tuple(outs[5:])
    dln_scale, dln_bias, ds_N = (jnp.sum(a, axis=0) for a in outs[2:5])
    return {"ln_scale": dln_scale, "ln_bias": dln_bias}, ds_N, dstate, dxs


_fused.defvjp(_fused_fwd, _fused_bwd)


def _tile(xs_refs, rows):
    """The mini-batch's rows of q, k, v `[b, d]` and lr, η_last `[b]`."""
    return tuple(ref[rows, ...] for ref in xs_refs)


def _call(kernel, options, shapes, dtype, name):
    """A single-program `pallas_call` (vmap adds the grid) on whole-array refs, Triton backend."""
    return pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct(s, dtype) for s in shapes],
        interpret=options.interpret,
        compiler_params=options.triton,
        name=name,
    )
