"""Trains the grid of a study, one run after another, and writes its Markdown report.

    python -m experiments.study --study=mqar --out_dir=runs/study_mqar \
        --results=docs/results_mqar.md [--steps=N] [--only=t3lin,transformer]
    python -m experiments.study --study=hard --out_dir=runs/study_hard \
        --results=docs/results_hard.md

Each cell of the study's GRID (configs/mqar_study.py, configs/hard_seq.py) trains in its own
workdir OUT_DIR/<cell> with `train_and_evaluate`, so rerunning the command resumes unfinished cells
and skips finished ones. A cell that fails is recorded (OUT_DIR/<cell>/study_cell.json) and the
study goes on. The hard study then evaluates each cell's best parameters on the extrapolation split
(experiments.evaluate --extrapolate). The report covers every cell of the grid found on disk:
the headline test metric per model and cell group, a table per cell, learning curves per group
(PNGs beside the Markdown) and the commands.
"""

import json
import logging
import sys
import time
import traceback
from pathlib import Path

import jax
from absl import app, flags

from configs import hard_seq, mqar_study
from experiments.study_report import CELL_FILE, Study, cell_config, pct, write_report
from t3kan_jax import eval as eval_lib
from t3kan_jax.train import train_and_evaluate
from t3kan_jax.train.workdir import read_results

STUDIES = {
    "mqar": Study(
        "mqar",
        "MQAR study (T = 256, 2 layers)",
        mqar_study.GRID,
        mqar_study.get_config,
        "configs/mqar_study.py",
        "accuracy",
    ),
    "hard": Study(
        "hard",
        "Hard sequence preset (2 layers)",
        hard_seq.GRID,
        hard_seq.get_config,
        "configs/hard_seq.py",
        "determined_accuracy",
    ),
}

_STUDY = flags.DEFINE_enum("study", "mqar", list(STUDIES), "Which study to run.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Workdirs of the cells (default runs/study_NAME).")
_RESULTS = flags.DEFINE_string("results", None, "Markdown report (default docs/results_NAME.md).")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps per cell (default: the config's).")
_ONLY = flags.DEFINE_list("only", None, "Models (t3lin, ...) or cell names to train; default all.")


def select_cells(study: Study, only: list[str] | None) -> list[dict]:
    """The cells whose model or name is in `only` (all cells if `only` is empty)."""
    if not only:
        return list(study.grid)
    known = {c["model"] for c in study.grid} | {c["name"] for c in study.grid}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(f"--only={unknown}: each must be one of {sorted(known)}")
    return [c for c in study.grid if c["model"] in only or c["name"] in only]


def extrapolate(workdir: Path) -> dict:
    """The best parameters' report on the extrapolation split (eval.json, until retrained)."""
    path, results = workdir / "eval.json", workdir / "results.json"
    if path.exists() and path.stat().st_mtime >= results.stat().st_mtime:
        reports = json.loads(path.read_text())
        if "extrapolation" in reports:
            return reports["extrapolation"]
    report = eval_lib.evaluate_run(eval_lib.load_run(workdir), extrapolate=True)
    eval_lib.write_outputs(workdir, report)
    return report


def run_cell(study: Study, cell: dict, out_dir: Path, steps: int | None) -> dict:
    """Trains (or resumes) one cell; returns its study_cell.json record (error on failure)."""
    workdir = out_dir / cell["name"]
    workdir.mkdir(parents=True, exist_ok=True)
    record_path = workdir / CELL_FILE
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    start = time.perf_counter()
    try:
        config, _ = cell_config(study, cell, steps)
        already = read_results(workdir)
        results = train_and_evaluate(config, workdir)
        if results["status"] != "finished":
            return {"status": results["status"], "signal": results.get("signal")}
        if config.data.get("extrapolation_factor", 0) >= 2:
            extrapolate(workdir)
        if already != results:  # trained in this session: this machine and time
            record.update(device=device_name(), session_s=time.perf_counter() - start)
        record.update(status="finished", error=None)
    except Exception as e:
        logging.error("cell %s failed:\n%s", cell["name"], traceback.format_exc())
        record.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def device_name() -> str:
    devices = jax.devices()
    return f"{len(devices)} x {devices[0].device_kind}"


def run_study(
    study: Study, cells: list[dict], out_dir: Path, results: Path, steps: int | None, command: str
) -> list[Path]:
    """Trains `cells` in turn (printing a line per cell), then writes the report."""
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        record = run_cell(study, cell, out_dir, steps)
        res = read_results(out_dir / cell["name"]) or {}
        acc = res.get("test", {}).get(study.headline)
        print(
            f"[{i}/{len(cells)}] {cell['name']}: {record.get('error') or record['status']}"
            + (
                f", test {study.headline} {pct(acc)}%, {res['num_params']:,} params, "
                f"{res['wall_time_s']:.0f} s"
                if acc is not None
                else ""
            ),
            flush=True,
        )
        if record["status"] == "interrupted":
            print(f"{record['signal']}: stopped; rerun the same command to resume", flush=True)
            break
    return write_report(study, out_dir, results, steps, command, time.perf_counter() - start)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    study = STUDIES[_STUDY.value]
    try:
        cells = select_cells(study, _ONLY.value)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    out_dir = Path(_OUT_DIR.value or f"runs/study_{study.name}")
    results = Path(_RESULTS.value or f"docs/results_{study.name}.md")
    command = "python -m experiments.study " + " ".join(sys.argv[1:])
    for path in run_study(study, cells, out_dir, results, _STEPS.value, command):
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
