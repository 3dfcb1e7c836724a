"""T3 models with the Titans and LaCT layers (ModelConfig.ttt_optimizer): configs, names,
causality, padding, gradients and the validation of the new fields."""

import functools
import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.models import ModelConfig, build_model, count_params, model_name
from t3kan_jax.models.config import INNERS, LACT_INNERS, TTT_OPTIMIZERS

SMALL = dict(vocab_size=32, max_len=16, width=16, depth=1, num_heads=2, mini_batch_size=4)
VARIANTS = {
    "titans": dict(inner="mlp", ttt_optimizer="titans"),
    "lact": dict(inner="swiglu", ttt_optimizer="lact", lact_window=4),
}
T, CUT = 10, 5


pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.mark.parametrize(("name", "expected"), [("titans", "TitansMLP"), ("lact", "LaCT")])
def test_config_builds_its_model(name, expected):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.name == name
    assert set(config.model.keys()) == set(ModelConfig.field_names())
    cfg = ModelConfig.from_config(config.model)
    assert model_name(cfg) == expected
    assert model_name(ModelConfig(inner="kan", ttt_optimizer="titans")) == "TitansKAN"
    assert model_name(ModelConfig(inner="linear", ttt_optimizer="lact")) == "LaCTLin"


@functools.cache
def _built(name):
    """(params, logits) of rows: x; x changed after CUT; x padded after CUT (mask)."""
    cfg = ModelConfig(**SMALL, **VARIANTS[name])
    x = jax.random.randint(jax.random.key(1), (T,), 1, SMALL["vocab_size"])
    later = jax.random.randint(jax.random.key(2), (T,), 1, SMALL["vocab_size"])
    real = jnp.arange(T) <= CUT
    tokens = jnp.stack([x, jnp.where(real, x, later), jnp.where(real, x, 0)])
    masks = jnp.stack([jnp.ones(T), jnp.ones(T), real.astype(jnp.float32)])
    logits, params = jax.jit(build_model(cfg).init_with_output)(jax.random.key(0), tokens, masks)
    return cfg, params, tokens, masks, logits


@pytest.mark.parametrize("name", list(VARIANTS))
def test_causal_padded_and_finite(name):
    _, _, _, _, logits = _built(name)
    assert logits.shape == (3, T, SMALL["vocab_size"]) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits[1, : CUT + 1], logits[0, : CUT + 1], atol=1e-5)
    np.testing.assert_allclose(logits[2, : CUT + 1], logits[0, : CUT + 1], atol=1e-5)
    assert float(jnp.abs(logits[1, CUT + 1 :] - logits[0, CUT + 1 :]).max()) > 1e-4


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_parameter_gets_a_gradient(name):
    cfg, params, tokens, masks, _ = _built(name)
    model = build_model(cfg)

    def loss(p):
        return jnp.mean(jnp.square(model.apply(p, tokens, masks)))

    grads = jax.jit(jax.grad(loss))(params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    dead = [jax.tree_util.keystr(path) for path, g in flat if not np.any(np.asarray(g) != 0.0)]
    assert not dead, dead
    assert count_params(params) == sum(np.size(g) for _, g in flat)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ttt_optimizer": "adam"}, f"ttt_optimizer='adam': allowed values are {TTT_OPTIMIZERS}"),
        ({"inner": "swiglu"}, f"inner='swiglu': allowed values are {INNERS}"),
        (
            {"inner": "rbf", "ttt_optimizer": "lact"},
            f"inner='rbf': allowed values are {LACT_INNERS}",
        ),
        ({"lact_muon": 1}, "lact_muon=1: must be True or False"),
        ({"lact_renorm": "no"}, "lact_renorm='no': must be True or False"),
        ({"lact_window": -1}, "lact_window=-1: must be a non-negative int"),
        ({"lact_hidden_ratio": 0}, "lact_hidden_ratio=0: must be a positive int"),
        ({"titans_forget_bias": "x"}, "titans_forget_bias='x': must be a number"),
    ],
)
def test_bad_fields_raise(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        ModelConfig(**kwargs)
