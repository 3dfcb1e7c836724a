"""Tests of the training loop: outputs, resume, determinism, refusal, NaN stop, early stopping."""

import json
import logging
import math
import shutil
import signal

import chex
import jax
import numpy as np
import pytest

from configs import base
from configs import data as data_config
from t3kan_jax import data, models
from t3kan_jax.data.batches import make_batch
from t3kan_jax.train import (
    NonFiniteLossError,
    checkpoint,
    loop,
    optim,
    sharding,
    train_and_evaluate,
)
from t3kan_jax.train.metrics import read_rows


def tiny_config(**train):
    """A T3Lin of width 16, one block, 8 steps of 8 rows on one device."""
    config = base.get_config()
    config.name = "tiny"
    config.data.samples = 256
    config.model.update(width=16, depth=1, num_heads=2)
    config.train.update(
        steps=8, batch_size=8, eval_batch_size=32, warmup_steps=2, log_every=4, eval_every=4,
        checkpoint_every=4, patience=0, keep_checkpoints=2,
    )  # fmt: skip
    config.train.update(train)
    config.mesh.update(data=1, fsdp=1)
    return config


def _rows(workdir):
    """metrics.jsonl without the wall-clock column."""
    rows = read_rows(workdir / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in rows]


def assert_rows_close(a, b, tol=1e-6):
    assert [(r["step"], r["split"]) for r in a] == [(r["step"], r["split"]) for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            if isinstance(v, float):
                assert rb[k] == pytest.approx(v, abs=tol, rel=tol), (ra["step"], ra["split"], k)
            else:
                assert rb[k] == v


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run, shared by the tests that compare against it."""
    workdir = tmp_path_factory.mktemp("runs") / "a"
    return workdir, train_and_evaluate(tiny_config(), str(workdir))


def test_run_writes_its_outputs(finished):
    workdir, results = finished
    for name in ("config.json", "metrics.jsonl", "curves.png", "results.json"):
        assert (workdir / name).is_file(), name
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((workdir / "config.json").read_text())["model"]["width"] == 16
    rows = read_rows(workdir / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in rows] == [
        (4, "train"), (4, "val"), (8, "train"), (8, "val"), (8, "test"),
    ]  # fmt: skip
    metric_names = {"loss", "accuracy", "determined_accuracy", "last_accuracy"}
    for r in rows:
        assert metric_names <= r.keys()
        assert all(0.0 <= r[k] <= 1.0 for k in metric_names - {"loss"})
    assert {"grad_norm", "learning_rate", "tokens_per_second"} <= rows[0].keys()
    assert results["status"] == "finished" and results["stop_reason"] == "max_steps"
    assert results["test"] == {k: rows[-1][k] for k in metric_names}
    assert math.isfinite(results["test"]["loss"])


def _interrupt_at_update_6(workdir, monkeypatch):
    real_batch = data.train_batch

    def interrupting_batch(split, batch_size, seed, step, pad_id):
        if step == 5:  # during update 6: between checkpoints, in the middle of a log interval
            signal.raise_signal(signal.SIGTERM)
        return real_batch(split, batch_size, seed, step, pad_id)

    monkeypatch.setattr(loop.data_lib, "train_batch", interrupting_batch)
    stopped = train_and_evaluate(tiny_config(), str(workdir))
    monkeypatch.setattr(loop.data_lib, "train_batch", real_batch)
    return stopped


def test_resume_after_interrupt_matches_uninterrupted(finished, tmp_path, monkeypatch):
    workdir = tmp_path / "b"
    stopped = _interrupt_at_update_6(workdir, monkeypatch)
    assert stopped == {"status": "interrupted", "signal": "SIGTERM", "step": 6}
    assert not (workdir / "results.json").exists()
    resumed = train_and_evaluate(tiny_config(), str(workdir))
    assert_rows_close(_rows(finished[0]), _rows(workdir))
    assert resumed["test"] == pytest.approx(finished[1]["test"], abs=1e-6, rel=1e-6)


def test_corrupt_latest_checkpoint_falls_back_and_still_matches(
    finished, tmp_path, monkeypatch, caplog
):
    workdir = tmp_path / "c"
    _interrupt_at_update_6(workdir, monkeypatch)
    for path in (workdir / "checkpoints" / "6").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        train_and_evaluate(tiny_config(), str(workdir))
    assert "step 6" in caplog.text and "falling back" in caplog.text
    assert (workdir / "corrupt_checkpoints" / "6").is_dir()
    assert_rows_close(_rows(finished[0]), _rows(workdir))  # redone from step 4


def test_same_config_and_seed_give_the_same_metrics(finished, tmp_path):
    train_and_evaluate(tiny_config(), str(tmp_path / "again"))
    assert_rows_close(_rows(finished[0]), _rows(tmp_path / "again"))
    other = tiny_config()
    other.seed = 1
    train_and_evaluate(other, str(tmp_path / "seed1"))
    assert _rows(tmp_path / "seed1")[0]["loss"] != _rows(finished[0])[0]["loss"]


def test_finished_workdir_reports_its_results_without_training(finished):
    workdir, results = finished
    before = (workdir / "metrics.jsonl").read_text()
    changed = tiny_config(log_every=2, eval_every=2)  # train fields may change on resume
    assert train_and_evaluate(changed, str(workdir)) == results
    assert (workdir / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize(("field", "value"), [("model.width", 32), ("data.seed", 3), ("seed", 7)])
def test_incompatible_workdir_is_refused(finished, field, value):
    workdir, _ = finished
    config = tiny_config()
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    before = (workdir / "config.json").read_text()
    with pytest.raises(ValueError, match=rf"incompatible config(.|\n)*{field}"):
        train_and_evaluate(config, str(workdir))
    assert (workdir / "config.json").read_text() == before


def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_batch = data.train_batch

    def poisoned_batch(split, batch_size, seed, step, pad_id):
        batch = real_batch(split, batch_size, seed, step, pad_id)
        if step == 5:  # update 6
            batch["mask"] = batch["mask"] * np.float32("nan")
        return batch

    monkeypatch.setattr(loop.data_lib, "train_batch", poisoned_batch)
    workdir = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"at step 6(.|\n)*checkpoint \(step 4\)"):
        train_and_evaluate(tiny_config(), str(workdir))
    assert not (workdir / "results.json").exists()
    ckpt = checkpoint.Checkpoints(workdir, keep=2)
    assert ckpt.latest.all_steps() == [4]
    programs = loop.build_programs(*_program_key(tiny_config()))
    state, loop_state = ckpt.restore_latest(programs.target)
    ckpt.close()
    assert loop_state["step"] == 4
    assert all(bool(np.isfinite(x).all()) for x in jax.tree.leaves(state.params))


def _program_key(config):
    """The arguments of loop.build_programs for a config, as the loop computes them."""
    model_cfg = models.ModelConfig.from_config(config.model)
    optim_fields = tuple((k, config.train[k]) for k in optim.FIELDS)
    return model_cfg, optim_fields, config.model.max_len, sharding.make_mesh(config.mesh)


def test_early_stopping_tests_the_best_checkpoint(tmp_path):
    # min_delta larger than any loss: no evaluation after the first counts as an improvement.
    config = tiny_config(eval_every=2, patience=2, min_delta=100.0)
    results = train_and_evaluate(config, str(tmp_path / "early"))
    assert results["stop_reason"] == "early_stop"
    assert (results["step"], results["best_step"]) == (6, 2)
    rows = read_rows(tmp_path / "early" / "metrics.jsonl")
    assert max(r["step"] for r in rows) == 6
    assert rows[-1]["split"] == "test" and rows[-1]["checkpoint_step"] == 2


def test_init_from_starts_from_another_runs_best_params(finished, tmp_path):
    config = tiny_config()
    config.init_from = str(finished[0])
    run = loop._Run(config, tmp_path / "warm")
    best = run.ckpt.restore_best(run.p.target.params)
    assert best is None  # the new run has none of its own yet
    source = checkpoint.load_params(finished[0], run.p.target.params)
    chex.assert_trees_all_equal(jax.device_get(run.state.params), jax.device_get(source))
    assert run.loop["step"] == 0
    run.ckpt.close()
    run.writer.close()


def test_batch_size_must_split_over_the_devices(tmp_path):
    config = tiny_config(batch_size=12)
    config.mesh.data = -1  # all 8 fake devices
    with pytest.raises(ValueError, match=r"train.batch_size=12 .* 8 devices"):
        train_and_evaluate(config, str(tmp_path / "bad"))


@pytest.mark.slow  # another train.steps compiles another train step
def test_raising_train_steps_continues_a_finished_run(finished, tmp_path):
    workdir = tmp_path / "more"
    shutil.copytree(finished[0], workdir)
    results = train_and_evaluate(tiny_config(steps=12, eval_every=4), str(workdir))
    assert results["step"] == 12
    rows = read_rows(workdir / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in rows][-3:] == [
        (12, "train"),
        (12, "val"),
        (12, "test"),
    ]
    assert sum(r["split"] == "test" for r in rows) == 1


def test_ttt_layers_store_mqar_pairs_whose_targets_are_pads():
    """The model gets `input_mask`, not the loss mask: in MQAR every key-value column has a pad
    target, and a TTT layer writes nothing where its mask is 0. Changing a value far before its
    query (beyond the convs' reach) must change the answers' loss."""
    cfg = data_config.get_config("mqar")
    cfg.update(samples=8, num_kv_pairs=8, input_seq_len=40, vocab_size=64)
    batch = make_batch(data.generate_mqar(cfg), pad_id=0)
    model_cfg = models.ModelConfig(vocab_size=64, max_len=40, width=16, depth=1, num_heads=2)
    model = models.build_model(model_cfg)
    params = model.init(jax.random.key(0), batch["inputs"][:1])
    step = loop.make_eval_step(model, None, None)
    changed = dict(batch, inputs=batch["inputs"].copy())
    changed["inputs"][:, 1] = np.where(batch["inputs"][:, 1] == 63, 62, 63)  # the first value
    before, after = step(params, batch), step(params, changed)
    assert float(before["loss_sum"]) != float(after["loss_sum"])
