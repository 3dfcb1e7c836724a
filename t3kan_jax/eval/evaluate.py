"""Evaluation of a trained run on its test split, a freshly generated set or longer rows."""

import logging

import jax
from ml_collections import config_dict

from t3kan_jax import data as data_lib
from t3kan_jax import models
from t3kan_jax.data.sequences import Sequences
from t3kan_jax.eval.breakdown import Breakdown, token_scores
from t3kan_jax.eval.restore import Run, with_max_len
from t3kan_jax.train import workdir as workdir_lib

log = logging.getLogger(__name__)

# What an evaluation may override: the data (a fresh set) and the evaluation batch size.
OVERRIDABLE = ("data.", "train.eval_batch_size")


def make_score_fn(model):
    """Jitted `(params, inputs_BT, targets_BT, mask_BT) -> (ce_BT, correct_BT)`."""

    def score(params, inputs_BT, targets_BT, mask_BT):
        logits_BTV = model.apply(params, inputs_BT, mask_BT=mask_BT)
        return token_scores(logits_BTV, targets_BT)

    return jax.jit(score)


def evaluate_rows(model, params, rows: Sequences, batch_size: int, pad_id: int) -> Breakdown:
    """The breakdown of the model's metrics over every row of `rows`."""
    score = make_score_fn(model)
    result = Breakdown()
    for batch in data_lib.eval_batches(rows, batch_size, pad_id):
        ce_BT, correct_BT = score(params, batch["inputs"], batch["targets"], batch["input_mask"])
        result.add(batch, *jax.device_get((ce_BT, correct_BT)))
    return result


def apply_overrides(config: config_dict.ConfigDict, overrides: dict) -> config_dict.ConfigDict:
    """A copy of `config` with `{"data.seed": 3, ...}` applied (data.* and eval batch size only)."""
    bad = sorted(k for k in overrides if not k.startswith(OVERRIDABLE))
    if bad:
        raise ValueError(
            f"cannot override {bad} in an evaluation: only --config.data.* (a fresh evaluation "
            "set) and --config.train.eval_batch_size; the model and its training are the run's"
        )
    config = config_dict.ConfigDict(config.to_dict())
    config.update_from_flattened_dict(dict(overrides))
    return config


def set_name(overrides: dict, extrapolate: bool) -> str:
    """The key of an evaluation in eval.json: test, test[data.x=...] or extrapolation[...]."""
    data_overrides = {k: v for k, v in sorted(overrides.items()) if k.startswith("data.")}
    name = "extrapolation" if extrapolate else "test"
    if data_overrides:
        name += "[" + ",".join(f"{k}={v}" for k, v in data_overrides.items()) + "]"
    return name


def evaluation_rows(run_config, config, extrapolate: bool) -> Sequences:
    """The rows to evaluate on: the test split of `config.data`, or its extrapolation split."""
    if not extrapolate:
        if any(k != "dir" and config.data[k] != run_config.data[k] for k in config.data):
            if config.data.seed == run_config.data.seed:
                log.warning(
                    "the evaluation data differs from the run's but keeps data.seed=%d: its test "
                    "rows may repeat training rows; set --config.data.seed for a fresh set",
                    config.data.seed,
                )
        return data_lib.make_splits(config.data)["test"]
    if data_lib.task_of(config.data) != "sequences":
        raise ValueError(
            f"--extrapolate needs the 'sequences' task, the run's data.task is {config.data.task!r}"
        )
    if config.data.get("extrapolation_factor", 0) < 2:
        raise ValueError(
            f"--extrapolate: data.extrapolation_factor={config.data.get('extrapolation_factor', 0)}"
            "; pass e.g. --config.data.extrapolation_factor=2 (rows twice as long, steps "
            "1..seq_step/2)"
        )
    return data_lib.extrapolation_split(config.data)


def evaluate_run(run: Run, overrides: dict | None = None, extrapolate: bool = False) -> dict:
    """Evaluates `run` and returns the report (JSON-ready dict) of eval.json.

    The report holds `overall`, `by_components` and `by_position` metrics (each with token
    counts), and, when the rows are longer than the training rows, `within_training` and
    `beyond_training` (target positions below / from the training row length).
    """
    overrides = dict(overrides or {})
    config = apply_overrides(run.config, overrides)
    rows = evaluation_rows(run.config, config, extrapolate)
    length = rows.inputs.shape[1]
    model_cfg = with_max_len(run.model_cfg, length)
    workdir_lib.check_model_fits_data(model_cfg, config.data, length)
    model = run.model if model_cfg == run.model_cfg else models.build_model(model_cfg)
    result = evaluate_rows(
        model, run.params, rows, config.train.eval_batch_size, config.data.pad_id
    )
    train_length = data_lib.row_length(run.config.data)
    report = {
        "set": set_name(overrides, extrapolate),
        "workdir": str(run.workdir),
        "model": models.model_name(run.model_cfg),
        "overrides": overrides,
        "rows": len(rows),
        "row_length": length,
        "train_row_length": train_length,
        "overall": result.overall(),
        "by_components": result.by_components(),
        "by_position": result.by_position(),
    }
    if length > train_length:
        report["within_training"] = result.span(0, train_length)
        report["beyond_training"] = result.span(train_length)
    return report
