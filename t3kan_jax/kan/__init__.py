"""KAN layers as pure functions of `(params, inputs)`; Flax wrappers live in `layers.py`.

`plot_kan` is imported on first use, so importing this package does not import matplotlib.
"""

from t3kan_jax.kan.basis import (
    bspline_basis,
    bspline_basis_and_derivative,
    bspline_basis_derivative,
    uniform_knots,
)
from t3kan_jax.kan.grid import (
    extend_grid,
    grid_from_samples,
    knots_from_endpoints,
    knots_from_increments,
    refit_to_knots,
    update_grid,
)
from t3kan_jax.kan.layers import GRKAN, GroupRational, KANDense, LinearSplineKAN, extend_kan_dense
from t3kan_jax.kan.linear_spline import linear_spline_apply, linear_spline_edges, linear_spline_init
from t3kan_jax.kan.rational import (
    group_rational,
    group_rational_init,
    rational,
    rational_second_moment,
    variance_preserving_init,
)
from t3kan_jax.kan.spline import (
    kan_apply,
    kan_edge_parts,
    kan_features,
    kan_flat_features,
    kan_flat_weight,
    kan_init,
    kan_regularization,
    spline_coefficients,
)

__all__ = [
    "GRKAN",
    "GroupRational",
    "KANDense",
    "LinearSplineKAN",
    "bspline_basis",
    "bspline_basis_and_derivative",
    "bspline_basis_derivative",
    "extend_grid",
    "extend_kan_dense",
    "grid_from_samples",
    "group_rational",
    "group_rational_init",
    "kan_apply",
    "kan_edge_parts",
    "kan_features",
    "kan_flat_features",
    "kan_flat_weight",
    "kan_init",
    "kan_regularization",
    "knots_from_endpoints",
    "knots_from_increments",
    "linear_spline_apply",
    "linear_spline_edges",
    "linear_spline_init",
    "plot_kan",
    "rational",
    "rational_second_moment",
    "refit_to_knots",
    "spline_coefficients",
    "uniform_knots",
    "update_grid",
    "variance_preserving_init",
]


def __getattr__(name):
    if name == "plot_kan":
        from t3kan_jax.kan.plot import plot_kan

        return plot_kan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
