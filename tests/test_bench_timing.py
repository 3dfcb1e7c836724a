"""Tests for experiments/benchmarks/timing.py: row selection from the environment, the lock."""

import fcntl

import jax.numpy as jnp
import pytest

from experiments.benchmarks import timing


def test_env_list_parses_defaults_and_refuses_unknown_values(monkeypatch):
    monkeypatch.delenv("BENCH_X", raising=False)
    assert timing.env_list("BENCH_X", (1, 2), int) == (1, 2)
    monkeypatch.setenv("BENCH_X", " 3, 5 ,")
    assert timing.env_list("BENCH_X", (), int) == (3, 5)
    monkeypatch.setenv("BENCH_X", "")
    assert timing.env_list("BENCH_X", (1,), int) == ()
    monkeypatch.setenv("BENCH_X", "a")
    with pytest.raises(ValueError, match="BENCH_X='a'"):
        timing.env_list("BENCH_X", (), int)
    monkeypatch.setenv("BENCH_X", "linear,rbf")
    with pytest.raises(ValueError, match=r"\['rbf'\] not allowed; allowed \('linear', 'mlp'\)"):
        timing.env_list("BENCH_X", (), allowed=("linear", "mlp"))


def test_timed_runs_hold_the_bench_lock(monkeypatch, tmp_path):
    lock = tmp_path / "bench.lock"
    monkeypatch.setenv("BENCH_LOCK", str(lock))
    held = []

    def fn(x):
        with open(lock) as f:  # another process's non-blocking attempt must fail meanwhile
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
        return x + 1

    stats = timing.time_fn(fn, [(jnp.zeros(()),)], warmup=1, iters=3)
    assert stats["iters"] == 3 and held == [True] * 4
    with open(lock) as f:  # released afterwards
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
