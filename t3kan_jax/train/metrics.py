"""Token metrics of the sequence task and their writers: JSON lines, TensorBoard, PNG curves.

A metrics row is a dict with `step`, `split` (train / val / test) and the metric names
`loss`, `accuracy`, `determined_accuracy`, `last_accuracy`; train rows add `grad_norm`,
`learning_rate` and `tokens_per_second`.
"""

import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

# (numerator, denominator) sums behind each ratio metric.
RATIOS = {
    "loss": ("loss_sum", "tokens"),
    "accuracy": ("correct", "tokens"),
    "determined_accuracy": ("determined_correct", "determined_tokens"),
    "last_accuracy": ("last_correct", "last_tokens"),
}
METRICS = (*RATIOS, "grad_norm", "learning_rate", "tokens_per_second")


def token_sums(logits_BTV: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Sums over the batch of cross-entropy and of correct predictions, under each mask."""
    ce_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch["targets"])
    correct_BT = (jnp.argmax(logits_BTV, axis=-1) == batch["targets"]).astype(jnp.float32)
    mask, det, last = batch["mask"], batch["determined_mask"], batch["last_mask"]
    return {
        "loss_sum": jnp.sum(ce_BT * mask),
        "tokens": jnp.sum(mask),
        "correct": jnp.sum(correct_BT * mask),
        "determined_correct": jnp.sum(correct_BT * det),
        "determined_tokens": jnp.sum(det),
        "last_correct": jnp.sum(correct_BT * last),
        "last_tokens": jnp.sum(last),
    }


def masked_loss(logits_BTV: jax.Array, batch: dict[str, jax.Array]):
    """Mean cross-entropy over non-pad targets, and the sums behind the metrics."""
    sums = token_sums(logits_BTV, batch)
    return sums["loss_sum"] / jnp.maximum(sums["tokens"], 1.0), sums


def add_sums(total: dict[str, float], sums: dict) -> dict[str, float]:
    """Accumulates host-side in float64 so that the order of additions does not matter to 1e-6."""
    out = dict(total)
    for k, v in sums.items():
        out[k] = out.get(k, 0.0) + float(np.float64(v))
    return out


def ratios(total: dict[str, float]) -> dict[str, float | None]:
    """The ratio metrics of accumulated sums (None where a mask selected nothing)."""
    return {
        name: (total.get(num, 0.0) / total[den] if total.get(den, 0.0) > 0 else None)
        for name, (num, den) in RATIOS.items()
    }


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a metrics.jsonl file ([] if there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
    """Appends rows to DIR/metrics.jsonl and to TensorBoard event files under DIR/tensorboard."""

    def __init__(self, workdir: str | os.PathLike, resume_step: int, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        # Rows past the restored step came from an interrupted run and are recomputed.
        kept = [
            r for r in read_rows(self.path) if r["split"] != "test" and r["step"] <= resume_step
        ]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(
            str(Path(workdir) / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def write(self, row: dict) -> None:
        """Writes one row (values None or non-finite are kept in JSON, skipped in TensorBoard)."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for name, value in row.items():
            if name in METRICS and value is not None and math.isfinite(value):
                self._tb.add_scalar(f"{row['split']}/{name}", value, row["step"])
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(rows: list[dict], path: str | os.PathLike) -> None:
    """PNG of loss and accuracies against step, train and val curves, test as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("loss", "accuracy", "determined_accuracy", "last_accuracy")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    for ax, name in zip(axes, names, strict=True):
        for split, style in (("train", "-"), ("val", "o-"), ("test", "*")):
            pts = [
                (r["step"], r[name])
                for r in rows
                if r["split"] == split and r.get(name) is not None
            ]
            if pts:
                steps, values = zip(*pts, strict=True)
                ax.plot(steps, values, style, label=split, markersize=4 if split != "test" else 12)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
