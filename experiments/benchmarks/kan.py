"""KAN layer suite: forward+backward time of KANDense, linear-spline KAN and GR-KAN against
`nn.Dense` of the same width and against the FLOP-equivalent floor, a Dense layer on a
(G+p+1)x wider input (KANDense is one matmul of `[silu(x), B(x)]` features with that width).

`python -m experiments.bench --suite=kan [--quick]`; shapes: batch 4096, 1024 -> 1024, G=5, p=3.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks.timing import time_fn
from t3kan_jax.kan import GRKAN, KANDense, LinearSplineKAN

GRID_SIZE, DEGREE = 5, 3
# efficient-KAN on one H100, batch 4096, 1024 -> 1024, fwd+bwd (measured, design brief §3).
EFFICIENT_KAN_H100_MS = {"float32": 13.9, "bfloat16": 9.8}
# The gather form materialises [batch, I, O]; beyond this many bytes its row is skipped.
GATHER_MAX_BYTES = 2**31


def _fwd_bwd(module, variables, x):
    """Jitted grad of `sum(y)` with respect to the variables and the input."""

    def loss(variables, x):
        return jnp.sum(module.apply(variables, x).astype(jnp.float32))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _layers(width: int, dtype):
    floor_width = (GRID_SIZE + DEGREE + 1) * width
    return [
        ("dense", nn.Dense(width, dtype=dtype), width),
        (f"dense_{GRID_SIZE + DEGREE + 1}x_floor", nn.Dense(width, dtype=dtype), floor_width),
        ("kan_dense", KANDense(width, GRID_SIZE, DEGREE, dtype=dtype), width),
        (
            f"linear_spline_kan_k{GRID_SIZE + 1}_dense",
            LinearSplineKAN(width, GRID_SIZE + 1, impl="dense", dtype=dtype),
            width,
        ),
        (
            f"linear_spline_kan_k{GRID_SIZE + 1}_gather",
            LinearSplineKAN(width, GRID_SIZE + 1, impl="gather", dtype=dtype),
            width,
        ),
        ("grkan", GRKAN(width, num_groups=8, dtype=dtype), width),
    ]


def run(quick: bool) -> list[dict]:
    batch, width = (64, 32) if quick else (4096, 1024)
    warmup, iters = (1, 3) if quick else (5, 50)
    rng = np.random.default_rng(0)
    rows = []
    for dtype in (jnp.float32, jnp.bfloat16):
        dtype_name = jnp.dtype(dtype).name
        timings = {}
        for name, module, in_width in _layers(width, dtype):
            row = {"layer": name, "dtype": dtype_name, "batch": batch, "in": in_width, "out": width}
            if "gather" in name and batch * in_width * width * 4 > GATHER_MAX_BYTES:
                rows.append(
                    {**row, "fwd_bwd_ms": float("nan"), "note": "skipped: [B, I, O] too big"}
                )
                continue
            xs = [jnp.asarray(rng.uniform(-1.0, 1.0, (batch, in_width)), dtype) for _ in range(2)]
            variables = module.init(jax.random.key(0), xs[0])
            fn = _fwd_bwd(module, variables, xs[0])
            stats = time_fn(fn, [(variables, x) for x in xs], warmup=warmup, iters=iters)
            timings[name] = stats["median_ms"]
            rows.append({**row, "fwd_bwd_ms": stats["median_ms"], "p90_ms": stats["p90_ms"]})
        dense = timings["dense"]
        floor = timings[f"dense_{GRID_SIZE + DEGREE + 1}x_floor"]
        for row in rows:
            if row["dtype"] != dtype_name or "note" in row:
                continue
            row["ratio_vs_dense"] = row["fwd_bwd_ms"] / dense
            row["ratio_vs_floor"] = row["fwd_bwd_ms"] / floor
            if row["layer"] == "kan_dense" and not quick:
                row["speedup_vs_efficient_kan_h100"] = (
                    EFFICIENT_KAN_H100_MS[dtype_name] / row["fwd_bwd_ms"]
                )
    return rows
