"""Data-parallel scaling of the training step over the GPUs of one host (`--suite=scaling`).

The step of `--suite=model` (same models, precision and optimizer) with the batch split over a
`data` mesh axis of n = 1, 2, 4, ... devices (`t3kan_jax.train.sharding`, parameters and AdamW
state replicated, gradients all-reduced by XLA). Weak scaling: TOKENS_PER_DEVICE tokens per device
and step, so the global batch grows with n. `efficiency` = tokens/s on n devices / (n x tokens/s
on one device); 1.0 is perfect scaling.

`T3Lin-pallas` runs its fused kernel per device: the step is traced under `jax.set_mesh`, and
each TTT layer shard_maps the kernel over the batch (t3kan_jax/ttt/layer.py).

Row selection (environment): BENCH_SCALING_MODELS (default T3Lin-pallas,T3Lin,Transformer),
BENCH_SCALING_T (sequence lengths, default 2048), BENCH_SCALING_TOKENS (tokens per device and
step, default 32768).
The blocks are scanned over depth as in `--suite=model` (BENCH_MODEL_SCAN_LAYERS, default "on";
column `scan_layers`).
"""

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from experiments.benchmarks import model as model_bench
from experiments.benchmarks.timing import env_list, time_fn
from t3kan_jax.models import build_model
from t3kan_jax.train import sharding
from t3kan_jax.train.optim import make_optimizer

MODELS = ("T3Lin-pallas", "T3Lin", "Transformer")
SEQ_LENS = (2048,)
TOKENS_PER_DEVICE = 32768
QUICK_SEQ_LEN, QUICK_TOKENS = 32, 64
WARMUP, ITERS = 2, 10


def device_counts(total: int) -> list[int]:
    """1, 2, 4, ... up to `total`, and `total` itself."""
    counts, n = [], 1
    while n < total:
        counts.append(n)
        n *= 2
    return [*counts, total]


def measure(
    name: str,
    seq_len: int,
    tokens_per_device: int,
    n: int,
    *,
    quick: bool,
    scan_layers: bool = True,
) -> dict:
    """Step time and tokens/s of `name` on the first `n` devices, data-parallel."""
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": n, "fsdp": 1}))
    per_device = tokens_per_device // seq_len
    if per_device < 1:
        raise ValueError(f"tokens per device {tokens_per_device} < T={seq_len}")
    batch_size = per_device * n
    cfg = model_bench.model_config(name, seq_len, quick=quick, scan_layers=scan_layers)
    model = build_model(cfg)
    optimizer, _ = make_optimizer(model_bench.OPTIM)
    replicated = NamedSharding(mesh, jax.P())
    rows = sharding.batch_sharding(mesh)

    @jax.jit
    def init(key):
        params = model.init(key, np.zeros((1, min(seq_len, 2 * cfg.mini_batch_size)), np.int32))
        return params, optimizer.init(params)

    holder = {"state": jax.device_put(init(jax.random.key(0)), replicated)}
    step = sharding.under_mesh(model_bench.make_train_step(model, optimizer), mesh)
    batches = [
        (jax.device_put(model_bench.random_batch(batch_size, seq_len, cfg.vocab_size, s), rows),)
        for s in (0, 1)
    ]

    def one_step(batch):
        holder["state"], loss = step(holder["state"], batch)
        return loss

    warmup, iters = (1, 3) if quick else (WARMUP, ITERS)
    stats = time_fn(one_step, batches, warmup=warmup, iters=iters)
    holder.clear()
    return {
        "batch": batch_size,
        "step_ms": stats["median_ms"],
        "tokens_per_s": batch_size * seq_len / (stats["median_ms"] / 1e3),
    }


def run(quick: bool):
    """One row per (model, T, device count); efficiency against the one-device row."""
    names = env_list("BENCH_SCALING_MODELS", MODELS, allowed=model_bench.MODELS)
    seq_lens = (QUICK_SEQ_LEN,) if quick else env_list("BENCH_SCALING_T", SEQ_LENS, int)
    per_device = os.environ.get("BENCH_SCALING_TOKENS", TOKENS_PER_DEVICE)
    tokens = QUICK_TOKENS if quick else int(per_device)
    scan_layers = model_bench.scan_layers_from_env()
    for name in names:
        for seq_len in seq_lens:
            single = None
            for n in device_counts(jax.device_count()):
                row = {"model": name, "T": seq_len, "devices": n, "tokens_per_device": tokens}
                row["scan_layers"] = scan_layers
                try:
                    row.update(
                        measure(name, seq_len, tokens, n, quick=quick, scan_layers=scan_layers)
                    )
                except Exception as e:  # e.g. out of memory: a row with the error, then go on
                    row["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
                    yield row
                    continue
                single = single or (row["tokens_per_s"] if n == 1 else None)
                row["efficiency"] = None if single is None else row["tokens_per_s"] / (n * single)
                yield row
