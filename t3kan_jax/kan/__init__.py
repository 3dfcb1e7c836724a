"""KAN layers as pure functions of `(params, inputs)`; Flax wrappers live in `layers.py`."""

from t3kan_jax.kan.basis import bspline_basis, uniform_knots

__all__ = ["bspline_basis", "uniform_knots"]
