"""Draws the learned KAN edge functions of a run: `python -m experiments.plot_kan --workdir=DIR`.

T3KAN: the outer-learned initial inner KAN of each TTT layer and head (`ttt/inner`: `W_base`,
`C`, `knots`), the function the inner loop starts every sequence from. Kansformer: each KANDense
layer (`w_base`, `c`, `scale`). One PNG per layer (and head) in DIR/kan_plots/ (or --out).
"""

from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from t3kan_jax.eval.restore import load_run
from t3kan_jax.kan import plot_kan, uniform_knots
from t3kan_jax.models.blocks import unstack_block_params

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by experiments.train.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: DIR/kan_plots).")
_MAX_EDGES = flags.DEFINE_integer("max_edges", 64, "Most edges drawn per picture.")
_HEADS = flags.DEFINE_integer("heads", 1, "TTT heads drawn per layer (the first ones).")


def kan_layers(params, heads: int):
    """`(name, pure params, knots, degree)` for each KAN found in a model's parameter tree."""
    found = []

    def visit(node, path):
        if not isinstance(node, dict):
            return
        if {"W_base", "C", "knots"} <= node.keys():  # a TTT KAN learner, one entry per head
            for h in range(min(heads, node["C"].shape[0])):
                pure = {"w_base": node["W_base"][h], "c": node["C"][h]}
                knots = node["knots"][h]
                degree = knots.shape[-1] - node["C"].shape[-1] - 1
                found.append((f"{path}_head{h}", pure, knots, degree))
        elif {"w_base", "c"} <= node.keys():  # a KANDense layer on its default uniform grid
            found.append((path, {k: node[k] for k in ("w_base", "c", "scale") if k in node}))
        for key, child in node.items():
            visit(child, f"{path}.{key}" if path else key)

    visit(unstack_block_params(params), "")  # scan_layers' stacked blocks as block_0, ...
    return found


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    run = load_run(_WORKDIR.value)
    params = jax.device_get(run.params)
    out = Path(_OUT.value or Path(_WORKDIR.value) / "kan_plots")
    out.mkdir(parents=True, exist_ok=True)
    cfg = run.model_cfg
    layers = kan_layers(params.get("params", params), _HEADS.value)
    if not layers:
        raise app.UsageError(f"--workdir={_WORKDIR.value}: the model ({cfg.arch}) has no KAN layer")
    for name, pure, *grid in layers:
        if grid:
            knots, degree = grid
        else:
            degree = cfg.kan_degree
            knots = uniform_knots(cfg.kan_grid_size, degree, cfg.kan_grid_min, cfg.kan_grid_max)
        path = out / f"{name.replace('.', '_')}.png"
        plot_kan(pure, np.asarray(knots), degree, path, max_edges=_MAX_EDGES.value, title=name)
        print(path)


if __name__ == "__main__":
    app.run(main)
