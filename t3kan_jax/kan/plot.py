"""Picture of a B-spline KAN layer: a panel per edge with its learned function (KAN §2.5, fig 2.4).

Matplotlib's object API on an Agg canvas: no pyplot, no global backend switch.
"""

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from t3kan_jax.kan.spline import kan_edge_parts

_edge_parts = jax.jit(kan_edge_parts, static_argnums=3)


def edge_curves(params, knots, degree: int, *, num_points=201, pad=0.1, inputs=None):
    """`(x [P, I], base [P, I, O], spline [P, I, O])` on each input's grid range, widened by `pad`
    of its length each side and, when `inputs [..., I]` are given, to cover them."""
    in_features = np.shape(params["c"])[0]
    knots_IS = np.broadcast_to(np.asarray(knots, np.float64), (in_features, np.shape(knots)[-1]))
    lo, hi = knots_IS[:, degree], knots_IS[:, -degree - 1]
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    if inputs is not None:
        x_NI = np.asarray(inputs, np.float64).reshape(-1, in_features)
        lo, hi = np.minimum(lo, x_NI.min(0)), np.maximum(hi, x_NI.max(0))
    x_PI = lo + (hi - lo) * np.linspace(0.0, 1.0, num_points)[:, None]
    base, spline = _edge_parts(params, jnp.asarray(x_PI, jnp.float32), jnp.asarray(knots), degree)
    return x_PI, np.asarray(base), np.asarray(spline)


def select_edges(curves_PIO, max_edges: int | None):
    """`(i, o)` pairs, sorted, of the `max_edges` edges with the largest mean |φ| (all if None)."""
    if max_edges is not None and max_edges < 1:
        raise ValueError(f"max_edges must be >= 1 or None, got {max_edges}")
    size_IO = np.abs(curves_PIO).mean(axis=0)
    order = np.argsort(-size_IO, axis=None, kind="stable")[:max_edges]
    ii, oo = np.unravel_index(order, size_IO.shape)
    return sorted(zip(ii.tolist(), oo.tolist(), strict=True))


def plot_kan(
    params, knots, degree: int, path, *, max_edges: int | None = 64, inputs=None,
    num_points: int = 201, title: str | None = None,
):  # fmt: skip
    """Writes a PNG grid of edge functions `φ_io = base + spline` and returns its path.

    `params` is the pure dict of spline.py (`w_base [I, O]`, `c [I, O, K]`, optional `scale`),
    `knots` `[S]` or `[I, S]`. With more than `max_edges` edges the ones with the largest mean |φ|
    are drawn. Light band: the grid range `[t_p, t_{S-p-1}]`; darker band: the range of `inputs`.
    """
    knots_IS = np.broadcast_to(np.asarray(knots), (np.shape(params["c"])[0], np.shape(knots)[-1]))
    x, base, spline = edge_curves(params, knots, degree, num_points=num_points, inputs=inputs)
    total = base + spline
    edges = select_edges(total, max_edges)
    x_min = x_max = None
    if inputs is not None:
        x_NI = np.asarray(inputs).reshape(-1, total.shape[1])
        x_min, x_max = x_NI.min(0), x_NI.max(0)
    cols = math.ceil(math.sqrt(len(edges)))
    rows = math.ceil(len(edges) / cols)
    fig = Figure(figsize=(2.2 * cols, 1.9 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for n, (i, o) in enumerate(edges):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.axvspan(knots_IS[i, degree], knots_IS[i, -degree - 1], color="0.93", zorder=0)
        if x_min is not None:
            ax.axvspan(x_min[i], x_max[i], color="0.82", zorder=0)
        ax.plot(x[:, i], total[:, i, o], color="C0", lw=2.4, alpha=0.6, label="φ")
        ax.plot(x[:, i], spline[:, i, o], color="C1", lw=1.0, ls="--", label="spline")
        ax.plot(x[:, i], base[:, i, o], color="C2", lw=1.0, ls=":", label="base")
        ax.set_title(f"in {i} → out {o}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.axes[0].legend(fontsize=6, loc="best")
    shown = f"{len(edges)} of {total.shape[1] * total.shape[2]} edges"
    fig.suptitle(f"{title}: {shown}" if title else shown, fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
