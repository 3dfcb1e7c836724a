"""Fused TTT-Linear kernels (interpret mode on CPU) against the XLA inner loop; `impl` dispatch."""

import functools

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.models import ModelConfig, build_model
from t3kan_jax.ttt import get_learner, inner_loop, pallas_linear
from t3kan_jax.ttt.pallas_linear import dual_linear, dual_step

F, N = 16, 16  # the smallest head dim and mini-batch the Triton kernels take

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _case(t, seed=0, dtype=jnp.float32, lead=()):
    """Params (non-trivial LN), inputs `q, k, v [*lead, T, F]`, `lr [*lead, T]`, token scale."""
    keys = jax.random.split(jax.random.key(seed), 8)
    params = get_learner("linear").init(keys[0], F, init_std=0.3, dtype=dtype)
    params["ln_scale"] = 1.0 + 0.2 * jax.random.normal(keys[1], (F,), dtype)
    params["ln_bias"] = 0.2 * jax.random.normal(keys[2], (F,), dtype)
    q, k, v = (jax.random.normal(key, (*lead, t, F), dtype) for key in keys[3:6])
    lr = 0.1 * jax.nn.sigmoid(jax.random.normal(keys[6], (*lead, t), dtype))
    s = 1.0 / jnp.arange(1, N + 1, dtype=dtype) + 0.1 * jax.random.normal(keys[7], (N,), dtype)
    return params, q, k, v, lr, s


def _xla(params, q, k, v, lr, s):
    return inner_loop("linear", params, q, k, v, lr, mini_batch_size=N, token_scale=s, unroll=1)


def _pallas(params, q, k, v, lr, s):
    return dual_linear(params, q, k, v, lr, mini_batch_size=N, token_scale=s, interpret=True)


def _grads(run, weights):
    """jit(grad) of a scalar of the outputs and final params w.r.t. every input."""

    def objective(*args):
        out, final = run(*args)
        return jnp.sum(weights * out) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))

    return jax.jit(jax.grad(objective, argnums=tuple(range(6))))


@pytest.mark.parametrize("t", [48, 40])
def test_outputs_and_gradients_match_the_xla_loop(t, x64):
    """T = 40 ends on a shorter mini-batch (padded with lr 0); float64 in interpret mode."""
    args = _case(t, seed=t, dtype=jnp.float64)
    chex.assert_trees_all_close(
        jax.jit(_pallas)(*args), jax.jit(_xla)(*args), atol=1e-10, rtol=1e-10
    )
    weights = jax.random.normal(jax.random.key(1), (t, F), jnp.float64)
    expected = _grads(_xla, weights)(*args)
    chex.assert_trees_all_close(_grads(_pallas, weights)(*args), expected, atol=1e-10, rtol=1e-10)
    assert all(np.any(g != 0) for g in jax.tree.leaves(expected))


def test_dual_step_scanned_outside_the_kernel_is_the_inner_loop(x64):
    params, q, k, v, lr, s = _case(32, dtype=jnp.float64)
    ln = {name: params[name] for name in ("ln_scale", "ln_bias")}
    xs = tuple(a.reshape(2, N, *a.shape[1:]) for a in (q, k, v, lr, s[-1] * lr))
    (w, b), out = jax.lax.scan(functools.partial(dual_step, ln, s), (params["W"], params["b"]), xs)
    expected_out, expected = _xla(params, q, k, v, lr, s)
    chex.assert_trees_all_close((out.reshape(32, F), w, b), (expected_out, expected["W"],
                                expected["b"]), atol=1e-10, rtol=1e-10)  # fmt: skip


def test_vmapped_over_batch_and_heads():
    """As TTTLayer runs it: params per head, shared over the batch; gradients sum over it."""
    heads, batch = 2, 2
    params, q, k, v, lr, s = _case(32, lead=(batch, heads))
    params = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    weights = jax.random.normal(jax.random.key(1), q.shape)

    def batched(run):
        per_head = jax.vmap(run, in_axes=(0, 0, 0, 0, 0, None))
        return jax.vmap(per_head, in_axes=(None, 0, 0, 0, 0, None))

    args = (params, q, k, v, lr, s)
    with jax.default_matmul_precision("highest"):
        got = jax.jit(batched(_pallas))(*args), _grads(batched(_pallas), weights)(*args)
        expected = jax.jit(batched(_xla))(*args), _grads(batched(_xla), weights)(*args)
    chex.assert_trees_all_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["pallas", "auto"])
def test_pallas_and_auto_fall_back_to_xla_off_gpu(monkeypatch, impl):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # also on a GPU runner
    args = _case(40)

    def run(impl, params, q, k, v, lr, s):
        return inner_loop("linear", params, q, k, v, lr, mini_batch_size=N, token_scale=s,
                          impl=impl)  # fmt: skip

    jaxpr = str(jax.make_jaxpr(functools.partial(run, impl))(*args))
    assert "pallas_call" not in jaxpr and "scan" in jaxpr
    chex.assert_trees_all_equal(jax.jit(run, static_argnums=0)(impl, *args),
                                jax.jit(run, static_argnums=0)("xla", *args))  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "form", "width", "match"),
    [
        ("linear", "dual", F, "impl='cuda': allowed values are \\('xla', 'pallas', 'auto'\\)"),
        ("mlp", "dual", F, "impl='pallas' runs kind 'linear', form 'dual'.*kind='mlp'"),
        ("linear", "primal", F, "impl='pallas' runs .*form='primal'"),
        ("linear", "dual", 8, "impl='pallas' runs .*d=8, mini_batch_size=16"),
    ],
)
def test_bad_or_unsupported_impl_raises(kind, form, width, match):
    params = get_learner(kind).init(jax.random.key(0), width)
    x, lr = jnp.ones((20, width)), jnp.ones(20)
    impl = "cuda" if "cuda" in match else "pallas"
    with pytest.raises(ValueError, match=match):
        inner_loop(kind, params, x, x, x, lr, mini_batch_size=N, form=form, impl=impl)
    out, _ = inner_loop(kind, params, x, x, x, lr, form=form, impl="auto")
    assert out.shape == (20, width)


@pytest.mark.parametrize(
    ("impl", "devices", "fused"),
    [("pallas", 8, True), ("auto", 1, True), ("auto", 8, False), ("xla", 1, False)],
)
def test_model_config_reaches_the_kernels_on_a_gpu(monkeypatch, impl, devices, fused):
    # Pretend to be on a GPU: tracing builds the pallas_call without lowering it.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    cfg = ModelConfig(width=32, num_heads=2, depth=1, vocab_size=16, max_len=32, ttt_impl=impl)
    model, tokens = build_model(cfg), jnp.zeros((2, 32), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.key(0), tokens)
    jaxpr = str(jax.make_jaxpr(model.apply)(params, tokens))
    assert ("pallas_call" in jaxpr) == fused


@pytest.mark.parametrize(
    ("impl", "batch", "per_device"), [("auto", 8, True), ("pallas", 8, True), ("auto", 6, False)]
)
def test_kernels_run_per_device_under_a_context_mesh(monkeypatch, impl, batch, per_device):
    # On 8 (pretended) GPUs with `jax.set_mesh`, as the training loop runs the model: each layer
    # shard_maps the batch over the mesh and runs the kernel inside; a batch that does not divide
    # over the devices keeps "auto" on the scan.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    cfg = ModelConfig(width=32, num_heads=2, depth=1, vocab_size=16, max_len=32, ttt_impl=impl)
    model, tokens = build_model(cfg), jnp.zeros((batch, 32), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.key(0), tokens)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.set_mesh(mesh):
        jaxpr = jax.make_jaxpr(model.apply)(params, tokens).jaxpr

    def named(name, jaxpr):
        return [e for e in _eqns(jaxpr) if e.primitive.name == name]

    maps = named("shard_map", jaxpr)
    inside = [e for m in maps for e in named("pallas_call", m.params["jaxpr"])]
    counts = (len(maps), len(inside), len(named("pallas_call", jaxpr)))
    assert counts == ((1, 1, 1) if per_device else (0, 0, 0))


def test_remat_every_is_refused_by_pallas_and_keeps_auto_on_the_scan(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    params, q, k, v, lr, s = _case(32)
    run = functools.partial(inner_loop, "linear", mini_batch_size=N, token_scale=s, remat_every=1)
    with pytest.raises(ValueError, match=r"impl='pallas' runs .*remat_every=1"):
        run(params, q, k, v, lr, impl="pallas")
    jaxpr = str(jax.make_jaxpr(functools.partial(run, impl="auto"))(params, q, k, v, lr))
    assert "pallas_call" not in jaxpr


def test_kernels_lower_to_triton_for_cuda_with_fp32_accurate_dots():
    """Cross-lowering on CPU runs Pallas's Triton lowering (not Triton's compiler): every
    primitive of both kernels lowers, and every dot asks for the six-bf16-product algorithm
    (DEFAULT would be TF32, 1e-3 off)."""
    params, q, k, v, lr, s = jax.eval_shape(functools.partial(_case, 32, lead=(2, 2)))
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *a.shape), a.dtype), params)

    def total(params, q, k, v, lr, s):
        def one(p, q, k, v, lr):
            out, final = dual_linear(p, q, k, v, lr, mini_batch_size=N, token_scale=s)
            return jnp.sum(out) + jnp.sum(final["W"])

        return jnp.sum(jax.vmap(jax.vmap(one), in_axes=(None, 0, 0, 0, 0))(params, q, k, v, lr))

    grad = jax.jit(jax.grad(total, argnums=tuple(range(6))))
    text = grad.trace(params, q, k, v, lr, s).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 2
    assert "grid_x = 2 : i32, grid_y = 2 : i32" in text
    jaxpr = jax.make_jaxpr(grad)(params, q, k, v, lr, s).jaxpr
    kernels = [e.params["jaxpr"] for e in _eqns(jaxpr) if e.primitive.name == "pallas_call"]
    assert len(kernels) == 2
    dots = [e for kernel in kernels for e in _eqns(kernel) if e.primitive.name == "dot_general"]
    assert len(dots) >= 5 + 10
    assert {e.params["precision"] for e in dots} == {pallas_linear.PRECISION}


def _eqns(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in its equations' params."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)
