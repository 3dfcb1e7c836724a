"""The Flax TTT layer: shapes, padding, causality, forms, remat, no recompiles; RoPE; config."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt.layer import TTTConfig, TTTLayer, rms_normalize
from t3kan_jax.ttt.rope import apply_rope

B, T, D, H = 2, 10, 8, 2


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _cfg(**overrides):
    return TTTConfig(
        **({"width": D, "num_heads": H, "mini_batch_size": 4, "unroll": 1} | overrides)
    )


@functools.cache
def _layer(cfg):
    """`(params, jitted apply)` of a layer; cached so tests share compilations."""
    layer = TTTLayer(cfg)
    x = jnp.zeros((B, T, D), jnp.dtype(cfg.dtype))
    params = jax.jit(layer.init)(jax.random.key(0), x)
    return params, jax.jit(layer.apply, static_argnames="mutable")


def _x(seed=1, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), (B, T, D), dtype)


@pytest.mark.parametrize("inner", ["linear", "mlp", "kan"])
def test_shapes_and_parameters(inner):
    cfg = _cfg(inner=inner)
    params, apply = _layer(cfg)
    y = apply(params, _x())
    chex.assert_shape(y, (B, T, D))
    chex.assert_tree_all_finite(y)
    p = params["params"]
    chex.assert_trees_all_equal(p["token_offset"], jnp.zeros(4))
    chex.assert_shape(p["lr_gate"]["kernel"], (D, H))
    assert set(p) >= {"wqk", "conv_q", "conv_k", "wv", "wg", "wo", "post_norm", "inner"}
    for name, leaf in p["inner"].items():
        assert leaf.shape[0] == H, name
    if inner == "kan":
        chex.assert_shape(p["inner"]["C"], (H, D // H, D // H, 8))
        np.testing.assert_allclose(p["inner"]["knots"][:, 3], -3.0)
        np.testing.assert_allclose(p["inner"]["knots"][:, -4], 3.0)


def test_bfloat16_in_and_out():
    cfg = _cfg(dtype="bfloat16")
    params, apply = _layer(cfg)
    y = apply(params, _x(dtype=jnp.bfloat16))
    chex.assert_type(y, jnp.bfloat16)
    chex.assert_tree_all_finite(y)


def test_padding_gets_zero_lr_and_leaves_real_tokens_alone():
    params, apply = _layer(_cfg())
    lengths = np.array([6, 10])
    mask = (np.arange(T) < lengths[:, None]).astype(np.float32)
    x = _x()
    junk = jnp.where(mask[..., None] > 0, x, 100.0 * _x(seed=2))
    y, state = apply(params, x, mask, mutable="intermediates")
    y_junk = apply(params, junk, mask)
    (lr,) = state["intermediates"]["inner_lr"]
    assert np.all(np.asarray(lr)[mask == 0] == 0.0) and np.all(np.asarray(lr)[mask == 1] > 0.0)
    np.testing.assert_allclose(np.asarray(y)[mask == 1], np.asarray(y_junk)[mask == 1], atol=1e-6)
    short = apply(params, x[:1, :6])
    np.testing.assert_allclose(y[0, :6], short[0], atol=1e-5)


def test_causal():
    """A tangent on x after position `cut` leaves every output up to `cut` exactly unchanged."""
    params, apply = _layer(_cfg(inner="kan"))
    x, dx = _x(), _x(seed=3)

    @jax.jit
    def y_tangent(cut):
        later = (jnp.arange(T) > cut)[None, :, None]
        return jax.jvp(lambda x: apply(params, x), (x,), (jnp.where(later, dx, 0.0),))[1]

    for cut in range(T - 1):
        d_y = np.abs(np.asarray(y_tangent(cut))).sum(axis=(0, 2))
        assert np.all(d_y[: cut + 1] == 0.0) and d_y[cut + 1] > 0.0, (cut, d_y)


def test_primal_and_dual_layers_agree():
    params, apply_dual = _layer(_cfg(inner="mlp"))
    _, apply_primal = _layer(_cfg(inner="mlp", form="primal"))
    np.testing.assert_allclose(apply_dual(params, _x()), apply_primal(params, _x()), atol=1e-5)


@pytest.mark.slow
def test_remat_gives_the_same_outputs_and_gradients():
    params, _ = _layer(_cfg())
    x = _x()

    def loss(cfg, params, x):
        return jnp.sum(jnp.sin(TTTLayer(cfg).apply(params, x)))

    results = [
        jax.jit(jax.value_and_grad(functools.partial(loss, _cfg(remat_every=r)), (0, 1)))(params, x)
        for r in (0, 2)
    ]
    chex.assert_trees_all_close(*results, atol=1e-5, rtol=1e-5)


def test_jit_does_not_retrace_for_new_values():
    layer = TTTLayer(_cfg(share_qk=False, conv_width=0))
    params, _ = _layer(_cfg(share_qk=False, conv_width=0))
    assert set(params["params"]) >= {"wq", "wk"} and "conv_q" not in params["params"]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params, x, mask):
        return layer.apply(params, x, mask)

    mask = jnp.ones((B, T))
    for seed in range(3):
        chex.assert_shape(apply(params, _x(seed), mask), (B, T, D))


def test_base_lr_defaults_follow_the_learner():
    assert _cfg(inner="linear").inner_base_lr == 1.0
    assert _cfg(inner="mlp").inner_base_lr == 0.1
    assert _cfg(inner="kan").inner_base_lr == 0.1
    assert _cfg(inner="kan", base_lr=0.5).inner_base_lr == 0.5
    assert _cfg(inner="kan").learner_options() == {
        "grid_size": 5,
        "degree": 3,
        "grid_range": (-3.0, 3.0),
    }


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"inner": "rbf"}, "unknown inner learner kind='rbf'"),
        ({"form": "both"}, "TTTConfig.form='both'"),
        ({"dtype": "float16"}, "TTTConfig.dtype='float16'"),
        ({"num_heads": 3}, "head dim"),
        ({"width": 6, "num_heads": 2}, "head dim"),
        ({"mini_batch_size": 0}, "TTTConfig.mini_batch_size=0"),
        ({"unroll": 0}, "TTTConfig.unroll=0"),
        ({"base_lr": 0.0}, "TTTConfig.base_lr=0.0"),
        ({"kan_grid_min": 1.0, "kan_grid_max": 1.0}, "kan_grid_min"),
        ({"conv_width": 0}, "share_qk=True needs conv_width"),
        ({"qk_norm": 1}, "TTTConfig.qk_norm=1: allowed values are True, False"),
        ({"rope": "no"}, "TTTConfig.rope='no'"),
        ({"impl": "triton"}, r"TTTConfig.impl='triton': allowed values are \('xla', 'pallas'"),
        ({"impl": "pallas"}, r"impl='pallas' needs .* head dim 4, mini_batch_size=4"),
        (
            {"impl": "pallas", "inner": "mlp", "width": 32, "mini_batch_size": 16},
            "impl='pallas' needs inner 'linear'",
        ),
        (
            {"impl": "pallas", "width": 32, "mini_batch_size": 16, "remat_every": 2},
            "impl='pallas' needs .* remat_every=2",
        ),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**overrides)


def test_layer_rejects_wrong_shapes():
    params, _ = _layer(_cfg())
    with pytest.raises(ValueError, match="mask_BT must be"):
        TTTLayer(_cfg()).apply(params, _x(), jnp.ones((B, T + 1)))


def test_rope_is_a_relative_rotation():
    keys = jax.random.split(jax.random.key(0), 2)
    q, k = (jax.random.normal(key, (1, 1, 8)) for key in keys)

    def rotated_dot(m, n):
        qm = apply_rope(q, jnp.array([m]), 100.0)
        kn = apply_rope(k, jnp.array([n]), 100.0)
        return jnp.sum(qm * kn)

    np.testing.assert_allclose(rotated_dot(5, 2), rotated_dot(13, 10), rtol=1e-5)
    assert not np.isclose(rotated_dot(5, 2), rotated_dot(5, 3))
    x = jax.random.normal(keys[0], (6, 3, 8))
    rotated = apply_rope(x, jnp.arange(6))
    np.testing.assert_allclose(
        jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
    )
    np.testing.assert_allclose(rotated[0], x[0])
    with pytest.raises(ValueError, match="even head dim"):
        apply_rope(jnp.ones((2, 1, 3)), jnp.arange(2))


def test_qk_norm_and_no_rope_reach_the_inner_loop():
    """qk_norm gives |q|^2 = |k|^2 = d per head and token; rope=False leaves Q and K unrotated."""
    seen = {}

    class Probe(TTTLayer):
        def inner_outputs(self, x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH):
            seen.update(q=q_BTHF, k=k_BTHF)
            return super().inner_outputs(x_BTD, q_BTHF, k_BTHF, v_BTHF, lr_BTH)

    x = _x()
    for cfg in (_cfg(qk_norm=True, rope=False), _cfg(rope=False)):
        layer = Probe(cfg)
        layer.apply(layer.init(jax.random.key(0), x), x)
        if cfg.qk_norm:
            for a in (seen["q"], seen["k"]):
                np.testing.assert_allclose(jnp.sum(a**2, -1), D // H, rtol=1e-4)
            unnormed = dict(seen)
    # Without RoPE the per-token keys are those of the unrotated path up to normalisation only.
    np.testing.assert_allclose(rms_normalize(seen["k"]), unnormed["k"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(apply_rope(seen["k"], jnp.arange(T)), seen["k"])


@pytest.mark.parametrize(
    ("impl", "batch", "sharded"), [("pallas", 8, True), ("pallas", 6, False), ("xla", 8, False)]
)
def test_fused_kernel_is_shard_mapped_over_the_batch_of_the_context_mesh(impl, batch, sharded):
    # A kernel is one custom call that SPMD would replicate: with a context mesh (jax.set_mesh)
    # the layer splits the batch over every device (B divisible), else it runs as before.
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    shape = {"width": 32, "num_heads": 2, "mini_batch_size": 16}
    cfg = _cfg(**shape, impl=impl)
    x = jax.random.normal(jax.random.key(1), (batch, 20, 32))
    params = jax.jit(TTTLayer(cfg).init)(jax.random.key(0), x)

    def outputs_and_grads(layer):
        def loss(p, x):
            return jnp.sum(jnp.sin(layer.apply(p, x)))

        return layer.apply(params, x), jax.grad(loss, argnums=(0, 1))(params, x)

    want = jax.jit(functools.partial(outputs_and_grads, TTTLayer(_cfg(**shape))))()
    with jax.set_mesh(mesh):
        jaxpr = str(jax.make_jaxpr(TTTLayer(cfg).apply)(params, x))
        got = jax.jit(functools.partial(outputs_and_grads, TTTLayer(cfg)))()
    assert ("shard_map" in jaxpr) == sharded
    # Replicated inputs (the inner init, the token scale) get their gradients summed over devices.
    # Sums in another order and per-device matmul shapes round differently in float32: 1e-5 of
    # each leaf's scale.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max()),
        got,
        want,
    )
