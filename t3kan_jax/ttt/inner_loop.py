"""Mini-batch TTT (Sun et al. 2024, arXiv 2407.04620, §2.4–2.5): primal and dual forms, one scan.

One head. The sequence is cut into mini-batches of b tokens; inside one, every gradient is taken at
the mini-batch's starting weights `W_0` and token i (1-based) uses

    W_i = W_0 − Σ_{j≤i} η_ij ∇ℓ_j(W_0),   η_ij = s_i · lr_j               (TTT paper §2.4, §2.7)

and outputs `f(q_i; W_i) = q_i + LN(f_res(q_i; W_i))`; the next mini-batch starts from `W_b` (no
gradient carried over). A final, shorter mini-batch of n tokens works the same and carries `W_n`.

primal: per-token gradients `vmap(grad(ℓ))` at `W_0`, one weight copy per token (the reference).
dual: `grad` of the summed loss with respect to each dense layer's pre-activations gives the deltas
`G_l`; then `z̄_l = φ_l(q) w_l + b_l − (η ⊙ tril(φ_l(q) φ_l(k)ᵀ + 1)) G_l` and
`w_l ← w_l − φ_l(k)ᵀ (η_b ⊙ G_l)`, `b_l ← b_l − η_bᵀ G_l` (§2.5), no per-token weights.
The first layer's features, its kernel and η do not depend on the carried weights: they are
computed for every mini-batch before the scan, which leaves a few matmuls per scan step.
`impl="pallas"` runs TTT-Linear's dual form as fused GPU kernels instead (pallas_linear.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax.ttt import pallas_linear
from t3kan_jax.ttt.learners import Learner, get_learner
from t3kan_jax.ttt.minibatch import carried_rates

FORMS = ("dual", "primal")
IMPLS = ("xla", "pallas", "auto")
DEFAULT_UNROLL = 4


def default_token_scale(mini_batch_size: int, dtype=jnp.float32) -> jax.Array:
    """`s_i = 1/i`, i = 1..b: the token-index scale of the official code (δ = 0)."""
    return 1.0 / jnp.arange(1, mini_batch_size + 1, dtype=dtype)


def inner_loop(
    kind,
    params,
    xq,
    xk,
    xv,
    lr,
    *,
    mini_batch_size: int = 16,
    form: str = "dual",
    token_scale=None,
    unroll: int = DEFAULT_UNROLL,
    remat_every: int = 0,
    impl: str = "xla",
):
    """Runs the TTT inner loop of one head; returns `(out [T, d], final_params)`.

    kind: a registered learner name (`"linear"`, `"mlp"`, `"kan"`, ...) or a `Learner`.
    params: the learner's params at the start of the sequence (dict of arrays).
    xq, xk, xv: `[T, d]` queries, keys, values. lr: `[T]`, the per-token rate `lr_j`.
    token_scale: `[b]`, the factors `s_i` (default `1/i`); `η_ij = s_i lr_j`.
    unroll: scan steps unrolled per loop iteration (a GPU scan is launch-bound, not math-bound).
    remat_every: if > 0, `jax.checkpoint` every group of this many mini-batches, so the backward
      pass stores only the inner state at group boundaries (T is padded to whole groups; padded
      tokens have lr 0 and change nothing).
    impl: "xla" (the scan below), "pallas" (the fused kernels of pallas_linear.py; kind "linear",
      form "dual", remat_every 0, d and b powers of 2 >= 16; the scan on a non-GPU default
      backend) or "auto" (pallas where it applies and the default backend is a GPU, when one
      device is visible or inside a shard_map over the whole mesh; else xla). unroll tunes the
      scan only. A kernel is one custom call: XLA's SPMD partitioner does not split it, so
      TTTLayer shard_maps it over the batch (`kernel_per_device`).
    Computes in float32 (float64 if the inputs are); `final_params` is the state after token T.
    """
    learner = kind if isinstance(kind, Learner) else get_learner(kind)
    xq, xk, xv, lr = (jnp.asarray(a) for a in (xq, xk, xv, lr))
    check_inputs(xq, xk, xv, lr, mini_batch_size, form, token_scale, unroll, remat_every)
    if form == "dual" and learner.dual is None:
        raise ValueError(f"learner {kind!r} has no DualForm: use form='primal'")
    dtype = jnp.promote_types(
        jnp.result_type(xq, xk, xv, lr, *jax.tree.leaves(params)), jnp.float32
    )
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    n = mini_batch_size
    s_N = default_token_scale(n, dtype) if token_scale is None else jnp.asarray(token_scale, dtype)
    if _use_pallas(kind, learner, impl, form, xq.shape[1], n, remat_every):
        return pallas_linear.dual_linear(params, xq, xk, xv, lr, mini_batch_size=n, token_scale=s_N)
    t = xq.shape[0]
    group = n * max(remat_every, 1)
    t_pad = -(-t // group) * group
    m = t_pad // n

    def blocks(a):
        a = jnp.pad(a.astype(dtype), [(0, t_pad - t)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(m, n, *a.shape[1:])

    q_MNF, k_MNF, v_MNF, lr_MN = map(blocks, (xq, xk, xv, lr))
    eta_last_MN = carried_rates(s_N, lr_MN, t)
    causal_NN = np.tril(np.ones((n, n), bool))
    inner, fixed = learner.split(params)
    # What loss, readout and features may read: fixed entries as values, updated ones as shapes.
    spec = {**fixed, **{k: jax.ShapeDtypeStruct(a.shape, a.dtype) for k, a in inner.items()}}
    scan = functools.partial(scan_minibatches, unroll=unroll, remat_every=remat_every)

    if form == "primal":
        step = functools.partial(_primal_step, learner, fixed, s_N, causal_NN)
        inner, z_MNO = scan(step, inner, (q_MNF, k_MNF, v_MNF, lr_MN, eta_last_MN))
        final = {**fixed, **inner}
    else:
        features = tuple(functools.partial(phi, spec) for phi in learner.dual.features)
        dense = learner.dual.to_dense(params)
        if len(dense) != len(features):
            raise ValueError(
                f"learner {kind!r}: to_dense gives {len(dense)} layers but there are "
                f"{len(features)} feature maps"
            )
        phi0 = jax.vmap(jax.vmap(features[0]))
        # A constant 1 feature folds layer 0's bias into its weight: w̃0 = [w0; b0], x̃ = [x, 1].
        ones_MN1 = jnp.ones((m, n, 1), dtype)
        x0k_MNI = jnp.concatenate([phi0(k_MNF), ones_MN1], axis=-1)
        x0q_MNI = jnp.concatenate([phi0(q_MNF), ones_MN1], axis=-1)
        eta_MNN = s_N[:, None] * lr_MN[:, None, :]
        kernel_MNN = jnp.einsum("mic,mjc->mij", x0q_MNI, x0k_MNI)
        a0_MNN = jnp.where(causal_NN, eta_MNN * kernel_MNN, 0.0)
        p0_MIN = jnp.einsum("mj,mjc->mcj", eta_last_MN, x0k_MNI)
        xs = {
            "x0_kq": jnp.concatenate([x0k_MNI, x0q_MNI], axis=1),
            # One matmul per step gives the query correction (rows < n) and the update of w̃0.
            "a0p0": jnp.concatenate([a0_MNN, p0_MIN], axis=1),
            "k": k_MNF,
            "v": v_MNF,
            "lr": lr_MN,
            "eta_last": eta_last_MN,
        }
        (w0, b0), rest = dense[0], tuple(dense[1:])
        step = functools.partial(_dual_step, learner, features, spec, s_N, causal_NN)
        (w0_aug, rest), z_MNO = scan(step, (jnp.concatenate([w0, b0[None]]), rest), xs)
        final = learner.dual.from_dense(params, ((w0_aug[:-1], w0_aug[-1]), *rest))

    z_TO = z_MNO.reshape(t_pad, -1)[:t]
    out_TF = jax.vmap(functools.partial(learner.readout, spec))(z_TO, xq.astype(dtype))
    return out_TF, final


def _use_pallas(kind, learner, impl, form, width, mini_batch_size, remat_every) -> bool:
    """Whether `impl` runs the fused kernels here; ValueError for a bad or unsupported `impl`."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}: allowed values are {IMPLS}")
    fits = pallas_linear.applies(learner, form, remat_every, width, mini_batch_size)
    if impl == "pallas" and not fits:
        raise ValueError(
            f"impl='pallas' runs kind 'linear', form 'dual', remat_every 0 (its backward keeps the "
            f"state of every mini-batch) with the head dim and mini_batch_size powers of 2 >= "
            f"{pallas_linear.MIN_TILE}; got kind={kind!r}, form={form!r}, remat_every="
            f"{remat_every}, d={width}, mini_batch_size={mini_batch_size} (or impl 'auto', 'xla')"
        )
    if not (fits and requests_kernel(impl) and jax.default_backend() == "gpu"):
        return False
    # "auto" takes the kernel where it runs per device: one device, or inside a shard_map over
    # every mesh axis (TTTLayer's `kernel_per_device`). Elsewhere SPMD partitioning would
    # replicate the kernel's custom call on every device instead of splitting the batch.
    return impl == "pallas" or jax.device_count() == 1 or per_device()


def requests_kernel(impl: str) -> bool:
    """Whether `impl` asks for the fused kernels: "pallas" on any backend, "auto" on a GPU."""
    return impl == "pallas" or (impl == "auto" and jax.default_backend() == "gpu")


def per_device() -> bool:
    """Whether this trace runs per device: inside a shard_map over every axis of its mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and set(mesh.manual_axes) == set(mesh.axis_names)


def _primal_step(learner, fixed, s_N, causal_NN, inner, xs):
    """One mini-batch, primal form: per-token gradients, per-token weights `W_i`."""
    q_NF, k_NF, v_NF, lr_N, eta_last_N = xs

    def token_loss(w, k_F, v_F):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k_F), k_F, v_F)

    grads = jax.vmap(jax.grad(token_loss), in_axes=(None, 0, 0))(inner, k_NF, v_NF)
    eta_NN = jnp.where(causal_NN, s_N[:, None] * lr_N[None, :], 0.0)
    w_N = jax.tree.map(lambda w, g: w - jnp.tensordot(eta_NN, g, axes=1), inner, grads)
    z_NO = jax.vmap(lambda w, q_F: learner.apply({**fixed, **w}, q_F))(w_N, q_NF)
    new = jax.tree.map(lambda w, g: w - jnp.tensordot(eta_last_N, g, axes=1), inner, grads)
    return new, z_NO


def _dual_step(learner, features, spec, s_N, causal_NN, carry, xs):
    """One mini-batch, dual form: deltas by `jax.vjp`, then batched matmuls (TTT paper §2.5)."""
    n = xs["k"].shape[0]
    w0_aug, rest = carry
    z0 = xs["x0_kq"] @ w0_aug
    z0k_NO, z0q_NO = z0[:n], z0[n:]
    token_loss = jax.vmap(functools.partial(learner.loss, spec))

    def keys_loss(e):
        # e[l] = 0 is added to layer l's pre-activation: d(loss)/d e[l] is that layer's delta G_l.
        z, inputs = z0k_NO + e[0], []
        for (w, b), phi, e_l in zip(rest, features[1:], e[1:], strict=True):
            x = jax.vmap(phi)(z)
            inputs.append(x)
            z = x @ w + b + e_l
        return jnp.sum(token_loss(z, xs["k"], xs["v"])), inputs

    zeros = [jnp.zeros((n, w0_aug.shape[1]), z0.dtype)]
    zeros += [jnp.zeros((n, w.shape[1]), w.dtype) for w, _ in rest]
    _, vjp, xk_inputs = jax.vjp(keys_loss, zeros, has_aux=True)
    (g,) = vjp(jnp.ones((), z0.dtype))

    ag = xs["a0p0"] @ g[0]
    zq = z0q_NO - ag[:n]
    eta_last_N = xs["eta_last"]
    eta_NN = jnp.where(causal_NN, s_N[:, None] * xs["lr"][None, :], 0.0)
    new_rest = []
    for (w, b), phi, xk, g_l in zip(rest, features[1:], xk_inputs, g[1:], strict=True):
        # Layer l's query input comes from the updated pre-activation of layer l-1.
        xq = jax.vmap(phi)(zq)
        zq = xq @ w + b - (eta_NN * (xq @ xk.T + 1.0)) @ g_l
        new_rest.append((w - (eta_last_N[:, None] * xk).T @ g_l, b - eta_last_N @ g_l))
    return (w0_aug - ag[n:], tuple(new_rest)), zq


def scan_minibatches(step, carry, xs, *, unroll, remat_every):
    """`lax.scan` over mini-batches; with `remat_every`, a scan over checkpointed groups.

    `unroll` counts mini-batches per loop iteration in both cases (a group of `remat_every`
    mini-batches is unrolled up to `unroll`, and `unroll // remat_every` groups per iteration).
    """
    if not remat_every:
        return jax.lax.scan(step, carry, xs, unroll=unroll)
    m = jax.tree.leaves(xs)[0].shape[0]
    grouped = jax.tree.map(lambda a: a.reshape(m // remat_every, remat_every, *a.shape[1:]), xs)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def group(c, xs_g):
        return jax.lax.scan(step, c, xs_g, unroll=min(unroll, remat_every))

    carry, ys = jax.lax.scan(group, carry, grouped, unroll=max(1, unroll // remat_every))
    return carry, jax.tree.map(lambda a: a.reshape(m, *a.shape[2:]), ys)


def check_inputs(xq, xk, xv, lr, mini_batch_size, form, token_scale, unroll, remat_every):
    """ValueError naming the argument for any bad inner-loop input (also Titans, LaCT)."""
    if form not in FORMS:
        raise ValueError(f"form={form!r}: allowed values are {FORMS}")
    for name, value, low in (
        ("mini_batch_size", mini_batch_size, 1),
        ("unroll", unroll, 1),
        ("remat_every", remat_every, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}={value!r}: must be an int >= {low}")
    if xq.ndim != 2 or xq.shape[0] < 1 or xk.shape != xq.shape or xv.shape != xq.shape:
        raise ValueError(
            f"xq, xk, xv must all be [T, d] with T >= 1; got {xq.shape}, {xk.shape}, {xv.shape}"
        )
    if lr.shape != xq.shape[:1]:
        raise ValueError(f"lr must be [T] = {xq.shape[:1]}, got {lr.shape}")
    if token_scale is not None and jnp.shape(token_scale) != (mini_batch_size,):
        raise ValueError(
            f"token_scale must be [mini_batch_size] = ({mini_batch_size},), "
            f"got {jnp.shape(token_scale)}"
        )
