"""The TTT inner loop: primal = dual = a literal per-token reference; causality; outer gradients."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t3kan_jax.ttt import (
    DualForm,
    Learner,
    default_token_scale,
    get_learner,
    inner_loop,
)
from t3kan_jax.ttt.learners import layer_norm

KINDS = ("linear", "mlp", "kan")
FORMS = ("dual", "primal")
F = 4


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _case(kind, t, seed=0, dtype=jnp.float32):
    """Params (non-trivial LN) and inputs `q, k, v [T, F]`, `lr [T]` of one head."""
    keys = jax.random.split(jax.random.key(seed), 6)
    params = get_learner(kind).init(keys[0], F, init_std=0.3, dtype=dtype)
    params["ln_scale"] = 1.0 + 0.2 * jax.random.normal(keys[1], (F,), dtype)
    params["ln_bias"] = 0.2 * jax.random.normal(keys[2], (F,), dtype)
    q, k, v = (jax.random.normal(key, (t, F), dtype) for key in keys[3:6])
    lr = jnp.linspace(0.3, 0.1, t, dtype=dtype) * (1.0 + 0.5 * jnp.sin(jnp.arange(t)))
    return params, q, k, v, lr


@functools.cache
def _jitted(kind, b, form, unroll=1, **kwargs):
    """jit of the inner loop, cached so tests share compilations (unroll 1 compiles fastest)."""
    run = functools.partial(inner_loop, mini_batch_size=b, form=form, unroll=unroll, **kwargs)
    return jax.jit(functools.partial(run, kind))


@functools.cache
def _token_fns(kind):
    """Jitted per-token `∇ℓ(W)` and `f_res(W, x)` of a learner (shared by the references)."""
    learner = get_learner(kind)

    def token_loss(w, fixed, k_F, v_F):
        p = {**fixed, **w}
        return learner.loss(p, learner.apply(p, k_F), k_F, v_F)

    apply = jax.jit(lambda w, fixed, x_F: learner.apply({**fixed, **w}, x_F))
    return jax.jit(jax.grad(token_loss)), apply


def _reference(kind, params, q, k, v, lr, b, s):
    """Literal mini-batch TTT: W_i = W_0 − Σ_{j≤i} s_i lr_j ∇ℓ_j(W_0), one weight copy per token."""
    w0, fixed = get_learner(kind).split(params)
    grad, apply = _token_fns(kind)
    outs = []
    for start in range(0, q.shape[0], b):
        idx = list(range(start, min(start + b, q.shape[0])))
        grads = [grad(w0, fixed, k[j], v[j]) for j in idx]
        for i, t in enumerate(idx):
            w_i = {
                name: w0[name] - sum(s[i] * lr[idx[j]] * grads[j][name] for j in range(i + 1))
                for name in w0
            }
            outs.append(q[t] + layer_norm(params, apply(w_i, fixed, q[t])))
        w0 = w_i
    return jnp.stack(outs), {**fixed, **w0}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("kind", "t"), [("linear", 7), ("mlp", 7), ("kan", 7), ("linear", 2)])
def test_matches_literal_reference(kind, form, t, x64):
    """T = 7 with b = 3 ends on a shorter mini-batch; T = 2 < b is one short mini-batch."""
    b = 3
    params, q, k, v, lr = _case(kind, t, seed=t, dtype=jnp.float64)
    s = 1.0 / np.arange(1, b + 1) + np.array([0.3, -0.2, 0.1])
    expected = _reference(kind, params, q, k, v, lr, b, s)
    got = _jitted(kind, b, form)(params, q, k, v, lr, token_scale=s)
    chex.assert_trees_all_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [8, pytest.param(11, marks=pytest.mark.slow)])
def test_primal_equals_dual_fp32(kind, t):
    """T = 8 is a multiple of b = 4 (the reference test covers T = 7, b = 3, in float64)."""
    params, q, k, v, lr = _case(kind, t, seed=t)
    primal = _jitted(kind, 4, "primal")(params, q, k, v, lr)
    dual = _jitted(kind, 4, "dual")(params, q, k, v, lr)
    chex.assert_trees_all_close(primal, dual, atol=1e-5, rtol=1e-5)


def test_default_token_scale_is_one_over_i(x64):
    np.testing.assert_allclose(default_token_scale(4), [1.0, 1 / 2, 1 / 3, 1 / 4])
    params, q, k, v, lr = _case("linear", 7, seed=7, dtype=jnp.float64)
    expected = _reference("linear", params, q, k, v, lr, 3, 1.0 / np.arange(1, 4))
    chex.assert_trees_all_close(_jitted("linear", 3, "dual")(params, q, k, v, lr), expected)


def _online_gd(kind, params, q, k, v, lr):
    """Plain online gradient descent, one token at a time: W_t = W_{t-1} − lr_t ∇ℓ_t(W_{t-1})."""
    w, fixed = get_learner(kind).split(params)
    grad, apply = _token_fns(kind)
    outs = []
    for t in range(q.shape[0]):
        w = jax.tree.map(lambda a, g, t=t: a - lr[t] * g, w, grad(w, fixed, k[t], v[t]))
        outs.append(q[t] + layer_norm(params, apply(w, fixed, q[t])))
    return jnp.stack(outs), {**fixed, **w}


@pytest.mark.parametrize("kind", KINDS)
def test_mini_batch_one_is_online_gradient_descent(kind, x64):
    params, q, k, v, lr = _case(kind, 5, seed=3, dtype=jnp.float64)
    got = _jitted(kind, 1, "dual")(params, q, k, v, lr)
    chex.assert_trees_all_close(got, _online_gd(kind, params, q, k, v, lr), atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_causal(kind, form):
    """d out_t / d input_{t'} = 0 for t' > t: a tangent on the inputs after `cut` moves no output
    up to `cut` (exactly), and does move the output at `cut + 1`."""
    t = 7
    params, q, k, v, lr = _case(kind, t, seed=4)
    run = _jitted(kind, 3, form)
    tangents = [jax.random.normal(key, a.shape) for key, a in zip(
        jax.random.split(jax.random.key(5), 4), (q, k, v, lr), strict=True)]  # fmt: skip

    @jax.jit
    def out_tangent(cut):
        after = jnp.arange(t) > cut
        masked = [jnp.where(after.reshape(-1, *[1] * (a.ndim - 1)), a, 0.0) for a in tangents]
        return jax.jvp(lambda *xs: run(params, *xs)[0], (q, k, v, lr), tuple(masked))[1]

    for cut in range(t - 1):
        d_out = np.abs(np.asarray(out_tangent(cut))).sum(axis=1)
        assert np.all(d_out[: cut + 1] == 0.0), (cut, d_out)
        assert d_out[cut + 1] > 0.0, (cut, d_out)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), cut=st.integers(0, 7))
def test_future_inputs_do_not_change_the_past(seed, cut):
    params, q, k, v, lr = _case("mlp", 8)
    noise = jax.random.normal(jax.random.key(seed), (3, 8, F))
    later = (np.arange(8) > cut)[:, None]
    q2, k2, v2 = (x + later * n for x, n in zip((q, k, v), noise, strict=True))
    lr2 = jnp.where(later[:, 0], 0.5, lr)
    run = _jitted("mlp", 4, "dual")
    out, _ = run(params, q, k, v, lr)
    out2, _ = run(params, q2, k2, v2, lr2)
    np.testing.assert_array_equal(out[: cut + 1], out2[: cut + 1])


def _slow_unless(fast):
    return () if fast else (pytest.mark.slow,)


@pytest.mark.parametrize(
    ("kind", "form"),
    [
        pytest.param(kind, form, marks=_slow_unless(form == "dual" and kind != "mlp"))
        for kind in KINDS
        for form in FORMS
    ],
)
def test_outer_gradients_through_the_scan(kind, form, x64):
    """`check_grads` (reverse mode against finite differences) in float64 through the scan."""
    params, q, k, v, lr = _case(kind, 5, seed=5, dtype=jnp.float64)
    weights = jax.random.normal(jax.random.key(6), (5, F), jnp.float64)
    run = _jitted(kind, 2, form)

    def objective(params, q, k, v, lr):
        out, final = run(params, q, k, v, lr)
        return jnp.sum(weights * out) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))

    jax.test_util.check_grads(
        jax.jit(objective), (params, q, k, v, lr), order=1, modes=("rev",), eps=1e-6,
        atol=1e-7, rtol=1e-7,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "form"),
    [("linear", "dual"), pytest.param("mlp", "dual", marks=pytest.mark.slow),
     pytest.param("mlp", "primal", marks=pytest.mark.slow)],
)  # fmt: skip
def test_remat_gives_the_same_outputs_and_gradients(kind, form):
    """remat_every = 2 over 6 mini-batches (T = 11 is padded to whole groups)."""
    params, q, k, v, lr = _case(kind, 11, seed=7)

    def objective(run, params, q, k, v, lr):
        out, final = run(params, q, k, v, lr)
        return jnp.sum(out**2) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    results = []
    for remat_every in (0, 2):
        run = _jitted(kind, 2, form, remat_every=remat_every)
        value_and_grad = jax.value_and_grad(
            functools.partial(objective, run), argnums=(0, 1, 2, 3, 4)
        )
        results.append(jax.jit(value_and_grad)(params, q, k, v, lr))
    chex.assert_trees_all_close(*results, atol=1e-5, rtol=1e-5)


def test_unroll_does_not_change_the_result():
    params, q, k, v, lr = _case("linear", 9, seed=8)
    a = _jitted("linear", 2, "dual", unroll=1)(params, q, k, v, lr)
    b = _jitted("linear", 2, "dual", unroll=3)(params, q, k, v, lr)
    chex.assert_trees_all_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_vmapped_over_batch_and_heads_is_one_scan(kind, form):
    """vmap over (B, H) moves the batch inside the scan: one scan whose body holds every head."""
    h, bsz, t = 3, 2, 8
    learner = get_learner(kind)
    init = jax.vmap(lambda key: learner.init(key, F))
    params = jax.eval_shape(init, jax.random.split(jax.random.key(0), h))
    x = jax.ShapeDtypeStruct((bsz, h, t, F), jnp.float32)
    lr = jax.ShapeDtypeStruct((bsz, h, t), jnp.float32)

    def one(p, q, k, v, lr):
        return inner_loop(kind, p, q, k, v, lr, mini_batch_size=4, form=form)[0]

    run = jax.vmap(jax.vmap(one), in_axes=(None, 0, 0, 0, 0))
    jaxpr = jax.make_jaxpr(run)(params, x, x, x, lr).jaxpr
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1
    assert scans[0].params["length"] == t // 4
    carry = scans[0].params["jaxpr"].in_avals[scans[0].params["num_consts"]]
    assert carry.shape[:2] == (bsz, h)


def test_vmapped_heads_equal_separate_calls():
    params, q, k, v, lr = _case("linear", 6)
    stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    qs, ks, vs, lrs = (jnp.stack([a, a[::-1]]) for a in (q, k, v, lr))
    run = _jitted("linear", 4, "dual")
    out, final = jax.vmap(run)(stacked, qs, ks, vs, lrs)
    for i in range(2):
        p_i = jax.tree.map(lambda a, i=i: a[i], stacked)
        expected = run(p_i, qs[i], ks[i], vs[i], lrs[i])
        chex.assert_trees_all_close((out[i], jax.tree.map(lambda a, i=i: a[i], final)), expected)


def test_low_precision_inputs_compute_in_float32():
    params, q, k, v, lr = _case("linear", 6)
    q16, k16, v16 = (a.astype(jnp.bfloat16) for a in (q, k, v))
    out, final = _jitted("linear", 4, "dual")(params, q16, k16, v16, lr)
    chex.assert_type([out, final["W"]], jnp.float32)
    up = (a.astype(jnp.float32) for a in (q16, k16, v16))
    chex.assert_trees_all_close((out, final), _jitted("linear", 4, "dual")(params, *up, lr))


def _rbf_features(params, x_F):
    """Gaussian radial basis on fixed centres: `[exp(−((x_i − c_g)/h)²)]` flattened (FastKAN)."""
    centres = params["centres"]
    width = centres[1] - centres[0]
    return jnp.exp(-jnp.square((x_F[:, None] - centres) / width)).reshape(-1)


RBF = Learner(
    init=lambda key, width: {
        "w": 0.1 * jax.random.normal(key, (5 * width, width)),
        "b": jnp.zeros((width,)),
        "centres": jnp.linspace(-2.0, 2.0, 5),
        "ln_scale": jnp.ones((width,)),
        "ln_bias": jnp.zeros((width,)),
    },
    apply=lambda p, x_F: _rbf_features(p, x_F) @ p["w"] + p["b"],
    inner_keys=("w", "b"),
    dual=DualForm(
        features=(_rbf_features,),
        to_dense=lambda p: ((p["w"], p["b"]),),
        from_dense=lambda p, dense: {**p, "w": dense[0][0], "b": dense[0][1]},
    ),
)


def test_a_new_learner_runs_in_both_forms_without_touching_the_scan():
    params = RBF.init(jax.random.key(0), F)
    _, q, k, v, lr = _case("linear", 7, seed=9)
    primal = _jitted(RBF, 3, "primal")(params, q, k, v, lr)
    dual = _jitted(RBF, 3, "dual")(params, q, k, v, lr)
    chex.assert_trees_all_close(primal, dual, atol=1e-5, rtol=1e-5)
    primal_only = dataclasses.replace(RBF, dual=None)
    with pytest.raises(ValueError, match="no DualForm"):
        inner_loop(primal_only, params, q, k, v, lr, form="dual")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "both"}, "form='both'"),
        ({"mini_batch_size": 0}, "mini_batch_size=0"),
        ({"unroll": 0}, "unroll=0"),
        ({"remat_every": -1}, "remat_every=-1"),
        ({"token_scale": jnp.ones(3)}, "token_scale must be"),
        ({"xq": jnp.ones((6, F + 1))}, r"xq, xk, xv must all be \[T, d\]"),
        ({"lr": jnp.ones(5)}, r"lr must be \[T\]"),
        ({"kind": "rbf"}, "unknown inner learner kind='rbf'"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    params, q, k, v, lr = _case("linear", 6)
    args = {"kind": "linear", "params": params, "xq": q, "xk": k, "xv": v, "lr": lr} | kwargs
    with pytest.raises(ValueError, match=match):
        inner_loop(**{k_: v_ for k_, v_ in args.items() if k_ != "kind"}, kind=args["kind"])
