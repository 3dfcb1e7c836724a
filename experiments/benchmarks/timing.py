"""Timing helpers shared by the benchmark suites: warm-up, device sync, median of repeats."""

import contextlib
import fcntl
import os
import statistics
import time
from collections.abc import Callable, Sequence

import jax


@contextlib.contextmanager
def exclusive():
    """Holds the file lock BENCH_LOCK names, if set: suites run side by side (to overlap their
    compilations) then time one at a time."""
    path = os.environ.get("BENCH_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def time_fn(fn: Callable, arg_sets: Sequence[tuple], *, warmup: int = 3, iters: int = 20) -> dict:
    """Times `fn(*args)` (already jitted) rotating over `arg_sets`; returns ms statistics."""
    with exclusive():
        return _time_fn(fn, arg_sets, warmup, iters)


def _time_fn(fn, arg_sets, warmup, iters) -> dict:
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


def env_list(var: str, default: tuple, parse: Callable = str, allowed: Sequence | None = None):
    """The comma-separated values of environment variable `var` (`default` when unset)."""
    value = os.environ.get(var)
    if value is None:
        return default
    try:
        items = tuple(parse(v.strip()) for v in value.split(",") if v.strip())
    except ValueError as e:
        raise ValueError(f"{var}={value!r}: {e}") from e
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad:
        raise ValueError(f"{var}={value!r}: {bad} not allowed; allowed {tuple(allowed)}")
    return items
