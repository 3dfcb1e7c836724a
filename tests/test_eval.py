"""Tests of t3kan_jax.eval: breakdowns, restoring a run, evaluation sets, reports, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from t3kan_jax import data, models
from t3kan_jax import eval as eval_lib
from t3kan_jax.eval import breakdown, evaluate, report
from t3kan_jax.train import checkpoint, metrics
from t3kan_jax.train import workdir as workdir_lib

_REPO = Path(__file__).resolve().parents[1]


def tiny_config():
    """A one-block Transformer of width 16 on 300 rows of the sequence task."""
    config = base.get_config()
    config.name = "tiny"
    config.data.samples = 300
    config.model.update(arch="transformer", width=16, depth=1, num_heads=2)
    config.train.eval_batch_size = 16
    return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A workdir as experiments.train leaves it: config.json and best/ parameters."""
    config = tiny_config()
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    workdir_lib.prepare(config, workdir)
    model = models.build_model(models.ModelConfig.from_config(config.model))
    params = jax.jit(model.init)(jax.random.key(3), jnp.zeros((1, 1), jnp.int32))
    ckpt = checkpoint.Checkpoints(workdir, keep=1)
    ckpt.save_best(7, params, {"loss": 1.0})
    ckpt.wait()
    ckpt.close()
    return workdir, params


@pytest.fixture(scope="module")
def run(run_dir):
    return eval_lib.load_run(run_dir[0])


def _random_batch(rng, rows=6, length=10, vocab=7):
    seqs = data.Sequences(
        inputs=rng.integers(1, vocab, (rows, length)).astype(np.int32),
        targets=np.where(
            np.arange(length)[None] < rng.integers(1, length + 1, (rows, 1)),
            rng.integers(1, vocab, (rows, length)),
            0,
        ).astype(np.int32),
        draw=np.arange(rows, dtype=np.int32),
        components=rng.integers(1, 3, rows).astype(np.int32),
    )
    batch = next(data.eval_batches(seqs, rows + 2, 0))
    logits = rng.normal(size=(*batch["targets"].shape, vocab)).astype(np.float32)
    return batch, logits


def test_breakdown_agrees_with_the_training_metrics_and_partitions():
    rng = np.random.default_rng(0)
    batch, logits = _random_batch(rng)
    result = breakdown.Breakdown()
    for part in (slice(0, 3), slice(3, None)):  # two batches, one with the fill rows
        sub = {k: v[part] for k, v in batch.items()}
        result.add(sub, *breakdown.token_scores(jnp.asarray(logits[part]), sub["targets"]))
    sums = metrics.add_sums({}, metrics.token_sums(jnp.asarray(logits), batch))
    overall = result.overall()
    for name, value in metrics.ratios(sums).items():
        assert overall[name] == pytest.approx(value, abs=1e-6), name
    assert overall["tokens"] == batch["mask"].sum()
    positions = result.by_position()
    assert [r["position"] for r in positions] == list(range(10))
    assert [r["tokens"] for r in positions] == list(batch["mask"].sum(0).astype(int))
    correct = np.argmax(logits, -1) == batch["targets"]
    for t in range(10):
        m = batch["mask"][:, t] > 0
        expected = correct[m, t].mean() if m.any() else None
        assert positions[t]["accuracy"] == pytest.approx(expected), t
    by_c = result.by_components()
    assert [r["components"] for r in by_c] == sorted(set(batch["components"][:6]))
    assert sum(r["tokens"] for r in by_c) == overall["tokens"]
    for r in by_c:
        rows = (batch["components"] == r["components"]) & (batch["mask"].sum(1) > 0)
        m = batch["mask"][rows] > 0
        assert r["accuracy"] == pytest.approx(correct[rows][m].mean())
    binned, size = report.binned(positions, max_rows=4)
    assert size == 3 and len(binned) == 4
    assert sum(r["tokens"] for r in binned) == overall["tokens"]
    assert binned[0]["accuracy"] == pytest.approx(result.span(0, 3)["accuracy"])


def test_load_run_restores_the_saved_parameters(run, run_dir):
    chex.assert_trees_all_equal(run.params, run_dir[1])
    assert run.model_cfg.arch == "transformer" and run.config.data.samples == 300


def test_restore_errors_are_clear(tmp_path, run_dir):
    with pytest.raises(ValueError, match=r"no config\.json"):
        eval_lib.load_run(tmp_path)
    (tmp_path / "config.json").write_text((run_dir[0] / "config.json").read_text())
    with pytest.raises(ValueError, match="no checkpoint"):
        eval_lib.load_run(tmp_path)


def test_evaluate_run_on_the_test_split_matches_a_direct_forward(run):
    result = eval_lib.evaluate_run(run)
    assert result["set"] == "test" and result["row_length"] == 32
    test = data.make_splits(run.config.data)["test"]
    batch = next(data.eval_batches(test, len(test), 0))
    logits = run.model.apply(run.params, batch["inputs"], mask_BT=batch["mask"])
    expected = metrics.ratios(metrics.add_sums({}, metrics.token_sums(logits, batch)))
    for name, value in expected.items():
        assert result["overall"][name] == pytest.approx(value, abs=1e-6), name
    assert "beyond_training" not in result
    assert sum(r["tokens"] for r in result["by_position"]) == result["overall"]["tokens"]


def test_extrapolation_runs_past_max_len_and_splits_at_the_training_length(run, tmp_path):
    with pytest.raises(ValueError, match="extrapolation_factor=2"):
        eval_lib.evaluate_run(run, extrapolate=True)
    result = eval_lib.evaluate_run(run, {"data.extrapolation_factor": 2}, extrapolate=True)
    assert result["set"] == "extrapolation[data.extrapolation_factor=2]"
    assert result["row_length"] == 64 > run.model_cfg.max_len == result["train_row_length"]
    within, beyond = result["within_training"], result["beyond_training"]
    assert beyond["tokens"] > 0
    assert within["tokens"] + beyond["tokens"] == result["overall"]["tokens"]
    paths = eval_lib.write_outputs(tmp_path, result)
    assert all(p.is_file() for p in paths) and len(paths) == 3
    eval_lib.write_outputs(tmp_path, {**result, "set": "other"})
    assert set(json.loads((tmp_path / "eval.json").read_text())) == {result["set"], "other"}
    text = eval_lib.format_report(result)
    assert ">= 32" in text and "by number of components" in text


def test_with_max_len_keeps_the_parameters():
    cfg = models.ModelConfig(arch="ttt", width=16, num_heads=2, depth=1, max_len=32)
    assert eval_lib.with_max_len(cfg, 16) is cfg
    assert eval_lib.with_max_len(cfg, 100).max_len == 100


def test_overrides_are_limited_to_the_data():
    config = tiny_config()
    with pytest.raises(ValueError, match=r"model.width"):
        evaluate.apply_overrides(config, {"model.width": 8})
    changed = evaluate.apply_overrides(config, {"data.seed": 4, "train.eval_batch_size": 8})
    assert (changed.data.seed, changed.train.eval_batch_size, config.data.seed) == (4, 8, 0)
    assert evaluate.set_name({"data.seed": 4, "train.eval_batch_size": 8}, False) == (
        "test[data.seed=4]"
    )


def test_cli_evaluates_a_fresh_set(run_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "experiments.evaluate", f"--workdir={run_dir[0]}"]
    done = subprocess.run(
        [*command, "--config.data.seed=5"], cwd=_REPO, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "on test[data.seed=5]" in done.stdout and "by target position" in done.stdout
    assert "test[data.seed=5]" in json.loads((run_dir[0] / "eval.json").read_text())
    bad = subprocess.run(
        [*command, "--config.model.depth=3"], cwd=_REPO, capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "cannot override ['model.depth']" in bad.stderr
