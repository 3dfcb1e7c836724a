"""Tests of t3kan_jax.train.metrics: token metrics under the masks, and the writers."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax.train import metrics


def _batch():
    """Two rows of four positions; hand-set masks."""
    targets = np.array([[3, 1, 2, 0], [2, 2, 1, 3]], np.int32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    determined = np.array([[0, 0, 1, 0], [0, 1, 1, 1]], np.float32)
    last = np.array([[0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    return {"targets": targets, "mask": mask, "determined_mask": determined, "last_mask": last}


def test_token_sums_match_numpy():
    batch = _batch()
    logits = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
    sums = jax.device_get(jax.jit(metrics.token_sums)(logits, batch))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    correct = (logits.argmax(-1) == batch["targets"]).astype(np.float32)
    np.testing.assert_allclose(sums["loss_sum"], (ce * batch["mask"]).sum(), rtol=1e-6)
    assert sums["tokens"] == 7
    assert sums["correct"] == (correct * batch["mask"]).sum()
    assert sums["determined_tokens"] == 4
    assert sums["determined_correct"] == (correct * batch["determined_mask"]).sum()
    assert sums["last_tokens"] == 2
    assert sums["last_correct"] == (correct * batch["last_mask"]).sum()


def test_perfect_logits_give_accuracy_one_and_pads_do_not_count():
    batch = _batch()
    logits = 50.0 * np.eye(5, dtype=np.float32)[batch["targets"]]
    logits[0, 3] = 50.0 * np.eye(5, dtype=np.float32)[4]  # wrong at the pad: must not count
    loss, sums = jax.jit(metrics.masked_loss)(logits, batch)
    chex.assert_trees_all_close(loss, jnp.float32(0.0), atol=1e-6)
    values = metrics.ratios(metrics.add_sums({}, jax.device_get(sums)))
    assert values["accuracy"] == values["determined_accuracy"] == values["last_accuracy"] == 1.0


def test_ratios_are_none_for_empty_masks_and_sums_accumulate():
    sums = {k: 0.0 for pair in metrics.RATIOS.values() for k in pair}
    assert all(v is None for v in metrics.ratios(sums).values())
    total = metrics.add_sums({}, {"loss_sum": np.float32(2.0), "tokens": np.float32(4.0)})
    total = metrics.add_sums(total, {"loss_sum": np.float32(1.0), "tokens": np.float32(2.0)})
    assert metrics.ratios(total)["loss"] == pytest.approx(0.5)


def _row(step, split, loss):
    return {"step": step, "split": split, "loss": loss, "accuracy": 0.5,
            "determined_accuracy": 0.5, "last_accuracy": None}  # fmt: skip


def test_writer_jsonl_tensorboard_and_resume_truncation(tmp_path):
    writer = metrics.MetricWriter(tmp_path, resume_step=0)
    for row in (_row(2, "train", 2.0), _row(4, "train", 1.0), _row(4, "val", 1.5)):
        writer.write(row)
    writer.write({**_row(6, "train", 0.5), "grad_norm": 1.0, "tokens_per_second": 10.0})
    writer.write(_row(6, "test", 0.4))
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 4, 6, 6]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # A resume from step 4 drops the rows the interrupted session wrote after it, and test rows.
    metrics.MetricWriter(tmp_path, resume_step=4).close()
    rows = metrics.read_rows(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in rows] == [(2, "train"), (4, "train"), (4, "val")]


def test_disabled_writer_writes_nothing(tmp_path):
    writer = metrics.MetricWriter(tmp_path, resume_step=0, enabled=False)
    writer.write(_row(1, "train", 1.0))
    writer.close()
    assert not list(tmp_path.iterdir())


def test_plot_curves_writes_png(tmp_path):
    rows = [_row(s, "train", 2.0 / s) for s in (1, 2, 3)] + [
        _row(3, "val", 0.7),
        _row(3, "test", 0.8),
    ]
    metrics.plot_curves(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
