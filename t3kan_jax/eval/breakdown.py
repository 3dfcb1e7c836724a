"""The token metrics of `t3kan_jax.train.metrics`, broken down by position and by components.

Position `t` is a target column: `targets[t]` is predicted from `inputs[:t + 1]`. Sums accumulate
in float64 on the host, so the result does not depend on the batch size.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from t3kan_jax.train import metrics

# The sums behind every ratio metric (train.metrics.RATIOS) and their token masks.
SUMS = ("loss_sum", "tokens", "correct", "determined_correct", "determined_tokens",
        "last_correct", "last_tokens")  # fmt: skip
COUNTS = ("tokens", "determined_tokens", "last_tokens")


def token_scores(logits_BTV: jax.Array, targets_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-token cross-entropy and argmax correctness (float32 `[B, T]` each)."""
    ce_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, targets_BT)
    correct_BT = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
    return ce_BT, correct_BT


def token_sums(batch: dict, ce_BT: np.ndarray, correct_BT: np.ndarray) -> dict[str, np.ndarray]:
    """The `[B, T]` terms of each of SUMS (float64), from the batch's masks."""
    ce, correct = np.asarray(ce_BT, np.float64), np.asarray(correct_BT, np.float64)
    mask, det, last = (
        np.asarray(batch[k], np.float64) for k in ("mask", "determined_mask", "last_mask")
    )
    return {
        "loss_sum": ce * mask,
        "tokens": mask,
        "correct": correct * mask,
        "determined_correct": correct * det,
        "determined_tokens": det,
        "last_correct": correct * last,
        "last_tokens": last,
    }


def summarize(sums: dict[str, float]) -> dict:
    """Token counts and ratio metrics (None where a mask selected nothing)."""
    return {**{k: round(sums.get(k, 0.0)) for k in COUNTS}, **metrics.ratios(sums)}


class Breakdown:
    """Metric sums per target position and per number of components of the row."""

    def __init__(self):
        self.position: dict[str, np.ndarray] = {}  # name -> [T] sums
        self.components: dict[int, dict[str, float]] = {}  # C -> name -> sum

    def add(self, batch: dict, ce_BT, correct_BT) -> None:
        """Adds one batch (rows whose masks are all zero add nothing)."""
        terms = token_sums(batch, ce_BT, correct_BT)
        length = terms["tokens"].shape[1]
        if self.position and len(self.position["tokens"]) != length:
            raise ValueError(
                f"batch rows have {length} columns, earlier ones {len(self.position['tokens'])}"
            )
        for k, v_BT in terms.items():
            self.position[k] = self.position.get(k, np.zeros(length)) + v_BT.sum(0)
        components_B = np.asarray(batch["components"])
        for c in np.unique(components_B):
            rows = components_B == c
            bucket = self.components.setdefault(int(c), dict.fromkeys(SUMS, 0.0))
            for k, v_BT in terms.items():
                bucket[k] += float(v_BT[rows].sum())

    @property
    def length(self) -> int:
        """Columns of the rows added so far."""
        return len(self.position["tokens"]) if self.position else 0

    def span(self, start: int = 0, stop: int | None = None) -> dict:
        """Metrics over target positions [start, stop)."""
        return summarize({k: float(v[start:stop].sum()) for k, v in self.position.items()})

    def overall(self) -> dict:
        """Metrics over every token."""
        return self.span()

    def by_position(self, bin_size: int = 1) -> list[dict]:
        """Metrics per bin of `bin_size` consecutive positions, `position` = the bin's first."""
        if bin_size < 1:
            raise ValueError(f"bin_size={bin_size}: must be >= 1")
        return [
            {"position": s, **self.span(s, s + bin_size)} for s in range(0, self.length, bin_size)
        ]

    def by_components(self) -> list[dict]:
        """Metrics per number of components C (rows of the sequence task; C = 0 elsewhere)."""
        return [
            {"components": c, **summarize(sums)}
            for c, sums in sorted(self.components.items())
            if sums["tokens"] > 0
        ]
