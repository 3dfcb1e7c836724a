"""Training-step speed, MFU and memory: T3Lin, T3MLP, T3KAN, the Transformer (`--suite=model`).

`T3Lin-pallas` is T3Lin with its inner loop in the fused Pallas kernel (`ttt_impl="pallas"`).

A step is what training runs: `jit(value_and_grad)` of the masked cross-entropy, then the update of
`t3kan_jax.train.optim.make_optimizer` (global-norm clipping + AdamW), the state donated. Random
tokens, vocab 32000, `max_len = T`, the same tokens per step at every T (batch = tokens // T).

Precision: parameters and AdamW state fp32; Dense, conv and attention compute in bf16 (the
Transformer's attention through cuDNN flash attention on GPU, XLA on CPU); residual stream, norm
statistics, logits and loss fp32; the TTT inner loop fp32 (its matmuls at JAX's default precision:
TF32 on H100). Each row says which.

Rows: the 125M preset at T = 2048 and 8192 for every model, then a sweep of T for T3Lin and the
Transformer (then T3KAN while the time budget lasts), one row per (model, T), sorted by model and T.
`mfu` divides the model FLOPs of `experiments/benchmarks/flops.py` by the device's dense bf16
peak (null where unknown, e.g. CPU). `peak_mem_gb` (GiB) is XLA's buffer assignment of the
compiled step, arguments + outputs + temporaries - donated aliases (`mem_method` "compiled"), or
the process's peak since start where that is unavailable ("runtime"). A model whose estimate
exceeds MEM_FRACTION of the device memory is recompiled with `remat=True` (every block recomputed
in the backward pass; column `remat`); MFU counts model FLOPs, not the recomputation. The blocks
run as one `nn.scan` over depth (`ModelConfig.scan_layers`, column `scan_layers`): the block
compiles once instead of 12 times, the same computation otherwise (`BENCH_MODEL_SCAN_LAYERS=off`
for the unrolled blocks). A failing configuration (e.g. out of memory) gives a row with `error`.

Environment knobs (the full suite targets ~6 minutes on one H100):
  BENCH_MODEL_MAIN_T        comma-separated lengths of the models' comparison ("" = none)
  BENCH_MODEL_MAIN_MODELS   comma-separated models of that comparison, default all of MODELS
  BENCH_MODEL_SWEEP_T       comma-separated sweep lengths ("" = no sweep), default SWEEP_T
  BENCH_MODEL_SWEEP_MODELS  sweep groups, "/" between groups, "," within: default
                            "T3Lin,Transformer/T3KAN" (SWEEP_GROUPS)
  BENCH_MODEL_TOKENS        tokens per step, default TOKENS_PER_STEP
  BENCH_MODEL_BUDGET_S      seconds after which sweep-only configurations are skipped
  BENCH_MODEL_REMAT         "auto" (default), "on" (every model, e.g. for equal footing) or "off"
  BENCH_MODEL_SCAN_LAYERS   "on" (default: blocks scanned over depth, fast compiles) or "off"
                            (one compiled copy per block, the unscanned parameter layout)
"""

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.benchmarks import flops as flops_lib
from experiments.benchmarks.timing import env_list, peak_memory_bytes, time_fn
from t3kan_jax.models import ModelConfig, build_model
from t3kan_jax.train.optim import make_optimizer

MODELS = {
    "T3Lin": {"arch": "ttt", "inner": "linear"},
    # T3Lin with the fused Pallas inner loop (t3kan_jax/ttt/pallas_linear.py; XLA off GPU).
    "T3Lin-pallas": {"arch": "ttt", "inner": "linear", "ttt_impl": "pallas"},
    "T3MLP": {"arch": "ttt", "inner": "mlp"},
    "T3KAN": {"arch": "ttt", "inner": "kan"},
    "Transformer": {"arch": "transformer"},
}
SIZE = "125m"
VOCAB_SIZE = 32000
TOKENS_PER_STEP = 32768
MAIN_T = (2048, 8192)
SWEEP_T = (1024, 2048, 4096, 8192, 16384, 32768)
# Sweep groups in priority order: a group runs T longest first, its models side by side at each T
# (so a time budget spent mid-group leaves pairs to compare), before the next group starts.
SWEEP_GROUPS = (("T3Lin", "Transformer"), ("T3KAN",))
TIME_BUDGET_S = 330.0
MEM_FRACTION = 0.9
REMAT_MODES = ("auto", "on", "off")
SCAN_LAYERS_MODES = ("on", "off")
WARMUP, ITERS = 2, 10
QUICK_MODELS = ("T3Lin", "Transformer")
QUICK_T = (32, 64)
QUICK_TOKENS = 128
QUICK_WARMUP, QUICK_ITERS = 1, 3
COLUMNS = (
    "model",
    "T",
    "batch",
    "tokens_per_step",
    "step_ms",
    "tokens_per_s",
    "mfu",
    "peak_mem_gb",
    "ratio_vs_transformer",
    "step_vs_min_T",
    "flops_per_token",
    "model_tflops",
    "compile_s",
    "remat",
    "scan_layers",
    "mem_method",
    "precision",
    "error",
)
# The training optimizer (optim.FIELDS); the schedule's values do not change the step's cost.
OPTIM = {
    "steps": 1000,
    "learning_rate": 3e-4,
    "warmup_steps": 100,
    "end_lr_ratio": 0.1,
    "weight_decay": 0.1,
    "b1": 0.9,
    "b2": 0.95,
    "grad_clip": 1.0,
}


def scan_layers_from_env() -> bool:
    """BENCH_MODEL_SCAN_LAYERS: "on" (default) or "off"; ValueError otherwise."""
    value = os.environ.get("BENCH_MODEL_SCAN_LAYERS", "on")
    if value not in SCAN_LAYERS_MODES:
        raise ValueError(
            f"BENCH_MODEL_SCAN_LAYERS={value!r}: allowed values are {SCAN_LAYERS_MODES}"
        )
    return value == "on"


def model_config(
    name: str, seq_len: int, *, quick: bool, remat: bool = False, scan_layers: bool = True
) -> ModelConfig:
    """The benchmarked config: the 125M preset (tiny defaults when quick), bf16 compute, the
    blocks scanned over depth unless `scan_layers=False`."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}: allowed values are {tuple(MODELS)}")
    on_gpu = jax.default_backend() == "gpu"
    fields = dict(
        MODELS[name], max_len=seq_len, dtype="bfloat16", remat=remat, scan_layers=scan_layers
    )
    if not quick:
        fields.update(size=SIZE, vocab_size=VOCAB_SIZE)
    if fields["arch"] != "ttt":
        fields["attention_impl"] = "cudnn" if on_gpu else "xla"
    return ModelConfig.from_config(fields)


def precision(cfg: ModelConfig) -> str:
    """What runs in which precision, for the row."""
    compute = {"bfloat16": "bf16", "float32": "fp32"}[cfg.dtype]
    parts = [f"params+adamw {cfg.param_dtype.replace('float', 'fp')}", f"compute {compute}"]
    if cfg.arch == "ttt":
        on_gpu = jax.default_backend() == "gpu"
        if on_gpu and cfg.ttt_impl == "pallas":
            parts.append("inner fp32 (fused Pallas kernel, dots of 6 bf16 products, fp32-accurate)")
        else:
            tf32 = on_gpu and jax.config.jax_default_matmul_precision is None
            parts.append("inner fp32" + (" (TF32 matmuls)" if tf32 else ""))
    else:
        parts.append(f"attn {cfg.attention_impl} {compute}")
    return ", ".join([*parts, "logits+loss fp32"])


def make_train_step(model, optimizer):
    """jit((params, opt_state), batch) -> (new state, loss), the state donated."""

    def loss_fn(params, batch):
        logits_BTV = model.apply(params, batch["inputs"], mask_BT=batch["input_mask"])
        ce_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"])
        return jnp.sum(ce_BT * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.jit(step, donate_argnums=0)


def random_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int) -> dict:
    """Random tokens (targets = inputs shifted by one), every position real."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
    return {
        "inputs": jnp.asarray(tokens[:, :-1]),
        "targets": jnp.asarray(tokens[:, 1:]),
        "mask": jnp.ones((batch_size, seq_len), jnp.float32),
        "input_mask": jnp.ones((batch_size, seq_len), jnp.float32),
    }


def compiled_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries - donated aliases of a compiled step, if XLA reports it."""
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if stats is None:
        return None
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _device_bytes_limit() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else stats.get("bytes_limit")


def _compiler_options(quick: bool) -> dict | None:
    """LLVM optimisation off for the CPU smoke run: it halves compile time, and CPU timings of
    these models mean nothing anyway."""
    if quick and jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0}
    return None


def _compile(
    name: str, seq_len: int, batch_size: int, *, quick: bool, remat: bool, scan_layers: bool = True
):
    """(cfg, init, compiled step, abstract state, memory estimate) of one configuration."""
    cfg = model_config(name, seq_len, quick=quick, remat=remat, scan_layers=scan_layers)
    model = build_model(cfg)
    optimizer, _ = make_optimizer(OPTIM)

    def init(key):
        params = model.init(key, jnp.zeros((1, min(seq_len, 2 * cfg.mini_batch_size)), jnp.int32))
        return params, optimizer.init(params)

    state = jax.eval_shape(init, jax.random.key(0))
    batch = {
        "inputs": jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32),
        "targets": jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32),
        "mask": jax.ShapeDtypeStruct((batch_size, seq_len), jnp.float32),
        "input_mask": jax.ShapeDtypeStruct((batch_size, seq_len), jnp.float32),
    }
    lowered = make_train_step(model, optimizer).lower(state, batch)
    compiled = lowered.compile(compiler_options=_compiler_options(quick))
    return cfg, init, compiled, state, compiled_bytes(compiled)


def compile_fitting(
    name: str,
    seq_len: int,
    batch_size: int,
    *,
    quick: bool,
    remat_mode: str,
    remat_before: bool,
    scan_layers: bool = True,
):
    """`_compile` with remat per `remat_mode`; "auto" starts from `remat_before` (the model's
    previous choice) and recompiles with remat when the estimate exceeds MEM_FRACTION of the
    device memory."""
    remat = remat_mode == "on" or (remat_mode == "auto" and remat_before)
    compile_ = functools.partial(
        _compile, name, seq_len, batch_size, quick=quick, scan_layers=scan_layers
    )
    out = compile_(remat=remat)
    mem, limit = out[-1], _device_bytes_limit()
    fits = mem is None or limit is None or mem <= MEM_FRACTION * limit
    if remat_mode == "auto" and not remat and not fits:
        out = compile_(remat=True)
    return out


def measure(
    name: str,
    seq_len: int,
    tokens: int,
    *,
    quick: bool,
    remat_mode: str,
    cache: dict,
    scan_layers: bool = True,
) -> dict:
    """One row: compile (remat per `remat_mode`), time, FLOPs, memory.

    remat_mode: "auto" (remat once the estimate exceeds MEM_FRACTION of the device memory),
      "on" or "off". `cache[name]` keeps, per model, the initial (params, opt_state) on the host
      (they do not depend on T; the step donates the device copy) and whether it needed remat
      (memory at equal tokens per step barely depends on T), so later lengths compile once.
      Callers keep `scan_layers` fixed for one cache (it sets the parameter layout).
    """
    if tokens < seq_len:
        raise ValueError(f"tokens per step {tokens} < T={seq_len}: the batch would be empty")
    batch_size = tokens // seq_len
    entry = cache.setdefault(name, {})
    start = time.perf_counter()
    cfg, init, compiled, abstract, mem = compile_fitting(
        name,
        seq_len,
        batch_size,
        quick=quick,
        remat_mode=remat_mode,
        remat_before=entry.get("remat", False),
        scan_layers=scan_layers,
    )
    compile_s = time.perf_counter() - start
    entry["remat"] = cfg.remat
    if "state" not in entry:
        key = jax.random.key(0)
        init_fn = jax.jit(init).lower(key).compile(compiler_options=_compiler_options(quick))
        entry["state"] = jax.device_get(init_fn(key))
    holder = {"state": jax.device_put(entry["state"])}

    def one_step(batch):
        holder["state"], loss = compiled(holder["state"], batch)
        return loss

    batches = [(random_batch(batch_size, seq_len, cfg.vocab_size, s),) for s in (0, 1)]
    warmup, iters = (QUICK_WARMUP, QUICK_ITERS) if quick else (WARMUP, ITERS)
    stats = time_fn(one_step, batches, warmup=warmup, iters=iters)
    holder.clear()  # frees the device state before the next configuration
    method = "compiled"
    if mem is None:
        mem, method = peak_memory_bytes(), "runtime"
    step_ms = stats["median_ms"]
    tokens_per_s = batch_size * seq_len / (step_ms / 1e3)
    flops_per_token = flops_lib.model_flops_per_token(cfg, abstract[0], seq_len)
    peak = flops_lib.peak_flops(jax.devices()[0].device_kind)
    return {
        "step_ms": step_ms,
        "tokens_per_s": tokens_per_s,
        "mfu": flops_lib.mfu(flops_per_token, tokens_per_s, peak),
        "peak_mem_gb": None if mem is None else mem / 2**30,
        "precision": precision(cfg),
        "flops_per_token": flops_per_token,
        "model_tflops": flops_per_token * tokens_per_s / 1e12,
        "compile_s": compile_s,
        "remat": cfg.remat,
        "scan_layers": cfg.scan_layers,
        "mem_method": None if mem is None else method,
    }


def _model_name(name: str) -> str:
    if name not in MODELS:
        raise ValueError(
            f"BENCH_MODEL_SWEEP_MODELS: unknown model {name!r}, allowed {tuple(MODELS)}"
        )
    return name


def plan(quick: bool) -> list[tuple[str, int, bool]]:
    """(model, T, main) in run order; `main` = the 125M comparison (never skipped for time)."""
    if quick:
        return [(m, t, True) for t in QUICK_T for m in QUICK_MODELS]
    main_t = env_list("BENCH_MODEL_MAIN_T", MAIN_T, int)
    main_models = env_list("BENCH_MODEL_MAIN_MODELS", tuple(MODELS), allowed=MODELS)
    todo = [(m, t, True) for t in main_t for m in main_models]
    sweep_t = sorted(env_list("BENCH_MODEL_SWEEP_T", SWEEP_T, int), reverse=True)
    groups = os.environ.get("BENCH_MODEL_SWEEP_MODELS")
    if groups is not None:
        groups = [
            [_model_name(m.strip()) for m in g.split(",") if m.strip()] for g in groups.split("/")
        ]
    for group in SWEEP_GROUPS if groups is None else groups:
        for t in sweep_t:
            todo += [(m, t, False) for m in group if (m, t) not in {(a, b) for a, b, _ in todo}]
    return todo


def _add_ratios(rows: list[dict]) -> None:
    """`ratio_vs_transformer` (tokens/s at the same T) and `step_vs_min_T` per model."""
    ok = [r for r in rows if r.get("step_ms") is not None]
    reference = {r["T"]: r["tokens_per_s"] for r in ok if r["model"] == "Transformer"}
    first = {}
    for r in sorted(ok, key=lambda r: r["T"]):
        first.setdefault(r["model"], r["step_ms"])
    for r in rows:
        ok_row = r.get("step_ms") is not None
        ref = reference.get(r["T"]) if ok_row else None
        r["ratio_vs_transformer"] = None if ref is None else r["tokens_per_s"] / ref
        r["step_vs_min_T"] = r["step_ms"] / first[r["model"]] if ok_row else None


def run(quick: bool) -> list[dict]:
    """Rows of training-step speed, MFU and memory per (model, T); see the module docstring."""
    tokens = QUICK_TOKENS if quick else int(os.environ.get("BENCH_MODEL_TOKENS", TOKENS_PER_STEP))
    budget = float(os.environ.get("BENCH_MODEL_BUDGET_S", TIME_BUDGET_S))
    start = time.perf_counter()
    remat_mode = os.environ.get("BENCH_MODEL_REMAT", "auto")
    if remat_mode not in REMAT_MODES:
        raise ValueError(f"BENCH_MODEL_REMAT={remat_mode!r}: allowed values are {REMAT_MODES}")
    scan_layers = scan_layers_from_env()
    rows, cache = [], {}
    for name, seq_len, main in plan(quick):
        row = {"model": name, "T": seq_len, "batch": tokens // seq_len, "tokens_per_step": tokens}
        if not main and time.perf_counter() - start > budget:
            row["error"] = f"skipped: time budget BENCH_MODEL_BUDGET_S={budget:g} spent"
        else:
            try:
                stats = measure(
                    name,
                    seq_len,
                    tokens,
                    quick=quick,
                    remat_mode=remat_mode,
                    cache=cache,
                    scan_layers=scan_layers,
                )
                row.update(stats)
            except Exception as e:  # a failing configuration (e.g. OOM) must not stop the suite
                first_line = (str(e).splitlines() or [""])[0]
                row["error"] = f"{type(e).__name__}: {first_line[:160]}"
        # Each row as it comes, so a run cut short still leaves its results in the log.
        elapsed = time.perf_counter() - start
        print(f"[model {elapsed:.0f}s] {json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
    _add_ratios(rows)
    order = list(MODELS)
    rows.sort(key=lambda r: (order.index(r["model"]), r["T"]))
    return [{k: r.get(k) for k in COLUMNS} for r in rows]
