"""Tests of experiments.study: a tiny grid trains, resumes, records a failure, and is reported."""

import json

import pytest

from configs import hard_seq, mqar_study
from experiments import study as study_lib
from experiments import study_report
from t3kan_jax.train import metrics

TINY_GRID = (
    {"name": "transformer-w16-k2", "model": "transformer", "width": 16, "num_kv_pairs": 2},
    {"name": "transformer-w16-k4", "model": "transformer", "width": 16, "num_kv_pairs": 4},
    # num_heads=3 does not divide width 16: ModelConfig refuses it, so this cell fails.
    {"name": "t3mlp-w16-k4", "model": "t3mlp", "width": 16, "num_kv_pairs": 4},
)


def shrink(config):
    """One block of width 16 on one device: seconds on a CPU (the two Transformer cells share
    their compiled programs)."""
    config.model.update(width=16, depth=1, mlp_ratio=1.0, mini_batch_size=8)
    config.train.update(batch_size=8, eval_batch_size=16, steps=20, log_every=1)
    config.mesh.data = 1
    return config


def tiny_mqar_config(name: str):
    cell = next(c for c in TINY_GRID if c["name"] == name)
    config = shrink(mqar_study.apply_cell(mqar_study.get_config(), cell))
    config.data.update(samples=160, vocab_size=64, input_seq_len=32)
    config.model.num_heads = 3 if cell["model"] == "t3mlp" else 1
    return config


def tiny_hard_config(name: str):
    config = shrink(hard_seq.get_config("transformer-w64"))
    config.data.update(samples=200, vocab_size=160)
    return config


TINY_MQAR = study_lib.Study(
    "mqar", "Tiny MQAR", TINY_GRID, tiny_mqar_config, "configs/mqar_study.py", "accuracy"
)
TINY_HARD = study_lib.Study(
    "hard",
    "Tiny hard",
    ({"name": "transformer-w16", "model": "transformer", "width": 16},),
    tiny_hard_config,
    "configs/hard_seq.py",
    "determined_accuracy",
)


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after `heading`."""
    section = markdown.split(heading, 1)[1]
    lines = [ln for ln in section.split("\n\n", 2)[1].splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def read_results(out_dir, names):
    return {n: json.loads((out_dir / n / "results.json").read_text()) for n in names}


def test_tiny_study_is_reported_and_resumes(tmp_path, capsys):
    out_dir, results = tmp_path / "runs", tmp_path / "docs" / "results.md"
    paths = study_lib.run_study(TINY_MQAR, list(TINY_GRID), out_dir, results, 3, "CMD")
    printed = capsys.readouterr().out
    assert "[1/3] transformer-w16-k2: finished, test accuracy" in printed
    assert "[3/3] t3mlp-w16-k4: ValueError" in printed
    assert paths == [results, *(tmp_path / "docs" / f"results_w16-k{k}.png" for k in (2, 4))]
    assert all(p.stat().st_size > 0 for p in paths)
    text = results.read_text()
    finished = read_results(out_dir, [c["name"] for c in TINY_GRID[:2]])
    assert all(r["step"] == 3 for r in finished.values())

    rows = {r[0]: r for r in table_rows(text, "## Cells")}
    assert set(rows) == {c["name"] for c in TINY_GRID}
    for name, res in finished.items():
        row = rows[name]
        assert row[4] == f"{res['num_params']:,}" and row[6] == "3"
        assert row[7] == f"{100 * res['test']['accuracy']:.2f}"
        assert row[8] == f"{res['test']['loss']:.4f}" and row[-1] == "finished"
    assert rows["t3mlp-w16-k4"][-1].startswith("failed: ValueError") and "num_heads" in text

    summary = {r[0]: r[1:] for r in table_rows(text, "## Test answer accuracy")}
    assert summary == {
        "Transformer": [rows["transformer-w16-k2"][7], rows["transformer-w16-k4"][7]],
        "T3MLP": ["–", "failed"],
    }
    assert "CMD" in text and "configs/mqar_study.py:transformer-w16-k4 --workdir=" in text
    assert "--config.train.steps=3 --config.train.warmup_steps=0" in text

    # A second call trains nothing: the finished cells are read back unchanged.
    before = {n: (out_dir / n / "metrics.jsonl").read_text() for n in finished}
    study_lib.run_study(TINY_MQAR, list(TINY_GRID[:2]), out_dir, results, 3, "CMD")
    assert before == {n: (out_dir / n / "metrics.jsonl").read_text() for n in finished}
    assert "[2/2] transformer-w16-k4: finished, test accuracy" in capsys.readouterr().out


def test_hard_study_reports_extrapolation(tmp_path):
    out_dir, results = tmp_path / "runs", tmp_path / "results_hard.md"
    study_lib.run_study(TINY_HARD, list(TINY_HARD.grid), out_dir, results, 2, "CMD")
    report = json.loads((out_dir / "transformer-w16" / "eval.json").read_text())["extrapolation"]
    assert report["row_length"] == 2 * report["train_row_length"]
    res = read_results(out_dir, ["transformer-w16"])["transformer-w16"]
    (row,) = table_rows(results.read_text(), "## Cells")
    assert row[7] == f"{100 * res['test']['determined_accuracy']:.2f}"
    assert row[9:11] == [
        f"{100 * report[span]['determined_accuracy']:.2f}"
        for span in ("overall", "beyond_training")
    ]


def test_grids_and_cell_configs():
    assert len(mqar_study.GRID) == 16 and len(hard_seq.GRID) == 8
    assert {(c["model"], c["width"], c["num_kv_pairs"]) for c in mqar_study.GRID} == {
        (m, w, k) for m in mqar_study.MODELS for w in (64, 128) for k in (16, 64)
    }
    config = mqar_study.get_config("t3kan-w128-k64")
    assert (config.model.inner, config.model.width, config.data.num_kv_pairs) == ("kan", 128, 64)
    assert (config.data.task, config.data.input_seq_len, config.model.max_len) == ("mqar", 256, 256)
    assert config.model.vocab_size == config.data.vocab_size == 8192 and config.model.depth == 2
    hard = hard_seq.get_config("transformer-w64")
    assert (hard.model.arch, hard.model.vocab_size, hard.model.max_len) == (
        "transformer",
        1024,
        256,
    )
    assert (hard.data.components_number, hard.data.allow_descending) == (4, True)
    with pytest.raises(ValueError, match="cell="):
        mqar_study.get_config("t3kan-w96-k16")


def test_select_cells_and_steps():
    study = study_lib.STUDIES["mqar"]
    names = [c["name"] for c in study_lib.select_cells(study, ["t3lin", "transformer-w64-k16"])]
    assert names == [
        "t3lin-w64-k16",
        "transformer-w64-k16",
        "t3lin-w64-k64",
        "t3lin-w128-k16",
        "t3lin-w128-k64",
    ]
    with pytest.raises(ValueError, match="--only"):
        study_lib.select_cells(study, ["mamba"])
    config, _ = study_lib.cell_config(study, study.grid[0], 400)
    assert (config.train.steps, config.train.warmup_steps, config.train.eval_every) == (400, 20, 40)
    assert study_lib.cell_config(study, study.grid[0], None)[1] == {}


def test_unfinished_cell_reports_its_step_and_best_validation(tmp_path):
    out_dir, results = tmp_path / "runs", tmp_path / "results.md"
    cell = TINY_GRID[0]["name"]
    study_lib.run_study(TINY_MQAR, [TINY_GRID[0]], out_dir, results, 4, "CMD")
    # An interrupted run: metrics logged, no results.json yet.
    (out_dir / cell / "results.json").unlink()
    vals = [r for r in metrics.read_rows(out_dir / cell / "metrics.jsonl") if r["split"] == "val"]
    study_report.write_report(TINY_MQAR, out_dir, results, 4, "CMD", 1.0)
    text = results.read_text()
    rows = {r[0]: r for r in table_rows(text, "## Cells")}
    best = max(r["accuracy"] for r in vals)
    last = metrics.read_rows(out_dir / cell / "metrics.jsonl")[-1]["step"]
    assert rows[cell][-1] == f"unfinished at step {last} (best val. {100 * best:.2f}%)"
    assert rows[cell][7] == "–" and rows[TINY_GRID[1]["name"]][-1] == "not run"
    summary = {r[0]: r[1:] for r in table_rows(text, "## Test answer accuracy")}
    assert summary["Transformer"] == ["unfinished", "–"]
