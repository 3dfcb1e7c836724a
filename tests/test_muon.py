"""Newton–Schulz orthogonalisation: singular values near 1, singular vectors kept, safe at zero."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.ttt.muon import frobenius_norm, newton_schulz

# Where 5 quintic steps put every singular value that starts in [2e-3, 1] relative to ‖G‖_F
# (the map p(σ) = 3.4445σ − 4.7750σ³ + 2.0315σ⁵ iterated 5 times has range [0.6818, 1.2024]).
LOW, HIGH = 0.68, 1.21


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 24)])
def test_orthogonalises_and_keeps_singular_vectors(shape, x64):
    """For G = U Σ Vᵀ: `Uᵀ NS(G) V` is diagonal (to 1e-10) with entries in [0.68, 1.21]."""
    g = np.random.default_rng(sum(shape)).normal(size=shape)
    u, sigma, vt = np.linalg.svd(g, full_matrices=False)
    assert sigma.min() / np.linalg.norm(g) > 2e-3  # inside the range the bound holds for
    x = np.asarray(newton_schulz(jnp.asarray(g)))
    chex.assert_shape(x, shape)
    core = u.T @ x @ vt.T
    off_diagonal = core - np.diag(np.diag(core))
    assert np.abs(off_diagonal).max() < 1e-10
    singular = np.linalg.svd(x, compute_uv=False)
    assert LOW <= singular.min() and singular.max() <= HIGH, singular
    # Not the identity map: the input's spread of singular values is gone.
    assert sigma.max() / sigma.min() > 2.5 and singular.max() / singular.min() < 1.8


def test_batched_matrices_equal_one_at_a_time():
    g = jax.random.normal(jax.random.key(0), (3, 8, 5))
    batched = newton_schulz(g)
    chex.assert_trees_all_close(batched, jnp.stack([newton_schulz(m) for m in g]), atol=1e-6)


def test_zero_steps_is_the_frobenius_normalised_input():
    g = jax.random.normal(jax.random.key(1), (4, 6))
    chex.assert_trees_all_close(newton_schulz(g, steps=0), g / jnp.linalg.norm(g), atol=1e-6)


def test_zero_matrix_maps_to_zero_with_finite_gradients():
    """A chunk of padding has a zero gradient: NS(0) = 0, and the outer gradient is not NaN."""
    zero = jnp.zeros((4, 6))
    chex.assert_trees_all_equal(newton_schulz(zero), zero)
    grad = jax.grad(lambda g: jnp.sum(jnp.sin(newton_schulz(g))))(zero)
    assert np.all(np.isfinite(grad))
    assert np.all(np.isfinite(jax.grad(lambda x: frobenius_norm(x).sum())(zero)))


def test_frobenius_norm_matches_numpy():
    x = np.random.default_rng(2).normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(frobenius_norm(x)[:, 0, 0], np.linalg.norm(x, axis=(1, 2)), 1e-6)
    np.testing.assert_allclose(frobenius_norm(x, axis=1)[:, 0], np.linalg.norm(x, axis=1), 1e-6)


@pytest.mark.parametrize(
    ("g", "kwargs", "match"),
    [
        (jnp.ones(3), {}, r"needs matrices \[..., I, O\]"),
        (jnp.ones((2, 2)), {"steps": -1}, "steps=-1"),
        (jnp.ones((2, 2)), {"steps": 2.0}, "steps=2.0"),
    ],
)
def test_bad_arguments_raise(g, kwargs, match):
    with pytest.raises(ValueError, match=match):
        newton_schulz(g, **kwargs)
