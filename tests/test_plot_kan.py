"""experiments.plot_kan: finds every KAN of T3KAN and Kansformer parameter trees and draws it."""

import jax
import jax.numpy as jnp

from experiments.plot_kan import kan_layers
from t3kan_jax import models
from t3kan_jax.kan import plot_kan


def _params(arch, inner="kan"):
    cfg = models.ModelConfig(
        arch=arch, inner=inner, width=16, depth=1, num_heads=2, vocab_size=32, max_len=8
    )
    model = models.build_model(cfg)
    return model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]


def test_t3kan_inner_kans_found_per_head_and_drawn(tmp_path):
    layers = kan_layers(_params("ttt"), heads=2)
    assert [name for name, *_ in layers] == ["block_0.ttt.inner_head0", "block_0.ttt.inner_head1"]
    _, pure, knots, degree = layers[0]
    assert degree == 3 and pure["c"].shape == (8, 8, knots.shape[-1] - 4)
    path = tmp_path / "head0.png"
    plot_kan(pure, knots, degree, path, max_edges=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kansformer_dense_kans_found_and_t3lin_has_none():
    names = [name for name, *_ in kan_layers(_params("kansformer"), heads=1)]
    assert "block_0.attn.wq" in names and "lm_head" in names
    assert kan_layers(_params("ttt", inner="linear"), heads=1) == []
