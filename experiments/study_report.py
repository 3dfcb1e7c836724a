"""The Markdown report of a study (experiments.study): tables, target checks, curves, commands.

Everything is read back from the cells' workdirs (config, results.json, metrics.jsonl, eval.json
and the study's own study_cell.json), so the report covers every cell of the grid trained so far,
in this session or earlier ones, and marks the others "not run", "unfinished" or "failed: ...".
"""

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from ml_collections import config_dict

from configs import base, mqar_study
from t3kan_jax import data as data_lib
from t3kan_jax import models
from t3kan_jax.eval import compare
from t3kan_jax.train import metrics
from t3kan_jax.train.workdir import read_results

CELL_FILE = "study_cell.json"  # Per cell: status, error, and the device and time of its training.
TARGET = 0.99  # Issue 9: "solved" is at least 99% answer accuracy.


@dataclasses.dataclass(frozen=True)
class Study:
    """A grid of runs: cells (dicts with at least name, model, width) and their configs."""

    name: str
    title: str
    grid: tuple[dict, ...]
    get_config: Callable[[str], config_dict.ConfigDict]
    config_file: str
    headline: str  # The test metric of the summary table.


def group_of(cell: dict) -> str:
    """The cell's group: its name without the model ("w64-k16"); a curve plot per group."""
    return cell["name"].split("-", 1)[1]


def step_overrides(config: config_dict.ConfigDict, steps: int | None) -> dict:
    """The train fields that --steps changes: steps, and warmup / eval interval scaled to fit."""
    if steps is None:
        return {}
    if steps < 1:
        raise ValueError(f"--steps={steps}: must be >= 1")
    tc = config.train
    return {
        "train.steps": steps,
        "train.warmup_steps": min(tc.warmup_steps, steps // 20),
        "train.eval_every": min(tc.eval_every, max(1, steps // 10)),
    }


def cell_config(study: Study, cell: dict, steps: int | None):
    """The cell's config with --steps applied, and the overrides that were applied."""
    config = study.get_config(cell["name"])
    overrides = step_overrides(config, steps)
    config.update_from_flattened_dict(overrides)
    return config, overrides


def cell_command(study: Study, cell: dict, out_dir: Path, overrides: dict) -> str:
    """The experiments.train command that trains (or resumes) this one cell."""
    args = [f"--config={study.config_file}:{cell['name']}", f"--workdir={out_dir / cell['name']}"]
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    return "python -m experiments.train " + " ".join(args)


@dataclasses.dataclass
class CellResult:
    """What the report shows of one cell, read from its workdir."""

    cell: dict
    model: str
    num_params: int | None  # None: the config is invalid (the cell failed)
    non_embedding_params: int | None
    results: dict | None
    record: dict
    evals: dict
    rows: list[dict]
    step_ms: float | None
    headline_metric: str = "accuracy"

    @property
    def state(self) -> str:
        """One of: failed, finished, unfinished (metrics logged, no results), not run."""
        if self.record.get("status") == "failed":
            return "failed"
        if self.results is not None:
            return "finished"
        return "unfinished" if self.rows else "not run"

    @property
    def status(self) -> str:
        """`state` with the failure's error, or an unfinished cell's step and best validation."""
        if self.state == "failed":
            return "failed: " + self.record["error"].replace("|", "\\|")
        if self.state != "unfinished":
            return self.state
        best = self.best_val(self.headline_metric)
        return f"unfinished at step {self.rows[-1]['step']}" + (
            "" if best is None else f" (best val. {pct(best)}%)"
        )

    def best_val(self, name: str) -> float | None:
        """The best validation value of `name` logged so far (unfinished cells)."""
        values = [r[name] for r in self.rows if r["split"] == "val" and name in r]
        return max(values) if values else None

    def test(self, name: str) -> float | None:
        return self.results["test"][name] if self.results else None

    def extrapolation(self, span: str, name: str) -> float | None:
        report = self.evals.get("extrapolation", {}).get(span)
        return report.get(name) if report and self.results else None


def display_name(model: str) -> str:
    """T3Lin, T3MLP, T3KAN or Transformer: the name of a study model key at base's defaults."""
    fields = base.get_config().model
    fields.update(mqar_study.MODELS[model])
    return models.model_name(models.ModelConfig.from_config(fields))


def median_step_ms(rows: list[dict], config: config_dict.ConfigDict) -> float | None:
    """Median training time per step (ms) over the train rows after the first (compilation)."""
    tps = [r["tokens_per_second"] for r in rows if r["split"] == "train"][1:]
    if not tps:
        return None
    return (
        1000 * config.train.batch_size * data_lib.row_length(config.data) / statistics.median(tps)
    )


def load_cell(study: Study, cell: dict, out_dir: Path, steps: int | None) -> CellResult:
    """Reads one cell's workdir (a cell never run gives a row without results)."""
    workdir = out_dir / cell["name"]
    config, _ = cell_config(study, cell, steps)
    try:
        model_cfg = models.ModelConfig.from_config(config.model)
    except ValueError:  # the cell's failure (recorded) says why
        model_cfg = None
    params = models.abstract_params(model_cfg)["params"] if model_cfg else {}
    embedding = {k: v for k, v in params.items() if k in ("embed", "lm_head")}
    results = read_results(workdir)
    results = results if results and results.get("status") == "finished" else None
    record_path, eval_path = workdir / CELL_FILE, workdir / "eval.json"
    rows = metrics.read_rows(workdir / "metrics.jsonl")
    return CellResult(
        cell=cell,
        model=models.model_name(model_cfg) if model_cfg else display_name(cell["model"]),
        num_params=results["num_params"] if results else models.count_params(params) or None,
        non_embedding_params=models.count_params(params) - models.count_params(embedding)
        if model_cfg
        else None,
        results=results,
        record=json.loads(record_path.read_text()) if record_path.exists() else {},
        evals=json.loads(eval_path.read_text()) if eval_path.exists() else {},
        rows=rows,
        step_ms=median_step_ms(rows, config),
        headline_metric=study.headline,
    )


def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def summary_table(study: Study, cells: list[CellResult]) -> str:
    """Rows: models; columns: cell groups; entries: the headline test metric (%)."""
    groups = list(dict.fromkeys(group_of(c.cell) for c in cells))
    by_model = {}
    for c in cells:
        by_model.setdefault(c.model, {})[group_of(c.cell)] = (
            c.state if c.state in ("failed", "unfinished") else pct(c.test(study.headline))
        )
    rows = [[model] + [row.get(g, "–") for g in groups] for model, row in by_model.items()]
    return table(["Model", *groups], rows)


def cells_table(study: Study, cells: list[CellResult]) -> str:
    """One row per cell: size, training, test (and extrapolation) metrics, time, status."""
    mqar = study.name == "mqar"
    columns = [
        ("Cell", lambda c: c.cell["name"]),
        ("Model", lambda c: c.model),
        ("Width", lambda c: str(c.cell["width"])),
        *([("Pairs", lambda c: str(c.cell["num_kv_pairs"]))] if mqar else []),
        ("Params", lambda c: count(c.num_params)),
        ("Non-emb. params", lambda c: count(c.non_embedding_params)),
        ("Steps", lambda c: str(c.results["step"]) if c.results else "–"),
        ("Test acc. (%)", lambda c: pct(c.test("accuracy"))),
        *([] if mqar else [("Test det. acc. (%)", lambda c: pct(c.test("determined_accuracy")))]),
        ("Test loss", lambda c: "–" if c.results is None else f"{c.test('loss'):.4f}"),
    ]
    if not mqar:
        columns += [
            (
                "Extrap. det. acc. (%)",
                lambda c: pct(c.extrapolation("overall", "determined_accuracy")),
            ),
            (
                "Det. acc. beyond train length (%)",
                lambda c: pct(c.extrapolation("beyond_training", "determined_accuracy")),
            ),
        ]
    columns += [
        ("ms/step", lambda c: "–" if c.step_ms is None else f"{c.step_ms:.1f}"),
        ("Train time", lambda c: f"{c.results['wall_time_s']:.0f} s" if c.results else "–"),
        ("Status", lambda c: c.status),
    ]
    return table([h for h, _ in columns], [[f(c) for _, f in columns] for c in cells])


def mqar_findings(cells: list[CellResult]) -> list[str]:
    """The issue's targets and the Zoology reference, checked against the finished cells."""
    done = {(c.cell["model"], group_of(c.cell)): c for c in cells if c.results}
    groups = list(dict.fromkeys(group_of(c.cell) for c in cells))
    solved = {
        g: [c.model for (_, h), c in done.items() if h == g and c.test("accuracy") >= TARGET]
        for g in groups
    }
    lines = [
        "Models at >= 99% test answer accuracy: "
        + "; ".join(f"{g}: {', '.join(m) or 'none'}" for g, m in solved.items())
        + "."
    ]
    ttt = [done[m, "w128-k64"] for m in ("t3lin", "t3mlp", "t3kan") if (m, "w128-k64") in done]
    if ttt:
        best = max(ttt, key=lambda c: c.test("accuracy"))
        met = "met" if best.test("accuracy") >= TARGET else "not met"
        lines.append(
            f"Target (a TTT variant >= 99% at width 128, 64 pairs): {met}; best "
            f"{best.model} at {pct(best.test('accuracy'))}%."
        )
    pairs = [
        (done["t3kan", g], done["t3mlp", g])
        for g in groups
        if ("t3kan", g) in done and ("t3mlp", g) in done
    ]
    if pairs:
        wins = sum(k.test("accuracy") >= m.test("accuracy") for k, m in pairs)
        extra = max(k.num_params / m.num_params - 1 for k, m in pairs)
        extra_body = max(k.non_embedding_params / m.non_embedding_params - 1 for k, m in pairs)
        lines.append(
            f"T3KAN >= T3MLP in {wins} of {len(pairs)} cell groups (T3KAN has at most "
            f"{100 * extra:.1f}% more parameters than T3MLP, {100 * extra_body:.1f}% more "
            "outside the embeddings)."
        )
    attention = [c for (m, _), c in done.items() if m == "transformer"]
    if attention:
        n = sum(c.test("accuracy") >= TARGET for c in attention)
        lines.append(
            "Zoology's reference (attention solves MQAR at every width here): our "
            f"Transformer is at >= 99% in {n} of {len(attention)} cell groups."
        )
    return [f"- {line}" for line in lines]


def setup_text(study: Study, config: config_dict.ConfigDict) -> str:
    """The data, model and training settings shared by the cells (read from a cell's config)."""
    d, m, t = config.data, config.model, config.train
    if study.name == "mqar":
        data = (
            f"MQAR, T = {d.input_seq_len}, vocabulary {d.vocab_size}, power_a {d.power_a}, "
            f"{d.samples} rows (train/val/test {d.train_fraction}/{d.val_fraction}/"
            f"{d.test_fraction}); accuracy counts the answer positions only."
        )
    else:
        data = (
            f"sequences, vocabulary {d.vocab_size} (rows of {d.vocab_size // d.seq_step}), up "
            f"to {d.components_number} components, descending {d.allow_descending}, "
            f"{d.samples} rows; extrapolation rows up to {d.extrapolation_factor}x longer."
        )
    return "\n".join(
        [
            f"- Data: {data}",
            f"- Models: depth {m.depth}, {m.num_heads} head(s), TTT mini-batch "
            f"{m.mini_batch_size}, inner base lr {m.base_lr or 'default'}, KAN G={m.kan_grid_size} "
            f"p={m.kan_degree}.",
            f"- Training: {t.steps} steps, batch {t.batch_size}, AdamW lr {t.learning_rate} "
            f"(warmup {t.warmup_steps}, cosine to x{t.end_lr_ratio}), weight decay "
            f"{t.weight_decay}, clip {t.grad_clip}, eval every {t.eval_every}, patience "
            f"{t.patience} (0 = off). Test metrics are those of the best-validation-loss "
            "parameters.",
        ]
    )


def write_report(
    study: Study, out_dir: Path, results: Path, steps: int | None, command: str, session_s: float
) -> list[Path]:
    """Writes the Markdown report of every cell found under out_dir, and the curve PNGs."""
    cells = [load_cell(study, c, out_dir, steps) for c in study.grid]
    results.parent.mkdir(parents=True, exist_ok=True)
    config, _ = cell_config(study, study.grid[0], steps)
    devices = sorted({c.record["device"] for c in cells if c.record.get("device")})
    total = sum(c.results["wall_time_s"] for c in cells if c.results)
    metric = {"accuracy": "answer accuracy", "determined_accuracy": "determined accuracy"}
    parts = [
        f"# {study.title}",
        "",
        setup_text(study, config),
        "",
        f"Devices: {', '.join(devices) or '–'}. Training time of all finished cells: "
        f"{total / 60:.1f} min (the last session of the study took {session_s / 60:.1f} min).",
        "",
        f"## Test {metric[study.headline]} (%)",
        "",
        summary_table(study, cells),
        "",
    ]
    if study.name == "mqar":
        parts += [*mqar_findings(cells), ""]
    parts += [
        "## Cells",
        "",
        cells_table(study, cells),
        "",
        "## Learning curves",
        "",
        "Validation (solid) and training (dashed) curves of each cell group's models.",
        "",
    ]
    paths = [results]
    for group in dict.fromkeys(group_of(c) for c in study.grid):
        found = [c for c in cells if group_of(c.cell) == group and c.rows]
        if found:
            png = results.with_name(f"{results.stem}_{group}.png")
            summaries = compare.load_summaries(
                [out_dir / c.cell["name"] for c in found], [c.model for c in found]
            )
            compare.plot_curves(summaries, png)
            parts += [f"### {group}", "", f"![{group}]({png.name})", ""]
            paths.append(png)
    parts += [
        "## Commands",
        "",
        "```",
        command,
        "```",
        "",
        "One cell alone (same workdir):",
        "",
        "```",
    ]
    for c in study.grid:
        parts.append(cell_command(study, c, out_dir, cell_config(study, c, steps)[1]))
    results.write_text("\n".join([*parts, "```"]) + "\n")
    return paths
