"""Timing helpers shared by the benchmark suites: warm-up, device sync, median of repeats."""

import statistics
import time
from collections.abc import Callable, Sequence

import jax


def time_fn(fn: Callable, arg_sets: Sequence[tuple], *, warmup: int = 3, iters: int = 20) -> dict:
    """Times `fn(*args)` (already jitted) rotating over `arg_sets`; returns ms statistics."""
    for i in range(warmup):
        jax.block_until_ready(fn(*arg_sets[i % len(arg_sets)]))
    times = []
    for i in range(iters):
        args = arg_sets[i % len(arg_sets)]
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p10_ms": times[len(times) // 10],
        "p90_ms": times[(9 * len(times)) // 10],
        "iters": iters,
    }


def peak_memory_bytes() -> int | None:
    """Peak device memory of device 0 since start, where the backend reports it."""
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else stats.get("peak_bytes_in_use")
