"""Tests for t3kan_jax/kan/rational.py (GR-KAN) and experiments/fit_rational.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf

from experiments import fit_rational
from t3kan_jax.kan import rational_coeffs
from t3kan_jax.kan.rational import (
    group_rational,
    group_rational_init,
    rational,
    rational_init_coefficients,
    rational_second_moment,
    variance_preserving_init,
)

TARGETS = {
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
}
group_apply = jax.jit(group_rational)
rational_apply = jax.jit(rational)


@pytest.mark.parametrize("name", ["swish", "gelu"])
def test_init_fits_target_on_minus3_3(name):
    x = np.linspace(-3.0, 3.0, 1201, dtype=np.float32)
    y = group_apply(group_rational_init(4, name), np.tile(x[:, None], (1, 8)))
    np.testing.assert_allclose(y, np.tile(TARGETS[name](x)[:, None], (1, 8)), atol=1e-2)


def test_identity_init_is_the_identity():
    x = np.linspace(-100.0, 100.0, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(group_apply(group_rational_init(2, "identity"), x), x)
    assert rational_second_moment(*rational_init_coefficients("identity")) == pytest.approx(1.0)


def test_denominator_uses_absolute_values_and_stays_finite():
    num, den = rational_init_coefficients("swish")
    x = jnp.array([-1e6, -3.0, -0.5, 0.0, 0.5, 3.0, 1e6], jnp.float32)
    y = rational_apply(x, jnp.asarray(num), jnp.asarray(den))
    np.testing.assert_allclose(rational_apply(x, jnp.asarray(num), -jnp.asarray(den)), y)
    assert bool(jnp.all(jnp.isfinite(y)))
    p = np.polyval(np.asarray(num, np.float64)[::-1], 0.5)
    q = 1 + sum(abs(b) * 0.5 ** (i + 1) for i, b in enumerate(den))
    np.testing.assert_allclose(y[4], p / q, rtol=1e-6)


def test_groups_get_their_own_denominators():
    params = group_rational_init(num_groups=2, init="gelu")
    params["denominator"] = params["denominator"].at[1].set(jnp.array([0.5, 0.1, 0.2, 0.3]))
    x = jnp.linspace(-2.0, 2.0, 3 * 6).reshape(3, 6)  # channels 0-2: group 0, 3-5: group 1
    y = group_apply(params, x)
    num = params["numerator"]
    np.testing.assert_allclose(
        y[:, :3], rational_apply(x[:, :3], num, params["denominator"][0]), rtol=1e-6
    )
    np.testing.assert_allclose(
        y[:, 3:], rational_apply(x[:, 3:], num, params["denominator"][1]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="divisible"):
        group_rational(params, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="init"):
        group_rational_init(2, "relu")


def test_second_moment_matches_numerical_integral():
    num, den = rational_init_coefficients("gelu")

    def integrand(x):
        p = np.polyval(np.asarray(num)[::-1], x)
        q = 1 + abs(x) * np.polyval(np.abs(den)[::-1], abs(x))
        return (p / q) ** 2 * np.exp(-0.5 * (x / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))

    expected = integrate.quad(integrand, -np.inf, np.inf)[0]
    np.testing.assert_allclose(rational_second_moment(num, den, std=1.5), expected, rtol=1e-6)


def test_variance_preserving_init_keeps_unit_variance():
    params = group_rational_init(8, "gelu")
    m2 = rational_second_moment(*rational_init_coefficients("gelu"))
    w = variance_preserving_init(m2)(jax.random.key(0), (512, 256), jnp.float32)
    np.testing.assert_allclose(float(w.var()), 1.0 / (512 * m2), rtol=0.05)
    x = np.random.default_rng(1).normal(size=(2048, 512)).astype(np.float32)
    y = jax.jit(lambda x: group_rational(params, x) @ w)(x)
    np.testing.assert_allclose(float(y.var()), 1.0, rtol=0.1)
    with pytest.raises(ValueError, match="second_moment"):
        variance_preserving_init(0.0)


def test_refit_script_reproduces_shipped_coefficients():
    fits = fit_rational.fit_all()
    x = np.linspace(-3.0, 3.0, 601)
    for name, (num, den, err) in fits.items():
        assert err < 1e-2
        shipped = np.concatenate(
            [
                getattr(rational_coeffs, f"{name.upper()}_{part}")
                for part in ("NUMERATOR", "DENOMINATOR")
            ]
        )
        refit = np.concatenate([num, den])
        np.testing.assert_allclose(
            fit_rational.rational_np(refit, x), fit_rational.rational_np(shipped, x), atol=1e-4
        )
    assert "SWISH_NUMERATOR" in fit_rational.coeffs_module(fits)
