"""Flax Linen wrappers of the KAN layers; the math is in spline.py, linear_spline.py, rational.py.

`KANDense` replaces `nn.Dense` one for one. Its grid lives, by `grid_mode`, nowhere ("fixed": the
uniform knots of `grid_range`), in the non-trainable collection "grid" ("buffer", as in pykan and
efficient-KAN), or in "params" ("endpoints": learnable per-input `lo < hi`; "knots": every knot,
kept sorted as `start + cumsum(softplus(raw))`), where the outer optimizer trains it.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from t3kan_jax.kan import grid as grid_lib
from t3kan_jax.kan.basis import uniform_knots
from t3kan_jax.kan.linear_spline import linear_spline_apply, linear_spline_init
from t3kan_jax.kan.rational import (
    group_rational,
    group_rational_init,
    rational_init_coefficients,
    rational_second_moment,
    variance_preserving_init,
)
from t3kan_jax.kan.spline import (
    SPLINE_INITS,
    init_base_weight,
    init_spline_coefficients,
    init_spline_scale,
    kan_apply,
    kan_regularization,
)

GRID_MODES = ("fixed", "buffer", "endpoints", "knots")
_SPLINE_PARAMS = ("w_base", "c", "scale", "b")


def knot_variables(grid_mode: str, knots_IS, degree: int):
    """`(params, grid)` variables that represent the knots `[I, S]` in `grid_mode`."""
    if grid_mode == "fixed":
        return {}, {}
    if grid_mode == "buffer":
        return {}, {"knots": knots_IS}
    if grid_mode == "endpoints":
        return {"grid_lo": knots_IS[:, degree], "grid_hi": knots_IS[:, -degree - 1]}, {}
    if grid_mode == "knots":
        start, raw = grid_lib.increments_from_knots(knots_IS)
        return {"knot_start": start, "knot_raw": raw}, {}
    raise ValueError(f"grid_mode must be one of {GRID_MODES}, got {grid_mode!r}")


def layer_knots(grid_mode, params: Mapping, grid: Mapping, grid_size, degree, grid_range):
    """The knots a KANDense uses: `[S]` for "fixed", else `[I, S]`."""
    if grid_mode == "fixed":
        return uniform_knots(grid_size, degree, *grid_range)
    if grid_mode == "buffer":
        return grid["knots"]
    if grid_mode == "endpoints":
        return grid_lib.knots_from_endpoints(
            params["grid_lo"], params["grid_hi"], grid_size, degree
        )
    if grid_mode == "knots":
        return grid_lib.knots_from_increments(params["knot_start"], params["knot_raw"])
    raise ValueError(f"grid_mode must be one of {GRID_MODES}, got {grid_mode!r}")


class KANDense(nn.Module):
    """`y = silu(x) W_base + B(x)·(C ⊙ scale) (+ b)` over the last axis (efficient-KAN form)."""

    features: int
    grid_size: int = 5
    degree: int = 3
    grid_range: tuple[float, float] = (-1.0, 1.0)
    use_bias: bool = True
    spline_init: str = "noise"
    scale_noise: float = 0.1
    scale_base: float = 1.0
    scale_spline: float = 1.0
    spline_scale: bool = True
    grid_mode: str = "fixed"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def _check(self):
        if self.grid_mode not in GRID_MODES:
            raise ValueError(f"grid_mode must be one of {GRID_MODES}, got {self.grid_mode!r}")
        if self.spline_init not in SPLINE_INITS:
            raise ValueError(f"spline_init must be one of {SPLINE_INITS}, got {self.spline_init!r}")
        if not self.grid_range[0] < self.grid_range[1]:
            raise ValueError(f"grid_range must satisfy lo < hi, got {self.grid_range}")

    def _knots(self, params, grid):
        return layer_knots(
            self.grid_mode, params, grid, self.grid_size, self.degree, self.grid_range
        )

    @nn.compact
    def __call__(self, x):
        self._check()
        n_in, n_out = x.shape[-1], self.features
        init = uniform_knots(self.grid_size, self.degree, *self.grid_range).astype(self.param_dtype)
        init = jnp.broadcast_to(init, (n_in, init.shape[0]))
        p_init, g_init = knot_variables(self.grid_mode, init, self.degree)
        # `variable`, not `param`: no rng drawn, so every grid mode initialises W and C alike.
        kp = {k: self.variable("params", k, lambda v=v: v).value for k, v in p_init.items()}
        kg = {k: self.variable("grid", k, lambda v=v: v).value for k, v in g_init.items()}
        knots = self._knots(kp, kg)
        params = {
            "w_base": self.param(
                "w_base",
                lambda k: init_base_weight(k, n_in, n_out, self.scale_base, self.param_dtype),
            ),
            "c": self.param(
                "c",
                lambda k: init_spline_coefficients(
                    k,
                    n_in,
                    n_out,
                    knots,
                    self.degree,
                    self.spline_init,
                    self.scale_noise,
                    self.param_dtype,
                ),
            ),
        }
        if self.spline_scale:
            params["scale"] = self.param(
                "scale",
                lambda k: init_spline_scale(k, n_in, n_out, self.scale_spline, self.param_dtype),
            )
        if self.use_bias:
            params["b"] = self.param("b", nn.initializers.zeros, (n_out,), self.param_dtype)
        return kan_apply(params, x, knots, self.degree, compute_dtype=self.dtype)

    def export(self):
        """`(params, knots)` of the pure layer (spline.py), e.g. for `plot_kan`; use with
        `layer.apply(variables, method="export")`."""
        params = self.variables["params"]
        knots = self._knots(params, self.variables.get("grid", {}))
        return {k: params[k] for k in _SPLINE_PARAMS if k in params}, knots

    def regularization(self, x, l1: float = 1.0, entropy: float = 2.0):
        """pykan's L1 + entropy loss on `x`: `layer.apply(v, x, method="regularization")`."""
        params, knots = self.export()
        return kan_regularization(params, x, knots, self.degree, l1=l1, entropy=entropy)

    def update_grid(self, x, grid_eps: float = 0.02, margin: float = 0.01):
        """Adapts the grid to samples `x [..., I]`, refitting `C` so the function is preserved.

        Use `_, v = layer.apply(v, x, method="update_grid", mutable=["params", "grid"])`.
        """
        if self.grid_mode == "fixed":
            raise ValueError(
                "update_grid needs a stored grid: grid_mode must be one of "
                f"{GRID_MODES[1:]}, got 'fixed'"
            )
        params, knots = self.export()
        x_NI = jnp.reshape(x, (-1, params["c"].shape[0]))
        proposed = grid_lib.grid_from_samples(
            x_NI, self.grid_size, self.degree, grid_eps=grid_eps, margin=margin
        )
        p_new, g_new = knot_variables(self.grid_mode, proposed, self.degree)
        new_knots = self._knots({**self.variables["params"], **p_new}, g_new)
        refit = grid_lib.refit_to_knots(params, knots, new_knots, x_NI, self.degree)
        for name, value in {**p_new, "c": refit["c"]}.items():
            self.put_variable("params", name, value)
        for name, value in g_new.items():
            self.put_variable("grid", name, value)


def extend_kan_dense(layer: KANDense, variables, new_grid_size: int, samples_per_interval=8):
    """`(layer, variables)` with `new_grid_size` intervals and the spline refit (grid extension)."""
    params, grid = dict(variables["params"]), dict(variables.get("grid", {}))
    knots = layer_knots(
        layer.grid_mode, params, grid, layer.grid_size, layer.degree, layer.grid_range
    )
    knots = jnp.broadcast_to(knots, (params["c"].shape[0], knots.shape[-1]))
    if new_grid_size < layer.grid_size:
        raise ValueError(
            f"new_grid_size must be >= the grid size {layer.grid_size}, got {new_grid_size}"
        )
    new_layer = layer.clone(grid_size=new_grid_size)
    p_new, g_new = knot_variables(
        layer.grid_mode, grid_lib.refine_knots(knots, layer.degree, new_grid_size), layer.degree
    )
    params, grid = {**params, **p_new}, {**grid, **g_new}
    new_knots = layer_knots(
        layer.grid_mode, params, grid, new_grid_size, layer.degree, layer.grid_range
    )
    x_NI = grid_lib.range_samples(
        knots, layer.degree, samples_per_interval * (new_grid_size + layer.degree)
    )
    params["c"] = grid_lib.refit_to_knots(params, knots, new_knots, x_NI, layer.degree)["c"]
    new_variables = {**variables, "params": params}
    if grid:
        new_variables["grid"] = grid
    return new_layer, new_variables


class LinearSplineKAN(nn.Module):
    """KANditioned layer: a uniform C⁰ spline per edge on `[-w/2, w/2]`, linear outside."""

    features: int
    num_control_points: int = 32
    spline_width: float = 4.0
    spline_init: str = "random_normal"
    use_bias: bool = False
    impl: str = "dense"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n_in = x.shape[-1]
        params = {
            "c": self.param(
                "c",
                lambda k: linear_spline_init(
                    k,
                    n_in,
                    self.features,
                    self.num_control_points,
                    self.spline_width,
                    self.spline_init,
                    dtype=self.param_dtype,
                )["c"],
            )
        }
        if self.use_bias:
            params["b"] = self.param("b", nn.initializers.zeros, (self.features,), self.param_dtype)
        return linear_spline_apply(
            params, x, self.spline_width, impl=self.impl, compute_dtype=self.dtype
        )


class GroupRational(nn.Module):
    """GR-KAN activation: shared P5 numerator, one Q4 denominator per channel group."""

    num_groups: int = 8
    rational_init: str = "swish"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = group_rational_init(self.num_groups, self.rational_init, self.param_dtype)
        params = {k: self.param(k, lambda _, v=v: v) for k, v in init.items()}
        return group_rational(params, x)


class GRKAN(nn.Module):
    """GR-KAN layer (KAT): group-rational activation, then a Dense layer initialised to preserve
    the variance of unit-variance inputs through φ."""

    features: int
    num_groups: int = 8
    rational_init: str = "gelu"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = GroupRational(self.num_groups, self.rational_init, self.param_dtype, name="rational")(x)
        kernel_init = variance_preserving_init(
            rational_second_moment(*rational_init_coefficients(self.rational_init))
        )
        return nn.Dense(
            self.features,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=kernel_init,
            name="dense",
        )(h)
