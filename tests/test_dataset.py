"""Tests of splits by draw, the on-disk format, its loader's checks, make_splits and the CLI."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.data import get_config
from t3kan_jax.data import (
    Sequences,
    generate_sequences,
    load_dataset,
    make_splits,
    save_dataset,
    split_by_draw,
)
from t3kan_jax.data.dataset import FORMAT_VERSION, SPLITS

_REPO = pathlib.Path(__file__).resolve().parents[1]
_FIELDS = ("inputs", "targets", "draw", "components")


def small_config(**overrides) -> ml_collections.ConfigDict:
    config = get_config()
    config.update({"samples": 120, **overrides})
    return config


def assert_splits_equal(a: dict[str, Sequences], b: dict[str, Sequences]):
    assert set(a) == set(b) == set(SPLITS)
    for name in SPLITS:
        for field in _FIELDS:
            np.testing.assert_array_equal(getattr(a[name], field), getattr(b[name], field))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(60, 400),
    st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.6, 0.4, 0.0), (0.7, 0.2, 0.1)]),
    st.integers(0, 2**32 - 1),
)
def test_split_by_draw_partitions_whole_draws(samples, fractions, seed):
    seqs = generate_sequences(small_config(samples=samples, components_number=3, seed=seed))
    splits = split_by_draw(seqs, fractions, seed=seed)
    draws = [set(splits[name].draw.tolist()) for name in SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not draws[i] & draws[j], (SPLITS[i], SPLITS[j])
    assert set().union(*draws) == set(seqs.draw.tolist())
    total = np.unique(seqs.draw).size
    assert len(draws[0]) == round(fractions[0] * total)
    assert len(draws[1]) == round(fractions[1] * total)
    for name, chosen in zip(SPLITS, draws, strict=True):
        original = seqs.take(np.isin(seqs.draw, list(chosen)))  # All rows of a draw, in order.
        for field in _FIELDS:
            np.testing.assert_array_equal(getattr(splits[name], field), getattr(original, field))
    again = split_by_draw(seqs, fractions, seed=seed)
    assert_splits_equal(splits, again)


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ((0.8, 0.1, 0.2), "sum to 1"),
        ((0.8, 0.3, -0.1), "test_fraction=-0.1"),
        ((1.2, -0.1, -0.1), "train_fraction=1.2"),
    ],
)
def test_split_fractions_must_sum_to_one(fractions, match):
    with pytest.raises(ValueError, match=match):
        split_by_draw(generate_sequences(small_config()), fractions)


def test_split_with_no_draw_is_refused():
    seqs = generate_sequences(small_config(samples=4, components_number=1))
    with pytest.raises(ValueError, match=r"val_fraction=0\.1 of 4 draws"):
        split_by_draw(seqs, (0.8, 0.1, 0.1))


def test_make_splits_in_memory_is_generate_then_split():
    config = small_config(seed=11)
    expected = split_by_draw(generate_sequences(config), (0.8, 0.1, 0.1), seed=11)
    assert_splits_equal(make_splits(config), expected)


def test_save_load_round_trip_and_manifest(tmp_path):
    config = small_config(seed=3)
    splits = make_splits(config)
    out = tmp_path / "ds"
    save_dataset(str(out), splits, config)
    assert_splits_equal(load_dataset(str(out)), splits)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["generator_config"]["seed"] == 3
    assert manifest["generator_config"]["vocab_size"] == config.vocab_size
    assert manifest["split"] == {"train_fraction": 0.8, "val_fraction": 0.1, "test_fraction": 0.1}
    assert manifest["rows"] == {name: len(splits[name]) for name in SPLITS}
    assert sum(manifest["rows"].values()) == config.samples
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.npy"))
    assert files == sorted(manifest["files"])
    for rel, meta in manifest["files"].items():
        assert meta["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest()
    config.dir = str(out)
    assert_splits_equal(make_splits(config), splits)


def test_same_dataset_again_is_fine_and_a_different_one_refused(tmp_path):
    config = small_config()
    out = tmp_path / "ds"
    save_dataset(str(out), make_splits(config), config)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    save_dataset(str(out), make_splits(config), config)
    other = small_config(seed=1)
    with pytest.raises(FileExistsError, match="different dataset"):
        save_dataset(str(out), make_splits(other), other)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert_splits_equal(load_dataset(str(out)), make_splits(config))


def test_non_empty_directory_without_dataset_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    config = small_config()
    with pytest.raises(FileExistsError, match="no intact dataset"):
        save_dataset(str(tmp_path), make_splits(config), config)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    save_dataset(str(empty), make_splits(config), config)
    assert_splits_equal(load_dataset(str(empty)), make_splits(config))


@pytest.fixture
def saved(tmp_path):
    config = small_config()
    save_dataset(str(tmp_path / "ds"), make_splits(config), config)
    return tmp_path / "ds"


def test_truncated_file_fails_checksum(saved):
    path = saved / "val" / "targets.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"val/targets\.npy: checksum mismatch"):
        load_dataset(str(saved))


def test_edited_file_fails_checksum(saved):
    path = saved / "train" / "inputs.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train/inputs\.npy: checksum mismatch"):
        load_dataset(str(saved))


def test_missing_file_and_manifest(saved):
    (saved / "test" / "draw.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"test/draw\.npy"):
        load_dataset(str(saved))
    (saved / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_dataset(str(saved))


def test_unknown_format_version(saved):
    path = saved / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"format_version={FORMAT_VERSION + 1} is unknown"):
        load_dataset(str(saved))


def test_make_splits_refuses_a_dataset_of_another_config(saved):
    config = small_config(vocab_size=256)
    config.dir = str(saved)
    with pytest.raises(ValueError, match="vocab_size: config 256 vs stored 128"):
        make_splits(config)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "experiments.generate_data", "--config=configs/data.py", *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(command, cwd=_REPO, capture_output=True, text=True, env=env, check=False)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    flags = ["--config.samples=300", "--config.vocab_size=256", "--config.seed=5"]
    result = run_cli(f"--out={out}", *flags)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and "train:" in result.stdout and "C=1" in result.stdout
    expected = make_splits(small_config(samples=300, vocab_size=256, seed=5))
    assert_splits_equal(load_dataset(str(out)), expected)
    assert run_cli(f"--out={out}", *flags).returncode == 0
    refused = run_cli(f"--out={out}", *flags[:2], "--config.seed=6")
    assert refused.returncode != 0
    assert "different dataset" in refused.stderr
    assert_splits_equal(load_dataset(str(out)), expected)
    bad = run_cli(f"--out={tmp_path / 'bad'}", "--config.pad_id=7")
    assert bad.returncode != 0 and "pad_id=7" in bad.stderr
    assert not (tmp_path / "bad").exists()
