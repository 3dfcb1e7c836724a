"""The model zoo: shapes, causality, padding, bf16, remat, parameter counts of the presets.

Compiling the TTT layer dominates the run time, so each variant is compiled once for float32:
`init_with_output` on one batch holding every token set the checks need.
"""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from t3kan_jax.models import (
    ModelConfig,
    abstract_params,
    build_model,
    count_params,
    describe,
    model_name,
)
from t3kan_jax.models.config import PRESETS
from t3kan_jax.models.t3 import ttt_config
from t3kan_jax.ttt.layer import TTTLayer

# t3mlp runs the plain Transformer-style backbone without convs (TTT Q and K unshared).
VARIANTS = {
    "t3lin": dict(arch="ttt", inner="linear"),
    "t3mlp": dict(arch="ttt", inner="mlp", backbone="transformer", conv_width=0),
    "t3kan": dict(arch="ttt", inner="kan"),
    "transformer": dict(arch="transformer"),
    "kansformer": dict(arch="kansformer"),
    "kat": dict(arch="kat"),
}
# T = 10 with mini-batches of 4: two full mini-batches and a shorter last one.
SMALL = dict(vocab_size=32, max_len=16, width=32, depth=1, num_heads=2, mini_batch_size=4)
T = 10
CUT = 5  # inside the second mini-batch, so causality inside a mini-batch is exercised
PAD = (jnp.arange(T) <= CUT).astype(jnp.float32)  # a row of length CUT + 1


def small_config(name: str, **overrides) -> ModelConfig:
    return ModelConfig(**{**SMALL, **VARIANTS[name], **overrides})


def token_rows():
    """Rows: x; x with the tokens after CUT changed; x right-padded after CUT (pad 0, pad 3)."""
    vocab = SMALL["vocab_size"]
    x = jax.random.randint(jax.random.key(1), (T,), 1, vocab)
    future = jax.random.randint(jax.random.key(2), (T,), 1, vocab)
    rows = [x, jnp.where(PAD > 0, x, future), jnp.where(PAD > 0, x, 0), jnp.where(PAD > 0, x, 3)]
    masks = [jnp.ones(T), jnp.ones(T), PAD, PAD]
    return jnp.stack(rows), jnp.stack(masks)


@functools.cache
def built(name: str):
    """(cfg, params, logits of `token_rows()`) from one compiled init_with_output."""
    cfg = small_config(name)
    tokens, masks = token_rows()
    init = jax.jit(build_model(cfg).init_with_output)
    logits, params = init(jax.random.key(0), tokens, masks)
    return cfg, params, logits


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_shape_dtype_finite(name):
    cfg, _, logits = built(name)
    chex.assert_shape(logits, (4, T, cfg.vocab_size))
    assert logits.dtype == jnp.float32
    chex.assert_tree_all_finite(logits)
    assert float(jnp.std(logits)) > 0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_causal(name):
    _, _, logits = built(name)
    chex.assert_trees_all_close(logits[1, : CUT + 1], logits[0, : CUT + 1], atol=1e-5, rtol=1e-5)
    assert float(jnp.max(jnp.abs(logits[1, CUT + 1 :] - logits[0, CUT + 1 :]))) > 1e-4


@pytest.mark.parametrize("name", list(VARIANTS))
def test_right_padding_does_not_reach_real_tokens(name):
    _, _, logits = built(name)
    for row in (2, 3):
        chex.assert_trees_all_close(
            logits[row, : CUT + 1], logits[0, : CUT + 1], atol=1e-5, rtol=1e-5
        )


def assert_bf16_close_to_fp32(name):
    cfg, params, ref = built(name)
    tokens, masks = token_rows()
    low = jax.jit(build_model(dataclasses.replace(cfg, dtype="bfloat16")).apply)(
        params, tokens, masks
    )
    assert low.dtype == jnp.float32
    rel = float(jnp.linalg.norm(low - ref) / jnp.linalg.norm(ref))
    assert rel < 5e-2, rel


# Compiling the TTT layer is the slow part, so the fast set covers one TTT variant per check.
FAST = ["t3lin", "transformer", "kansformer", "kat"]
SLOW = ["t3mlp", "t3kan"]


@pytest.mark.parametrize("name", FAST)
def test_bf16_compute_close_to_fp32(name):
    assert_bf16_close_to_fp32(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_bf16_compute_close_to_fp32_slow(name):
    assert_bf16_close_to_fp32(name)


@functools.cache
def loss_and_grad_fn(cfg: ModelConfig):
    """Jitted `params -> (loss, grads)`: cross-entropy of the input tokens on `token_rows()`."""
    tokens, masks = token_rows()

    def loss(p):
        logp = jax.nn.log_softmax(build_model(cfg).apply(p, tokens, masks))
        return -jnp.mean(jnp.take_along_axis(logp, tokens[..., None], axis=-1))

    return jax.jit(jax.value_and_grad(loss))


def assert_every_parameter_learns(name):
    cfg, params, _ = built(name)
    value, grads = loss_and_grad_fn(cfg)(params)
    chex.assert_tree_all_finite((value, grads))
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    dead = [jax.tree_util.keystr(k) for k, g in flat if not np.any(np.asarray(g) != 0)]
    assert not dead, dead


@pytest.mark.parametrize("name", ["transformer", "kat"])
def test_every_parameter_gets_a_gradient(name):
    assert_every_parameter_learns(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["t3lin", "t3mlp", "t3kan", "kansformer"])
def test_every_parameter_gets_a_gradient_slow(name):
    assert_every_parameter_learns(name)


def assert_remat_changes_nothing(name):
    cfg, params, _ = built(name)
    remat_cfg = dataclasses.replace(cfg, remat=True)
    tokens = token_rows()[0]
    remat_shapes = jax.eval_shape(build_model(remat_cfg).init, jax.random.key(0), tokens)
    chex.assert_trees_all_equal_shapes_and_dtypes(remat_shapes, params)
    chex.assert_trees_all_close(
        loss_and_grad_fn(cfg)(params), loss_and_grad_fn(remat_cfg)(params), atol=1e-6, rtol=1e-5
    )


def test_remat_changes_nothing():
    assert_remat_changes_nothing("transformer")


@pytest.mark.slow
def test_remat_changes_nothing_ttt():
    assert_remat_changes_nothing("t3lin")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_count_params_abstract_equals_concrete(name):
    cfg, params, _ = built(name)
    assert count_params(abstract_params(cfg)) == count_params(params) > 0
    assert describe(cfg).startswith(model_name(cfg))


def test_input_validation():
    cfg, params, _ = built("transformer")
    model = build_model(cfg)
    with pytest.raises(ValueError, match=r"exceeds ModelConfig\.max_len=16"):
        model.apply(params, jnp.zeros((1, 17), jnp.int32))
    with pytest.raises(ValueError, match="mask_BT shape"):
        model.apply(params, jnp.zeros((2, T), jnp.int32), jnp.ones((2, T - 1)))
    with pytest.raises(ValueError, match=r"tokens_BT must be \[batch, time\]"):
        model.apply(params, jnp.zeros((T,), jnp.int32))
    with pytest.raises(ValueError, match="needs a ModelConfig"):
        build_model(ml_collections.ConfigDict(VARIANTS["transformer"]))


def test_model_names():
    names = [model_name(small_config(n)) for n in VARIANTS]
    assert names == ["T3Lin", "T3MLP", "T3KAN", "Transformer", "Kansformer", "KAT"]


VOCAB = 32000  # the Llama tokenizer of the TTT paper


def preset(size: str, name: str) -> ModelConfig:
    return ModelConfig.from_config({"size": size, "vocab_size": VOCAB, **VARIANTS[name]})


def expected_count(cfg: ModelConfig) -> int:
    """Parameter count from the architecture, counted by hand (TTT layer: by eval_shape)."""
    d, v, m = cfg.width, cfg.vocab_size, cfg.mlp_hidden_size
    denses = 4 * d * d + 3 * d * m  # attention projections and SwiGLU, bias-free
    if cfg.arch == "kansformer":  # efficient-KAN: W_base, C (G + p bases), scale per edge
        per_edge = cfg.kan_grid_size + cfg.kan_degree + 2
        return v * d + d + cfg.depth * (per_edge * denses + 2 * d) + per_edge * d * v
    block = denses + 2 * d  # + attention and MLP RMSNorm scales
    if cfg.arch == "kat":  # two Dense with bias, two GR-KAN activations (6 + 8 * 4 each)
        h = cfg.kat_hidden_size
        block += 2 * d * h + h + d + 2 * 38 - 3 * d * m
    if cfg.arch == "ttt":
        ttt = abstract_params_of(TTTLayer(ttt_config(cfg)), (1, 8, d))
        block += ttt - 4 * d * d  # the TTT layer replaces attention
        if cfg.backbone == "mamba":
            block += cfg.conv_width * d + d + d  # depthwise kernel, bias, RMSNorm scale
    return 2 * v * d + d + cfg.depth * block


def abstract_params_of(module, shape) -> int:
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return count_params(jax.eval_shape(module.init, jax.random.key(0), x))


def assert_preset_count(size: str, name: str):
    cfg = preset(size, name)
    assert count_params(abstract_params(cfg, seq_len=16)) == expected_count(cfg)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_125m_preset_counts(name):
    assert_preset_count("125m", name)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["350m", "760m", "1.3b"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_larger_preset_counts(size, name):
    assert_preset_count(size, name)


def test_t3lin_125m_is_about_125m():
    # The official 125M ties the embedding and the head; ours are untied (+24.6M at vocab
    # 32000), so allow 10%.
    n = count_params(abstract_params(preset("125m", "t3lin"), seq_len=16))
    assert abs(n - 125e6) / 125e6 < 0.10, n


def test_transformer_125m_formula_matches_official_shape():
    depth, width, hidden = PRESETS["125m"]
    cfg = preset("125m", "transformer")
    assert (cfg.depth, cfg.width, cfg.num_heads, cfg.mlp_hidden_size) == (12, 768, 12, 2048)
    assert expected_count(cfg) == 2 * VOCAB * width + width + depth * (
        4 * width**2 + 3 * width * hidden + 2 * width
    )
