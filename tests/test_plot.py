"""Tests for t3kan_jax/kan/plot.py: the edge-function picture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib import image

import t3kan_jax.kan as kan
from t3kan_jax.kan import kan_edge_parts, kan_init, uniform_knots
from t3kan_jax.kan.plot import edge_curves, select_edges

N_IN, N_OUT, G, P = 3, 2, 5, 3


def params_and_knots():
    knots = uniform_knots(G, P)
    params = jax.jit(lambda k: kan_init(k, N_IN, N_OUT, knots, P, spline_init="silu"))(
        jax.random.key(0)
    )
    return params, jnp.broadcast_to(knots, (N_IN, knots.shape[0])) * jnp.array(
        [[1.0], [2.0], [0.5]]
    )


def test_plot_kan_writes_png(tmp_path):
    params, knots = params_and_knots()
    inputs = np.random.default_rng(1).normal(size=(100, N_IN)).astype(np.float32) * 2
    path = kan.plot_kan(
        params, knots, P, tmp_path / "sub" / "kan.png", max_edges=4, inputs=inputs, title="t"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = image.imread(path).shape
    assert height > 100 and width > 100


def test_edge_curves_cover_grid_and_inputs():
    params, knots = params_and_knots()
    inputs = np.array([[-5.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    x, base, spline = edge_curves(params, knots, P, inputs=inputs)
    assert x.shape == (201, N_IN) and base.shape == spline.shape == (201, N_IN, N_OUT)
    assert x[0, 0] == -5.0 and x[-1, 1] == 6.0
    assert x[0, 2] <= float(knots[2, P]) and x[-1, 2] >= float(knots[2, -P - 1])
    parts = jax.jit(kan_edge_parts, static_argnums=3)
    ref_base, ref_spline = parts(params, jnp.asarray(x, jnp.float32), knots, P)
    np.testing.assert_allclose(base, ref_base, rtol=1e-6)
    np.testing.assert_allclose(spline, ref_spline, rtol=1e-6)


def test_select_edges_picks_largest():
    curves = np.zeros((5, 2, 3))
    curves[:, 1, 2] = 3.0
    curves[:, 0, 1] = -2.0
    curves[:, 1, 0] = 1.0
    assert select_edges(curves, 2) == [(0, 1), (1, 2)]
    assert len(select_edges(curves, None)) == 6
    with pytest.raises(ValueError, match="max_edges"):
        select_edges(curves, 0)
