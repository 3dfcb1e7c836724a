"""A comparison of several runs: a Markdown table, the settings that differ, overlaid curves.

Reads each workdir's config.json, results.json (absent while a run is unfinished),
metrics.jsonl and, if present, eval.json (experiments.evaluate).
"""

import dataclasses
import json
import os
from pathlib import Path

from t3kan_jax import models
from t3kan_jax.eval.restore import load_config
from t3kan_jax.train import metrics
from t3kan_jax.train.workdir import flatten, read_results

CURVE_METRICS = ("loss", "accuracy", "determined_accuracy", "last_accuracy")
# (header, test metric, lower is better)
TEST_COLUMNS = (
    ("Test loss", "loss", True),
    ("Test acc. (%)", "accuracy", False),
    ("Determined acc. (%)", "determined_accuracy", False),
    ("Last acc. (%)", "last_accuracy", False),
)


@dataclasses.dataclass
class RunSummary:
    """What the comparison shows of one run."""

    label: str
    workdir: Path
    config: dict
    model: str
    num_params: int
    results: dict | None
    rows: list[dict]
    evals: dict

    @property
    def step(self) -> int:
        """Steps trained so far."""
        if self.results is not None:
            return int(self.results["step"])
        return max((int(r["step"]) for r in self.rows), default=0)

    def extrapolation(self) -> dict | None:
        """The metrics beyond the training length of its first extrapolation evaluation."""
        for name, report in sorted(self.evals.items()):
            if name.startswith("extrapolation") and "beyond_training" in report:
                return report["beyond_training"]
        return None


def default_labels(workdirs: list[Path]) -> list[str]:
    """Each directory's shortest trailing path that no other directory shares."""
    parts = [Path(w).absolute().parts for w in workdirs]
    if len(set(parts)) < len(parts):
        raise ValueError(f"the same workdir is given twice: {[str(w) for w in workdirs]}")
    labels = []
    for i, p in enumerate(parts):
        depth = 1
        while any(q[-depth:] == p[-depth:] for j, q in enumerate(parts) if j != i):
            depth += 1
        labels.append("/".join(p[-depth:]))
    return labels


def load_summary(workdir: str | os.PathLike, label: str) -> RunSummary:
    """Reads one run directory."""
    workdir = Path(workdir)
    config = load_config(workdir).to_dict()
    model_cfg = models.ModelConfig.from_config(config["model"])
    results = read_results(workdir)
    if results is not None and results.get("status") != "finished":
        results = None
    num_params = (
        results["num_params"]
        if results is not None
        else models.count_params(models.abstract_params(model_cfg))
    )
    eval_path = workdir / "eval.json"
    return RunSummary(
        label=label,
        workdir=workdir,
        config=config,
        model=models.model_name(model_cfg),
        num_params=int(num_params),
        results=results,
        rows=metrics.read_rows(workdir / "metrics.jsonl"),
        evals=json.loads(eval_path.read_text()) if eval_path.exists() else {},
    )


def load_summaries(workdirs, labels: list[str] | None = None) -> list[RunSummary]:
    """Summaries of the given run directories, labelled by `labels` or their names."""
    workdirs = [Path(w) for w in workdirs]
    if not workdirs:
        raise ValueError("compare needs at least one run directory")
    if labels is not None and len(labels) != len(workdirs):
        raise ValueError(f"{len(labels)} labels for {len(workdirs)} run directories")
    labels = labels or default_labels(workdirs)
    return [load_summary(w, lab) for w, lab in zip(workdirs, labels, strict=True)]


def _params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _value(value, name: str) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if name == "loss" else f"{100 * value:.2f}"


def _bold_best(cells: list[str], values: list, lower: bool) -> list[str]:
    """Bolds the best of several runs' values (every tie)."""
    known = [v for v in values if v is not None]
    if len(values) < 2 or not known:
        return cells
    best = min(known) if lower else max(known)
    return [f"**{c}**" if v == best else c for c, v in zip(cells, values, strict=True)]


def markdown_table(runs: list[RunSummary]) -> str:
    """One row per run: model, size, training, and test metrics (best value bold)."""
    header = ["Run", "Model", "Params", "Steps", "Stopped by", "Best val loss"]
    columns = [
        [r.label for r in runs],
        [r.model for r in runs],
        [_params(r.num_params) for r in runs],
        [str(r.step) for r in runs],
        [r.results["stop_reason"] if r.results else "unfinished" for r in runs],
        [_value(r.results["best_val_loss"] if r.results else None, "loss") for r in runs],
    ]
    for title, name, lower in TEST_COLUMNS:
        values = [r.results["test"][name] if r.results else None for r in runs]
        header.append(title)
        columns.append(_bold_best([_value(v, name) for v in values], values, lower))
    extrap = [r.extrapolation() for r in runs]
    if any(extrap):
        values = [e["accuracy"] if e else None for e in extrap]
        header.append("Acc. beyond train length (%)")
        columns.append(_bold_best([_value(v, "accuracy") for v in values], values, False))
    header.append("Train time")
    columns.append([_duration(r.results["wall_time_s"]) if r.results else "–" for r in runs])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*columns, strict=True)]
    return "\n".join(lines)


def differing_fields(runs: list[RunSummary]) -> list[tuple[str, list]]:
    """The config fields whose values are not the same in every run (name excluded)."""
    flat = [flatten(r.config) for r in runs]
    out = []
    for k in sorted(set().union(*flat) - {"name"}):
        values = [f.get(k) for f in flat]
        if len({json.dumps(v) for v in values}) > 1:
            out.append((k, values))
    return out


def settings_table(runs: list[RunSummary]) -> str:
    """Markdown table of the differing settings, one column per run ('' if none differ)."""
    fields = differing_fields(runs)
    if not fields:
        return ""
    lines = ["| Setting | " + " | ".join(r.label for r in runs) + " |",
             "|" + "|".join(["---"] * (len(runs) + 1)) + "|"]  # fmt: skip
    lines += [f"| `{k}` | " + " | ".join(str(v) for v in values) + " |" for k, values in fields]
    return "\n".join(lines)


def plot_curves(runs: list[RunSummary], path: str | os.PathLike) -> None:
    """Validation (solid) and training (dashed) curves of every run, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.4))
    for i, run in enumerate(runs):
        for ax, name in zip(axes, CURVE_METRICS, strict=True):
            for split, style, alpha in (("val", "o-", 1.0), ("train", "--", 0.45)):
                pts = [(r["step"], r[name]) for r in run.rows
                       if r["split"] == split and r.get(name) is not None]  # fmt: skip
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, color=f"C{i % 10}", alpha=alpha,
                            markersize=3, label=run.label if split == "val" else None)  # fmt: skip
    for ax, name in zip(axes, CURVE_METRICS, strict=True):
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        losses = [r["loss"] for run in runs for r in run.rows if r.get("loss")]
        if name == "loss" and losses and max(losses) > 3 * min(losses):
            ax.set_yscale("log")
    axes[0].legend(fontsize=8, title="val solid, train dashed", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(runs: list[RunSummary], out: str | os.PathLike, title: str) -> list[Path]:
    """Writes the Markdown report to `out` and its curves beside it; returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "_curves.png")
    plot_curves(runs, png)
    parts = [
        f"# {title}",
        "",
        markdown_table(runs),
        "",
        "Test metrics are those of each run's best-validation parameters; accuracies count "
        "non-pad targets, *determined* ones only targets that the prefix fixes, *last* the last "
        "real target of each row. Bold: best of the runs.",
        "",
        f"![learning curves]({png.name})",
    ]
    settings = settings_table(runs)
    if settings:
        parts += ["", "## Settings that differ", "", settings]
    out.write_text("\n".join(parts) + "\n")
    return [out, png]
