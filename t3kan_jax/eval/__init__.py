"""Evaluation of trained runs: metrics by position and components, reports, run comparisons."""

from t3kan_jax.eval.breakdown import Breakdown, token_scores, token_sums
from t3kan_jax.eval.compare import RunSummary, load_summaries, markdown_table, write_comparison
from t3kan_jax.eval.evaluate import apply_overrides, evaluate_rows, evaluate_run, set_name
from t3kan_jax.eval.report import format_report, write_outputs
from t3kan_jax.eval.restore import Run, load_config, load_run, restore_params, with_max_len

__all__ = [
    "Breakdown",
    "Run",
    "RunSummary",
    "apply_overrides",
    "evaluate_rows",
    "evaluate_run",
    "format_report",
    "load_config",
    "load_run",
    "load_summaries",
    "markdown_table",
    "restore_params",
    "set_name",
    "token_scores",
    "token_sums",
    "with_max_len",
    "write_comparison",
    "write_outputs",
]
