"""ModelConfig: defaults, from_config, presets and the validation of every field."""

import dataclasses

import ml_collections
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t3kan_jax.models.config import (
    ARCHS,
    ATTENTION_IMPLS,
    BACKBONES,
    DTYPES,
    INNERS,
    PRESETS,
    SIZES,
    TTT_FORMS,
    TTT_IMPLS,
    ModelConfig,
)


def test_defaults_are_the_tiny_synthetic_model():
    cfg = ModelConfig()
    assert (cfg.arch, cfg.inner, cfg.size, cfg.vocab_size, cfg.max_len) == (
        "ttt",
        "linear",
        "tiny",
        128,
        32,
    )
    assert cfg.head_dim * cfg.num_heads == cfg.width
    assert cfg.mlp_hidden_size == round(cfg.mlp_ratio * cfg.width)


def test_from_config_reads_a_configdict():
    cd = ml_collections.ConfigDict(dict(arch="kat", width=96, num_heads=3, depth=1, base_lr=None))
    cfg = ModelConfig.from_config(cd)
    assert (cfg.arch, cfg.width, cfg.num_heads, cfg.depth, cfg.base_lr) == ("kat", 96, 3, 1, None)
    assert cfg == ModelConfig.from_config(cfg.to_dict())


def test_from_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['widht'\].*allowed fields"):
        ModelConfig.from_config({"widht": 64})


def test_from_config_rejects_non_mappings():
    with pytest.raises(ValueError, match="ConfigDict or mapping"):
        ModelConfig.from_config([("width", 64)])


@pytest.mark.parametrize(
    "field, allowed",
    [
        ("arch", ARCHS),
        ("inner", INNERS),
        ("backbone", BACKBONES),
        ("ttt_form", TTT_FORMS),
        ("ttt_impl", TTT_IMPLS),
        ("dtype", DTYPES),
        ("param_dtype", DTYPES),
        ("size", SIZES),
        ("attention_impl", ATTENTION_IMPLS),
    ],
)
def test_choice_fields_name_the_allowed_values(field, allowed):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}='bogus'") as err:
        ModelConfig.from_config({field: "bogus"})
    assert str(allowed) in str(err.value)


@pytest.mark.parametrize(
    "field",
    ["vocab_size", "max_len", "width", "depth", "num_heads", "mini_batch_size", "kan_grid_size"],
)
@pytest.mark.parametrize("value", [0, -3, 2.0, True, "8"])
def test_positive_int_fields(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("field", ["kan_degree", "conv_width", "remat_every", "mlp_hidden"])
def test_nonnegative_int_fields(field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}=-1: must be a non-negative int"):
        ModelConfig(arch="transformer", **{field: -1})
    assert getattr(ModelConfig(arch="ttt", backbone="transformer", **{field: 0}), field) == 0


@pytest.mark.parametrize("field", ["mlp_ratio", "rope_theta", "init_std"])
@pytest.mark.parametrize("value", [0.0, -1.0, "1.0", None])
def test_positive_float_fields(field, value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("value", [0.0, -0.1, "1", True])
def test_base_lr(value):
    with pytest.raises(ValueError, match=r"ModelConfig\.base_lr=.*None or a number > 0"):
        ModelConfig(base_lr=value)
    assert ModelConfig(base_lr=0.5).base_lr == 0.5


def test_remat_must_be_bool():
    with pytest.raises(ValueError, match=r"ModelConfig\.remat=1"):
        ModelConfig(remat=1)


def test_width_divisible_by_heads():
    with pytest.raises(ValueError, match=r"width=64 must be divisible by num_heads=3"):
        ModelConfig(width=64, num_heads=3)


def test_head_dim_even_for_rope():
    with pytest.raises(ValueError, match="head dim must be even"):
        ModelConfig(width=60, num_heads=4)


@pytest.mark.parametrize("lo, hi", [(1.0, 1.0), (2.0, -2.0)])
def test_kan_grid_order(lo, hi):
    with pytest.raises(ValueError, match=r"kan_grid_min=.* must be < kan_grid_max"):
        ModelConfig(kan_grid_min=lo, kan_grid_max=hi)


def test_mamba_backbone_needs_a_conv():
    with pytest.raises(ValueError, match=r"conv_width=0: backbone 'mamba'"):
        ModelConfig(conv_width=0)
    assert ModelConfig(conv_width=0, backbone="transformer").conv_width == 0
    assert ModelConfig(conv_width=0, arch="transformer").conv_width == 0


def test_kat_widths_divisible_by_groups():
    with pytest.raises(ValueError, match=r"must be divisible by 8 groups"):
        ModelConfig(arch="kat", width=36, num_heads=2)
    with pytest.raises(ValueError, match=r"KAT hidden width 12 "):
        ModelConfig(arch="kat", width=8, num_heads=1, mlp_hidden=8)
    assert ModelConfig(arch="kat", width=64, mlp_hidden=16).kat_hidden_size == 24


def test_cudnn_attention_needs_bf16():
    with pytest.raises(ValueError, match=r"attention_impl='cudnn' needs dtype 'bfloat16'"):
        ModelConfig(arch="transformer", attention_impl="cudnn")
    assert ModelConfig(attention_impl="cudnn", dtype="bfloat16").attention_impl == "cudnn"


@pytest.mark.parametrize(
    "overrides",
    [
        {"inner": "mlp"},
        {"ttt_form": "primal"},
        {"ttt_optimizer": "titans"},
        {"arch": "kat"},
        {"remat_every": 2},
        {"num_heads": 8},  # head dim 8 < 16
        {"mini_batch_size": 24},
    ],
)
def test_pallas_ttt_impl_needs_the_linear_dual_sgd_layer(overrides):
    with pytest.raises(ValueError, match=r"ttt_impl='pallas' needs arch 'ttt', ttt_optimizer"):
        ModelConfig(ttt_impl="pallas", **overrides)
    assert ModelConfig(ttt_impl="auto", **overrides).ttt_impl == "auto"
    assert ModelConfig(ttt_impl="pallas").ttt_impl == "pallas"


@pytest.mark.parametrize("size", list(PRESETS))
def test_presets_override_shape(size):
    depth, width, hidden = PRESETS[size]
    cfg = ModelConfig.from_config(
        {"size": size, "width": 32, "depth": 1, "num_heads": 2, "vocab_size": 1000}
    )
    assert (cfg.depth, cfg.width, cfg.mlp_hidden_size, cfg.vocab_size) == (
        depth,
        width,
        hidden,
        1000,
    )
    assert cfg.head_dim == 64


def test_preset_direct_construction_must_match():
    with pytest.raises(ValueError, match=r"size='125m' fixes .*from_config"):
        ModelConfig(size="125m")


_choice = st.sampled_from


@settings(max_examples=25, deadline=None)
@given(
    arch=_choice(ARCHS),
    inner=_choice(INNERS),
    backbone=_choice(BACKBONES),
    heads=st.integers(1, 4),
    head_dim=st.sampled_from([8, 16]),
    lo=st.floats(-4, 0),
    span=st.floats(0.5, 4),
    size=_choice(SIZES),
)
def test_valid_configs_round_trip(arch, inner, backbone, heads, head_dim, lo, span, size):
    cd = dict(
        arch=arch,
        inner=inner,
        backbone=backbone,
        num_heads=heads,
        width=heads * head_dim,
        kan_grid_min=lo,
        kan_grid_max=lo + span,
        size=size,
    )
    cfg = ModelConfig.from_config(ml_collections.ConfigDict(cd))
    assert ModelConfig.from_config(cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg) == cfg
    assert cfg.width % cfg.num_heads == 0
