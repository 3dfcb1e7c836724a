"""Tests of t3kan_jax.eval.compare and experiments.compare: table, differing settings, curves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs import base
from t3kan_jax.eval import compare
from t3kan_jax.train import workdir as workdir_lib

_REPO = Path(__file__).resolve().parents[1]


def fake_run(workdir: Path, arch: str, test_acc: float | None, extrap: float | None = None):
    """A run directory as experiments.train (and evaluate) leave it; unfinished if test_acc None."""
    config = base.get_config()
    config.name = arch
    config.model.update(arch=arch, width=16, depth=1, num_heads=2)
    workdir_lib.prepare(config, workdir)
    rows = []
    for step in (10, 20):
        for split in ("train", "val"):
            rows.append({"step": step, "split": split, "loss": 2.0 / step, "accuracy": step / 40,
                         "determined_accuracy": step / 30, "last_accuracy": step / 50})  # fmt: skip
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if test_acc is not None:
        test = {"loss": 1 - test_acc, "accuracy": test_acc, "determined_accuracy": test_acc,
                "last_accuracy": None}  # fmt: skip
        results = {"status": "finished", "stop_reason": "max_steps", "step": 20, "best_step": 20,
                   "best_val_loss": 0.1, "test": test, "num_params": 12345, "wall_time_s": 95.0,
                   "devices": 1}  # fmt: skip
        (workdir / "results.json").write_text(json.dumps(results))
    if extrap is not None:
        report = {"beyond_training": {"accuracy": extrap, "tokens": 10}}
        (workdir / "eval.json").write_text(json.dumps({"extrapolation": report}))
    return workdir


@pytest.fixture
def runs(tmp_path):
    return [
        fake_run(tmp_path / "a" / "ttt", "ttt", 0.9, extrap=0.5),
        fake_run(tmp_path / "b" / "ttt", "transformer", 0.8),
        fake_run(tmp_path / "kat", "kat", None),
    ]


def test_table_marks_the_best_and_unfinished_runs(runs):
    summaries = compare.load_summaries(runs)
    assert [s.label for s in summaries] == ["a/ttt", "b/ttt", "kat"]
    assert [s.model for s in summaries] == ["T3Lin", "Transformer", "KAT"]
    table = compare.markdown_table(summaries).splitlines()
    assert len(table) == 5 and table[0].count("|") == table[2].count("|")
    assert "Acc. beyond train length (%)" in table[0]
    a, b, kat = table[2:]
    assert "| **90.00** |" in a and "| 80.00 |" in b and "| **50.00** |" in a
    assert "| **0.1000** |" in a  # test loss 1 - 0.9, the lowest
    assert "12.3K" in a and "1.6 min" in a
    assert "unfinished" in kat and "| 20 |" in kat  # steps from metrics.jsonl
    assert summaries[2].step == 20 and summaries[2].results is None


def test_differing_settings_and_written_report(runs, tmp_path):
    summaries = compare.load_summaries(runs[:2], labels=["x", "y"])
    assert compare.differing_fields(summaries) == [("model.arch", ["ttt", "transformer"])]
    out = tmp_path / "docs" / "results.md"
    paths = compare.write_comparison(summaries, out, "Sequence task")
    assert paths == [out, tmp_path / "docs" / "results_curves.png"]
    text = out.read_text()
    assert text.startswith("# Sequence task") and "![learning curves](results_curves.png)" in text
    assert "| `model.arch` | ttt | transformer |" in text
    assert paths[1].stat().st_size > 0


def test_bad_arguments(runs):
    with pytest.raises(ValueError, match="1 labels for 2"):
        compare.load_summaries(runs[:2], labels=["x"])
    with pytest.raises(ValueError, match="twice"):
        compare.load_summaries([runs[0], runs[0]])
    with pytest.raises(ValueError, match="at least one"):
        compare.load_summaries([])


def test_cli(runs, tmp_path):
    out = tmp_path / "out.md"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.compare", *map(str, runs), f"--out={out}"],
        cwd=_REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "T3Lin" in out.read_text()
