"""Tests of the task dispatch: presets, row lengths, make_splits and datasets of every task, CLI."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs.data import PRESETS, get_config
from t3kan_jax.data import (
    generate_mqar,
    load_dataset,
    make_splits,
    row_length,
    save_dataset,
    split_by_draw,
    task_of,
)
from t3kan_jax.data.dataset import SPLITS
from t3kan_jax.data.tasks import generate

_REPO = pathlib.Path(__file__).resolve().parents[1]
_FIELDS = ("inputs", "targets", "draw", "components")


def mqar_config(**overrides):
    config = get_config("mqar")
    config.update({"samples": 200, "input_seq_len": 32, "num_kv_pairs": 4, **overrides})
    return config


def assert_splits_equal(a, b):
    assert set(a) == set(b) == set(SPLITS)
    for name in SPLITS:
        for field in _FIELDS:
            np.testing.assert_array_equal(getattr(a[name], field), getattr(b[name], field))


def test_default_config_is_the_interface():
    config = get_config()
    expected = {
        "task": "sequences",
        "samples": 1000,
        "vocab_size": 128,
        "pad_id": 0,
        "seq_step": 4,
        "allow_descending": False,
        "components_number": 2,
        "seq_components_weights": 3.0,
        "enhance": True,
        "seed": 0,
        "train_fraction": 0.8,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "dir": "",
    }
    assert {k: config[k] for k in expected} == expected


@pytest.mark.parametrize(("preset", "length"), [("", 32), ("hard", 256), ("mqar", 256)])
def test_presets_are_valid_and_set_the_row_length(preset, length):
    config = get_config(preset)
    assert set(PRESETS[preset]) <= set(config)
    assert row_length(config) == length
    config.samples = 200
    splits = make_splits(config)
    assert all(splits[name].inputs.shape[1] == length for name in SPLITS)


def test_hard_preset():
    config = get_config("hard")
    assert config.components_number == 4 and config.allow_descending
    assert config.vocab_size // config.seq_step == 256 and config.extrapolation_factor >= 2


def test_text_preset_row_length(tmp_path):
    config = get_config("text")
    config.path = str(tmp_path / "t.txt")
    assert task_of(config) == "text" and row_length(config) == config.seq_len == 256


def test_unknown_task_and_preset_list_the_allowed_ones():
    config = get_config()
    config.task = "copy"
    for call in (task_of, make_splits, row_length):
        with pytest.raises(ValueError, match=r"^task='copy': must be one of 'sequences', 'mqar'"):
            call(config)
    with pytest.raises(ValueError, match=r"^preset='harder': must be one of '', 'hard'"):
        get_config("harder")


def test_a_config_without_task_is_a_sequences_config():
    config = get_config().to_dict()
    del config["task"]
    assert task_of(config) == "sequences" and row_length(config) == 32


def test_text_has_no_generator():
    with pytest.raises(ValueError, match="task='text' has no generator"):
        generate(get_config("text"))


def test_make_splits_of_mqar_splits_rows_by_draw():
    config = mqar_config(seed=7)
    expected = split_by_draw(generate_mqar(config), (0.8, 0.1, 0.1), seed=7)
    splits = make_splits(config)
    assert_splits_equal(splits, expected)
    assert sum(len(splits[name]) for name in SPLITS) == config.samples


def test_mqar_dataset_round_trip_and_task_mismatch(tmp_path):
    config = mqar_config()
    out = tmp_path / "mqar"
    save_dataset(str(out), make_splits(config), config)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator_config"]["task"] == "mqar"
    assert manifest["generator_config"]["num_kv_pairs"] == 4
    config.dir = str(out)
    assert_splits_equal(make_splits(config), load_dataset(str(out)))
    other = mqar_config(num_kv_pairs=5)
    other.dir = str(out)
    with pytest.raises(ValueError, match="num_kv_pairs: config 5 vs stored 4"):
        make_splits(other)
    sequences = get_config()
    sequences.dir = str(out)
    with pytest.raises(ValueError, match="task: config 'sequences' vs stored 'mqar'"):
        make_splits(sequences)


def test_sequences_manifest_has_no_task_field(tmp_path):
    config = get_config()
    config.samples = 100
    save_dataset(str(tmp_path / "ds"), make_splits(config), config)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert "task" not in manifest["generator_config"]
    mqar = mqar_config()
    mqar.dir = str(tmp_path / "ds")
    with pytest.raises(ValueError, match="task: config 'mqar' vs stored 'sequences'"):
        make_splits(mqar)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "experiments.generate_data", *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(command, cwd=_REPO, capture_output=True, text=True, env=env, check=False)


def test_cli_writes_mqar_and_refuses_text(tmp_path):
    out = tmp_path / "cli"
    flags = ["--config.samples=200", "--config.input_seq_len=32", "--config.num_kv_pairs=4"]
    result = run_cli("--config=configs/data.py:mqar", f"--out={out}", *flags)
    assert result.returncode == 0, result.stderr
    assert "answers per row: 4..4" in result.stdout
    assert_splits_equal(load_dataset(str(out)), make_splits(mqar_config()))
    text = run_cli("--config=configs/data.py:text", f"--out={tmp_path / 'text'}")
    assert text.returncode != 0 and "task='text' has nothing to generate" in text.stderr
    assert not (tmp_path / "text").exists()
