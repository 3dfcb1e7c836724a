"""Decoding throughput: tokens/s after a prompt, T3Lin and T3KAN against the Transformer.

`python -m experiments.bench --suite=decode [--quick]`. The 125m preset in bfloat16 (TTT inner
loops in float32), batch 1 and 64, prompts of 512, 2048 and 8192 tokens; `--quick` runs the tiny
model on CPU. Each prompt is prefilled once at batch 1 (timed: `prefill_ms`) and its cache copied
to every row: a decode step costs the same whatever the tokens. The timed function is one jit of
`STEPS` greedy decode steps (`lax.scan`, the cache in the carry), so `ms_per_step` includes no
dispatch overhead per token; the input cache is copied once per call, a small share of `STEPS`
steps that each read it. `cache_mib` is the decode state: constant for TTT, the KV cache grows.

Row selection (environment): BENCH_DECODE_MODELS (default T3Lin,T3KAN,Transformer),
BENCH_DECODE_PROMPTS and BENCH_DECODE_BATCHES (comma-separated integers).
"""

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import env_list, time_fn
from t3kan_jax import models
from t3kan_jax.generate.decode import decode_model

STEPS = 32
MODELS = {
    "T3Lin": {"arch": "ttt", "inner": "linear"},
    "T3KAN": {"arch": "ttt", "inner": "kan"},
    "Transformer": {"arch": "transformer"},
}


def settings(quick: bool) -> dict:
    """Sizes of the full (GPU) or quick (CPU) run."""
    if quick:
        return {"size": "tiny", "dtype": "float32", "vocab_size": 128, "prompts": (16, 64),
                "batches": (1, 4), "steps": 8}  # fmt: skip
    return {"size": "125m", "dtype": "bfloat16", "vocab_size": 32000,
            "prompts": (512, 2048, 8192), "batches": (1, 64), "steps": STEPS}  # fmt: skip


def _decode_loop(model, steps: int):
    """Jitted `(params, token_B, cache) -> tokens [steps, B]`: greedy steps from the cache."""

    def loop(params, token_B, cache):
        def step(carry, _):
            token_B, cache = carry
            logits_B1V, cache = model.apply(params, token_B[:, None], cache=cache)
            token_B = jnp.argmax(logits_B1V[:, 0], axis=-1).astype(jnp.int32)
            return (token_B, cache), token_B

        _, tokens = jax.lax.scan(step, (token_B, cache), None, length=steps)
        return tokens

    return jax.jit(loop)


def _rows_of_batch(cache, batch: int):
    """The batch-1 cache copied to `batch` rows (the scalar position stays)."""
    return jax.tree.map(
        lambda a: a if a.ndim == 0 else jnp.broadcast_to(a, (batch, *a.shape[1:])), cache
    )


def _mib(tree) -> float:
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree)) / 2**20


def run(quick: bool):
    """One row per (model, prompt length, batch)."""
    s = settings(quick)
    s["prompts"] = env_list("BENCH_DECODE_PROMPTS", s["prompts"], int)
    s["batches"] = env_list("BENCH_DECODE_BATCHES", s["batches"], int)
    names = env_list("BENCH_DECODE_MODELS", tuple(MODELS), allowed=MODELS)
    max_len = max(s["prompts"]) + s["steps"]
    for name in names:
        fields = MODELS[name]
        cfg = models.ModelConfig.from_config(
            {
                **fields,
                "size": s["size"],
                "dtype": s["dtype"],
                "vocab_size": s["vocab_size"],
                "max_len": max_len,
            }
        )
        model = decode_model(cfg)
        params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
        loop = _decode_loop(model, s["steps"])
        for prompt_len in s["prompts"]:
            prompt = jax.random.randint(jax.random.key(1), (1, prompt_len), 0, s["vocab_size"])
            # Compiled ahead of timing (so BENCH_LOCK serialises only the timed runs).
            prefill = (
                jax.jit(lambda p, t, m=model, n=prompt_len: m.apply(p, t, cache_len=n + s["steps"]))
                .lower(params, prompt)
                .compile()
            )
            prefill_ms = time_fn(prefill, [(params, prompt)], warmup=1, iters=3)["median_ms"]
            logits, cache = prefill(params, prompt)
            token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
            for batch in s["batches"]:
                cache_b = _rows_of_batch(cache, batch)
                token_b = jnp.broadcast_to(token, (batch,))
                compiled = loop.lower(params, token_b, cache_b).compile()
                timing = time_fn(compiled, [(params, token_b, cache_b)], warmup=1, iters=5)
                step_ms = timing["median_ms"] / s["steps"]
                yield {
                    "model": name, "size": s["size"], "prompt": prompt_len, "batch": batch,
                    "prefill_ms": prefill_ms, "ms_per_step": step_ms,
                    "tokens_per_s": batch * 1e3 / step_ms, "cache_mib": _mib(cache_b),
                    "params": models.count_params(params),
                }  # fmt: skip
                del cache_b
            del cache
        del params
