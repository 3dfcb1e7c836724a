"""Large-chunk TTT (LaCT, Zhang et al. 2025, "Test-Time Training Done Right", arXiv 2505.23884).

One head. The sequence is cut into chunks of 256 to 4096 tokens (any size works); chunk c

1. outputs `f(q_i; W_{c−1})` for all of its tokens with the weights from *before* its own update
   (LaCT §3, "apply-then-update": the chunk's own keys never reach its outputs, so it is causal);
2. takes one gradient step on its whole chunk, `g = ∇_W Σ_{i∈c} lr_i ℓ(W_{c−1}; k_i, v_i)`;
3. optionally orthogonalises each matrix of `g` (Muon, 5 Newton–Schulz steps: `ttt.muon`);
4. `W_c = W_{c−1} − g`, then, optionally, renormalises each output unit of each matrix to the
   norm it had at the sequence start (LaCT §3.2 "weight normalisation": `w ← w / ‖w‖ · ‖w_0‖`
   per column of our `[I, O]` matrices, i.e. per row of the paper's `[O, I]` ones).

The gradient is `jax.grad` of the learner's loss (LaCT's learner is "swiglu", `−f(k)·v`); any
registered learner works. Muon and the renormalisation act on the 2-D inner entries (the matrices);
other entries (biases, KAN spline tensors) take the plain step. Large chunks leave a few big matmuls
per scan step, which is LaCT's point: the hardware runs at matmul speed, not launch speed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax.ttt.inner_loop import check_inputs, scan_minibatches
from t3kan_jax.ttt.learners import Learner, get_learner
from t3kan_jax.ttt.muon import NS_STEPS, frobenius_norm, newton_schulz

__all__ = ["RENORM_EPS", "lact_inner_loop", "renormalise"]

RENORM_EPS = 1e-5  # as in the LaCT code


def renormalise(w_IO, norm_1O, eps: float = RENORM_EPS):
    """Each column `w[:, o]` rescaled to the norm `norm[o]` (LaCT's per-channel weight norm)."""
    return w_IO / (frobenius_norm(w_IO, axis=0) + eps) * norm_1O


def lact_inner_loop(
    kind,
    params,
    xq,
    xk,
    xv,
    lr,
    *,
    chunk_size: int = 2048,
    muon: bool = False,
    ns_steps: int = NS_STEPS,
    renorm: bool = True,
    unroll: int = 1,
    remat_every: int = 0,
):
    """Runs LaCT's large-chunk TTT on one head; returns `(out [T, d], final_params)`.

    kind: a registered learner name ("swiglu" in LaCT) or a `Learner`; params: its params at the
      sequence start. xq, xk, xv: `[T, d]`. lr: `[T]`, per-token rates weighting the chunk loss.
    muon: orthogonalise the update of every matrix (`ns_steps` Newton–Schulz steps).
    renorm: keep every matrix column at its sequence-start norm after each update.
    unroll, remat_every: as in `inner_loop`, counted in chunks.
    `final_params` are the weights after the last chunk's update (the state to continue from).
    """
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size={chunk_size!r}: must be an int >= 1")
    for name, flag in (("muon", muon), ("renorm", renorm)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r}: must be True or False")
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
        raise ValueError(f"ns_steps={ns_steps!r}: must be an int >= 1")
    learner = kind if isinstance(kind, Learner) else get_learner(kind)
    xq, xk, xv, lr = map(jnp.asarray, (xq, xk, xv, lr))
    check_inputs(xq, xk, xv, lr, chunk_size, "primal", None, unroll, remat_every)
    dtype = jnp.promote_types(
        jnp.result_type(xq, xk, xv, lr, *jax.tree.leaves(params)), jnp.float32
    )
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    inner, fixed = learner.split(params)
    n = chunk_size
    t = xq.shape[0]
    group = n * max(remat_every, 1)
    t_pad = -(-t // group) * group
    m = t_pad // n

    def blocks(a):
        a = jnp.pad(a.astype(dtype), [(0, t_pad - t)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(m, n, *a.shape[1:])

    xs = {
        "q": blocks(xq),
        "k": blocks(xk),
        "v": blocks(xv),
        "lr": blocks(lr),
        # Chunks wholly in the padding leave the weights as they are (renorm's eps would not).
        "active": jnp.asarray(n * np.arange(m) < t),
    }
    norms = (
        {k: frobenius_norm(w, axis=0) for k, w in inner.items() if w.ndim == 2} if renorm else {}
    )
    step = functools.partial(_chunk_step, learner, fixed, norms, muon=muon, ns_steps=ns_steps)
    inner, z_MNO = scan_minibatches(step, inner, xs, unroll=unroll, remat_every=remat_every)
    z_TO = z_MNO.reshape(t_pad, -1)[:t]
    spec = {**fixed, **{k: jax.ShapeDtypeStruct(a.shape, a.dtype) for k, a in inner.items()}}
    out_TF = jax.vmap(functools.partial(learner.readout, spec))(z_TO, xq.astype(dtype))
    return out_TF, {**fixed, **inner}


def _chunk_step(learner, fixed, norms, inner, xs, *, muon, ns_steps):
    """One chunk: outputs with the current weights, then one (Muon) step on the chunk's loss."""
    z_NO = jax.vmap(lambda q_F: learner.apply({**fixed, **inner}, q_F))(xs["q"])

    def chunk_loss(w):
        p = {**fixed, **w}
        token_loss = jax.vmap(lambda k_F, v_F: learner.loss(p, learner.apply(p, k_F), k_F, v_F))
        return jnp.sum(xs["lr"] * token_loss(xs["k"], xs["v"]))

    grads = jax.grad(chunk_loss)(inner)
    new = {}
    for key, w in inner.items():
        g = grads[key]
        if muon and g.ndim == 2:
            g = newton_schulz(g, ns_steps)
        w_new = w - g
        if key in norms:
            w_new = renormalise(w_new, norms[key])
        new[key] = jnp.where(xs["active"], w_new, w)
    return new, z_NO
