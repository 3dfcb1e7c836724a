"""Titans neural memory (Behrouz et al. 2025, arXiv 2501.00663, §3.1–3.2) as a TTT inner optimizer.

Momentum ("surprise") and a forgetting gate on top of mini-batch TTT. Per token t of one head,

    S_t = η_t S_{t−1} − θ_t ∇ℓ_t(M_0)         (past surprise decayed by η, momentary surprise)
    M_t = (1 − α_t) M_{t−1} + S_t             (forgetting gate α)

where every gradient of a mini-batch is taken at its starting memory `M_0` (Titans §3.2,
"parallelize the long-term memory training"), and token t outputs `f(q_t; M_t)`. `S` and `M` run
on across mini-batches. `ℓ`, `f` and `∇` are the inner learner's loss, apply and `jax.grad`, so the
memory may be any registered learner (linear, mlp, kan, ...).

Both recurrences are linear with scalar gates, so each mini-batch computes them with
`jax.lax.associative_scan` (`linear_recurrence`):
- primal: the scans run over the per-token gradients, one weight copy per token (the reference).
- dual: the scans run over coefficient rows in the basis (M_0, S_0, u_1..u_N), giving
  `M_i = a_i M_0 + c_i S_0 − Σ_{j≤i} A_ij θ_j ∇ℓ_j(M_0)`; then, as in the TTT dual form (Sun et al.
  2024, §2.5), `z̄_l = a ⊙ (φ_l(q) w_l + b_l) + c ⊙ (φ_l(q) s_l + sb_l)
  − (Aθ ⊙ (φ_l(q) φ_l(k)ᵀ + 1)) G_l` with the deltas `G_l` of the summed loss: no per-token weights.
With η = α = 0, `M_i = M_0 − Σ_{j≤i} θ_j ∇ℓ_j(M_0)`: mini-batch TTT with token scale s_i = 1.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax.ttt.inner_loop import DEFAULT_UNROLL, FORMS, check_inputs, scan_minibatches
from t3kan_jax.ttt.learners import Learner, get_learner

__all__ = ["FORMS", "linear_recurrence", "titans_inner_loop"]


def _scale(a_N, x):
    """`a_N[:, None, ...] * x` for `x [N, ...]`."""
    return a_N.reshape(a_N.shape + (1,) * (x.ndim - a_N.ndim)) * x


def linear_recurrence(a_N, b, h0=None):
    """All `h_t = a_t h_{t−1} + b_t`, t = 1..N, from `h_0 = h0` (or 0), by an associative scan.

    a_N: [N] scalars. b: a pytree of [N, ...] leaves. h0: a pytree of the leaves' [...] shapes.
    Element t is the affine map `h ↦ a_t h + b_t`; composing two is again affine, which is what
    `jax.lax.associative_scan` needs (O(log N) depth instead of N sequential steps).
    """
    if h0 is not None:
        b = jax.tree.map(lambda x, h: x.at[0].add(a_N[0] * h), b, h0)

    def compose(first, second):
        (a1, b1), (a2, b2) = first, second
        return a1 * a2, jax.tree.map(lambda x, y: _scale(a2, x) + y, b1, b2)

    return jax.lax.associative_scan(compose, (a_N, b))[1]


def titans_inner_loop(
    kind,
    params,
    xq,
    xk,
    xv,
    lr,
    momentum,
    forget,
    *,
    mini_batch_size: int = 16,
    form: str = "dual",
    surprise=None,
    unroll: int = DEFAULT_UNROLL,
    remat_every: int = 0,
):
    """Runs the Titans memory of one head; returns `(out [T, d], (final_params, final_surprise))`.

    kind: a registered learner name or a `Learner`; params: its params at the sequence start.
    xq, xk, xv: `[T, d]`. lr, momentum, forget: `[T]`, the gates θ_t, η_t, α_t.
    surprise: the momentum state S at the start (a dict of the learner's inner entries; default
      zeros); `final_surprise` is S after token T, `final_params` the memory M after token T.
    unroll, remat_every: as in `inner_loop` (padded tokens have θ = 0 and leave the carried
      state as it was after token T).
    """
    learner = kind if isinstance(kind, Learner) else get_learner(kind)
    xq, xk, xv, lr, momentum, forget = map(jnp.asarray, (xq, xk, xv, lr, momentum, forget))
    check_inputs(xq, xk, xv, lr, mini_batch_size, form, None, unroll, remat_every)
    for name, gate in (("momentum", momentum), ("forget", forget)):
        if gate.shape != lr.shape:
            raise ValueError(f"{name} must be [T] = {lr.shape}, got {gate.shape}")
    if form == "dual" and learner.dual is None:
        raise ValueError(f"learner {kind!r} has no DualForm: use form='primal'")
    dtype = jnp.promote_types(
        jnp.result_type(xq, xk, xv, lr, momentum, forget, *jax.tree.leaves(params)), jnp.float32
    )
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    inner, fixed = learner.split(params)
    surprise = _initial_surprise(inner, surprise, dtype)
    n = mini_batch_size
    t = xq.shape[0]
    group = n * max(remat_every, 1)
    t_pad = -(-t // group) * group
    m = t_pad // n

    def blocks(a):
        a = jnp.pad(a.astype(dtype), [(0, t_pad - t)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(m, n, *a.shape[1:])

    # The carried state is the one after token T: `sel` picks a block's last real token, and
    # blocks wholly after token T keep their input state (`keep`).
    last_M = t - 1 - n * np.arange(m)
    keep_M = (last_M < 0).astype(np.float32)
    sel_MN = (np.arange(n) == np.minimum(last_M, n - 1)[:, None]) & (last_M >= 0)[:, None]
    xs = {
        "q": blocks(xq),
        "k": blocks(xk),
        "v": blocks(xv),
        "lr": blocks(lr),
        "momentum": blocks(momentum),
        "forget": blocks(forget),
        "sel": jnp.asarray(sel_MN, dtype),
        "keep": jnp.asarray(keep_M, dtype),
    }
    spec = {**fixed, **{k: jax.ShapeDtypeStruct(a.shape, a.dtype) for k, a in inner.items()}}
    scan = functools.partial(scan_minibatches, unroll=unroll, remat_every=remat_every)

    if form == "primal":
        step = functools.partial(_primal_step, learner, fixed)
        (inner, surprise), z_MNO = scan(step, (inner, surprise), xs)
        final = {**fixed, **inner}
    else:
        dual = learner.dual
        xs.update(
            jax.vmap(_coefficients)(xs.pop("momentum"), xs.pop("forget"), xs["sel"], xs["keep"])
        )
        features = tuple(functools.partial(phi, spec) for phi in dual.features)
        dense = (dual.to_dense(params), dual.to_dense({**params, **surprise}))
        step = functools.partial(_dual_step, learner, features, spec)
        (dense_m, dense_s), z_MNO = scan(step, dense, xs)
        final = dual.from_dense(params, dense_m)
        surprise = learner.split(dual.from_dense(params, dense_s))[0]

    z_TO = z_MNO.reshape(t_pad, -1)[:t]
    out_TF = jax.vmap(functools.partial(learner.readout, spec))(z_TO, xq.astype(dtype))
    return out_TF, (final, surprise)


def _initial_surprise(inner, surprise, dtype):
    """Zeros, or `surprise` checked against the inner entries and cast."""
    if surprise is None:
        return jax.tree.map(jnp.zeros_like, inner)
    shapes = {k: jnp.shape(a) for k, a in surprise.items()}
    expected = {k: a.shape for k, a in inner.items()}
    if shapes != expected:
        raise ValueError(f"surprise must have the inner entries {expected}, got {shapes}")
    return {k: jnp.asarray(a, dtype) for k, a in surprise.items()}


def _coefficients(momentum_N, forget_N, sel_N, keep):
    """Coefficient rows over the basis (M_0, S_0, u_1..u_N), `u_j = −θ_j ∇ℓ_j(M_0)`.

    Returns `m_rows [N, N+2]` (those of M_1..M_N) and `carry [2, N+2]` (the carried M and S).
    """
    n = momentum_N.shape[0]
    eye = jnp.eye(n + 2, dtype=momentum_N.dtype)
    s_rows = linear_recurrence(momentum_N, eye[2:], eye[1])
    m_rows = linear_recurrence(1.0 - forget_N, s_rows, eye[0])
    carry = jnp.stack([sel_N @ m_rows + keep * eye[0], sel_N @ s_rows + keep * eye[1]])
    return {"m_rows": m_rows, "carry": carry}


def _primal_step(learner, fixed, carry, xs):
    """One mini-batch, primal form: per-token gradients at `M_0`, scans over weight copies."""
    w0, s0 = carry

    def token_loss(w, k_F, v_F):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k_F), k_F, v_F)

    grads = jax.vmap(jax.grad(token_loss), in_axes=(None, 0, 0))(w0, xs["k"], xs["v"])
    u = jax.tree.map(lambda g: -_scale(xs["lr"], g), grads)
    s_all = linear_recurrence(xs["momentum"], u, s0)
    w_all = linear_recurrence(1.0 - xs["forget"], s_all, w0)
    z_NO = jax.vmap(lambda w, q_F: learner.apply({**fixed, **w}, q_F))(w_all, xs["q"])

    def carried(h0, h_all):
        return jax.tree.map(lambda a, b: xs["keep"] * a + jnp.tensordot(xs["sel"], b, 1), h0, h_all)

    return (carried(w0, w_all), carried(s0, s_all)), z_NO


def _dual_step(learner, features, spec, carry, xs):
    """One mini-batch, dual form: deltas by `jax.vjp` at `M_0`, then batched matmuls."""
    dense_m, dense_s = carry
    n = xs["k"].shape[0]
    token_loss = jax.vmap(functools.partial(learner.loss, spec))

    def keys_loss(e):
        # e[l] = 0 is added to layer l's pre-activation: d(loss)/d e[l] is that layer's delta G_l.
        z, inputs = xs["k"], []
        for (w, b), phi, e_l in zip(dense_m, features, e, strict=True):
            x = jax.vmap(phi)(z)
            inputs.append(x)
            z = x @ w + b + e_l
        return jnp.sum(token_loss(z, xs["k"], xs["v"])), inputs

    zeros = [jnp.zeros((n, w.shape[1]), w.dtype) for w, _ in dense_m]
    _, vjp, xk_inputs = jax.vjp(keys_loss, zeros, has_aux=True)
    (g,) = vjp(jnp.ones((), xs["k"].dtype))

    rows, lr_N = xs["m_rows"], xs["lr"]
    a_N1, c_N1, p_NN = rows[:, :1], rows[:, 1:2], rows[:, 2:] * lr_N
    carry_p = xs["carry"][:, 2:] * lr_N
    zq, new_m, new_s = xs["q"], [], []
    for (w, b), (sw, sb), phi, xk, g_l in zip(
        dense_m, dense_s, features, xk_inputs, g, strict=True
    ):
        # Layer l's query input comes from the updated pre-activation of layer l-1.
        xq = jax.vmap(phi)(zq)
        zq = a_N1 * (xq @ w + b) + c_N1 * (xq @ sw + sb) - (p_NN * (xq @ xk.T + 1.0)) @ g_l
        for row, p_N, out in zip(xs["carry"], carry_p, (new_m, new_s), strict=True):
            out.append(
                (
                    row[0] * w + row[1] * sw - (p_N[:, None] * xk).T @ g_l,
                    row[0] * b + row[1] * sb - p_N @ g_l,
                )
            )
    return (tuple(new_m), tuple(new_s)), zq
