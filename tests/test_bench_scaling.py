"""Tests for experiments/benchmarks/scaling.py (data-parallel scaling, 8 fake CPU devices)."""

import jax
import pytest

from experiments.benchmarks import scaling


def test_device_counts_double_up_to_the_total():
    assert scaling.device_counts(1) == [1]
    assert scaling.device_counts(6) == [1, 2, 4, 6]
    assert scaling.device_counts(8) == [1, 2, 4, 8]


def test_quick_rows_cover_every_device_count(monkeypatch):
    monkeypatch.setenv("BENCH_SCALING_MODELS", "Transformer")
    monkeypatch.delenv("BENCH_MODEL_SCAN_LAYERS", raising=False)
    rows = list(scaling.run(quick=True))
    assert [r["devices"] for r in rows] == scaling.device_counts(jax.device_count())
    for r in rows:
        assert "error" not in r, r
        assert r["scan_layers"] is True  # the model suite's default, BENCH_MODEL_SCAN_LAYERS
        assert r["batch"] == r["devices"] * scaling.QUICK_TOKENS // scaling.QUICK_SEQ_LEN
        assert r["step_ms"] > 0 and r["efficiency"] > 0
    assert rows[0]["efficiency"] == 1.0


def test_unknown_model_is_refused(monkeypatch):
    monkeypatch.setenv("BENCH_SCALING_MODELS", "T3Lin,GPT")
    with pytest.raises(ValueError, match=r"BENCH_SCALING_MODELS.*allowed"):
        list(scaling.run(quick=True))
