"""An evaluation report as text tables, DIR/eval.json (one entry per evaluated set) and PNGs."""

import json
import math
import os
import re
from pathlib import Path

METRIC_NAMES = ("loss", "accuracy", "determined_accuracy", "last_accuracy")
_SHORT = {"loss": "loss", "accuracy": "acc", "determined_accuracy": "det_acc",
          "last_accuracy": "last_acc"}  # fmt: skip
MAX_TABLE_ROWS = 32


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(rows: list[dict], key: str) -> str:
    """A text table of metric rows: `key`, token count, then the metrics."""
    header = [key, "tokens", *(_SHORT[m] for m in METRIC_NAMES)]
    cells = [[_fmt(r[key]), _fmt(r["tokens"]), *(_fmt(r[m]) for m in METRIC_NAMES)] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
        for line in [header, *cells]
    )


def binned(by_position: list[dict], max_rows: int = MAX_TABLE_ROWS) -> tuple[list[dict], int]:
    """Per-position rows merged into at most `max_rows` bins (token-weighted); and the bin size."""
    size = max(1, math.ceil(len(by_position) / max_rows))
    out = []
    for start in range(0, len(by_position), size):
        group = by_position[start : start + size]
        merged = {"position": f"{group[0]['position']}-{group[-1]['position']}" if size > 1
                  else group[0]["position"]}  # fmt: skip
        for count, names in (
            ("tokens", ("loss", "accuracy")),
            ("determined_tokens", ("determined_accuracy",)),
            ("last_tokens", ("last_accuracy",)),
        ):
            total = sum(r[count] for r in group)
            merged[count] = total
            for m in names:
                merged[m] = (
                    sum(r[m] * r[count] for r in group if r[m] is not None) / total
                    if total
                    else None
                )
        out.append(merged)
    return out, size


def format_report(report: dict) -> str:
    """The printed summary: overall, by components, by position (binned when long)."""
    lines = [
        f"{report['model']} {report['workdir']} on {report['set']}: {report['rows']} rows of "
        f"{report['row_length']} tokens (training rows: {report['train_row_length']})",
        "",
        table([{"set": "all", **report["overall"]}], "set"),
    ]
    if "beyond_training" in report:
        lines += [
            "",
            table(
                [
                    {"positions": f"< {report['train_row_length']}", **report["within_training"]},
                    {"positions": f">= {report['train_row_length']}", **report["beyond_training"]},
                ],
                "positions",
            ),
        ]
    if report["by_components"]:
        lines += ["", "by number of components:", table(report["by_components"], "components")]
    rows, size = binned(report["by_position"])
    lines += ["", f"by target position (bins of {size}):", table(rows, "position")]
    return "\n".join(lines)


def write_json(workdir: str | os.PathLike, report: dict) -> Path:
    """Adds (or replaces) the report's entry, keyed by its set, in DIR/eval.json."""
    path = Path(workdir) / "eval.json"
    reports = json.loads(path.read_text()) if path.exists() else {}
    reports[report["set"]] = report
    path.write_text(json.dumps(reports, indent=2) + "\n")
    return path


def slug(name: str) -> str:
    """A file-name-safe version of a set name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")


def plot_positions(report: dict, path: str | os.PathLike) -> None:
    """Accuracies and loss against target position; the training row length marked if exceeded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["by_position"]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6))
    for m in METRIC_NAMES[1:]:
        pts = [(r["position"], r[m]) for r in rows if r[m] is not None]
        if pts:
            ax_acc.plot(*zip(*pts, strict=True), ".-", label=m, markersize=3)
    pts = [(r["position"], r["loss"]) for r in rows if r["loss"] is not None]
    if pts:
        ax_loss.plot(*zip(*pts, strict=True), ".-", color="C3", markersize=3)
    train_length = report["train_row_length"]
    for ax in (ax_acc, ax_loss):
        if report["row_length"] > train_length:
            ax.axvline(train_length - 0.5, color="k", ls="--", lw=1)
            ax.axvspan(train_length - 0.5, report["row_length"], color="0.9", zorder=0)
        ax.set_xlabel("target position")
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_title("accuracy" + (" (shaded: beyond training length)"
                                   if report["row_length"] > train_length else ""))  # fmt: skip
    ax_acc.legend(fontsize=8)
    ax_loss.set_title("loss")
    fig.suptitle(f"{report['model']}: {report['set']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_components(report: dict, path: str | os.PathLike) -> None:
    """Bars of each accuracy per number of components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["by_components"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = METRIC_NAMES[1:]
    width = 0.8 / len(names)
    for i, m in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [r[m] or 0.0 for r in rows], width, label=m)
    ax.set_xticks(range(len(rows)), [f"C={r['components']}" for r in rows])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{report['model']}: {report['set']} by components", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(workdir: str | os.PathLike, report: dict) -> list[Path]:
    """Writes eval.json and the PNGs; returns their paths."""
    workdir = Path(workdir)
    stem = f"eval_{slug(report['set'])}"
    paths = [write_json(workdir, report), workdir / f"{stem}_position.png"]
    plot_positions(report, paths[1])
    if report["by_components"]:
        paths.append(workdir / f"{stem}_components.png")
        plot_components(report, paths[-1])
    return paths
