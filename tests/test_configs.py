"""Tests of configs/: each model config builds its model, documents itself, can be overridden."""

import importlib
import re
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from configs import base
from t3kan_jax import models
from t3kan_jax.train import default_workdir, train_and_evaluate

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
NAMES = {
    "t3lin": "T3Lin",
    "t3mlp": "T3MLP",
    "t3kan": "T3KAN",
    "transformer": "Transformer",
    "kansformer": "Kansformer",
    "kat": "KAT",
    "titans": "TitansMLP",
    "lact": "LaCT",
}


@pytest.mark.parametrize("name", NAMES)
def test_config_builds_its_model(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.name == name
    assert set(config.model.keys()) == set(models.ModelConfig.field_names())  # all overridable
    cfg = models.ModelConfig.from_config(config.model)
    assert models.model_name(cfg) == NAMES[name]
    assert models.count_params(models.abstract_params(cfg)) > 0
    assert cfg.vocab_size == config.data.vocab_size
    assert cfg.max_len == config.data.vocab_size // config.data.seq_step


@pytest.mark.parametrize("name", NAMES)
def test_config_opens_with_its_command_and_measured_result(name):
    doc = importlib.import_module(f"configs.{name}").__doc__
    assert f"python -m experiments.train --config=configs/{name}.py" in doc
    assert re.search(r"Result:.*\d+\.\d%", doc), "the measured test accuracy"


def test_every_base_field_is_commented():
    lines = (CONFIG_DIR / "base.py").read_text().splitlines()
    assignment = re.compile(r"^\s+config(\.\w+)+ = ")
    for i, line in enumerate(lines):
        if not assignment.match(line) or "ConfigDict()" in line:
            continue
        j = i - 1
        while assignment.match(lines[j]) and "ConfigDict()" not in lines[j]:
            j -= 1  # a comment may describe a group of related fields
        assert lines[j].strip().startswith("#"), f"base.py:{i + 1} has no comment: {line.strip()}"


def test_data_sizes_follow_the_data_config():
    config = base.get_config()
    config.data.vocab_size = 256
    config.data.seq_step = 8
    assert (config.model.vocab_size, config.model.max_len) == (256, 32)


def _parse(argv):
    argv = ["train", *argv]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", str(CONFIG_DIR / "t3kan.py"), flag_values=values, sys_argv=argv
    )
    values(argv)
    return values


def test_command_line_overrides_reach_every_level():
    values = _parse(
        [
            "--config.model.inner=mlp",
            "--config.model.base_lr=0.5",
            "--config.train.steps=7",
            "--config.data.vocab_size=64",
            "--config.mesh.fsdp=2",
        ]
    )
    config = values.config
    assert (config.model.inner, config.model.base_lr, config.train.steps) == ("mlp", 0.5, 7)
    assert (config.model.vocab_size, config.model.max_len, config.mesh.fsdp) == (64, 16, 2)


def test_default_workdir_is_deterministic_and_separates_model_changes():
    config = importlib.import_module("configs.t3kan").get_config()
    assert default_workdir(config) == str(Path("runs") / "t3kan-s0")
    assert default_workdir(config, {"train.steps": 5}) == str(Path("runs") / "t3kan-s0")
    changed = default_workdir(config, {"model.inner": "mlp"})
    assert changed.startswith(str(Path("runs") / "t3kan-s0-"))
    assert changed == default_workdir(config, {"model.inner": "mlp"})
    assert changed != default_workdir(config, {"model.inner": "linear"})
    config.seed = 3
    assert default_workdir(config) == str(Path("runs") / "t3kan-s3")


@pytest.mark.slow
def test_shipped_t3kan_config_reaches_95_percent_determined_accuracy(tmp_path):
    config = importlib.import_module("configs.t3kan").get_config()
    config.mesh.data = 1
    results = train_and_evaluate(config, str(tmp_path / "t3kan"))
    assert results["test"]["determined_accuracy"] >= 0.95
