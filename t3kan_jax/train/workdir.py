"""A run's workdir: its default name, config.json (checked on resume) and results.json."""

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import jax
from ml_collections import config_dict

from t3kan_jax.models import ModelConfig

log = logging.getLogger(__name__)

# A run is identified by these config fields: a workdir refuses a config that differs in them.
# Every other field (train.*, mesh.*, name, init_from) may change when a run is resumed.
IDENTITY = ("seed", "data", "model")
# Fields under IDENTITY that choose an implementation of the same function: they may change too.
IMPLEMENTATION = ("model.ttt_impl",)
ABSENT = "<absent>"
# What a model field missing from an older config.json stands for: its ModelConfig default.
_MODEL_DEFAULTS = {f"model.{f.name}": f.default for f in dataclasses.fields(ModelConfig)}


def _identifies(key: str) -> bool:
    return key.split(".")[0] in IDENTITY and key not in IMPLEMENTATION


def _stored(flat: dict, key: str):
    """`flat[key]`; a model field missing from an older config.json reads as its default."""
    return flat[key] if key in flat else _MODEL_DEFAULTS.get(key, ABSENT)


def default_workdir(config: config_dict.ConfigDict, overrides: dict | None = None) -> str:
    """runs/<name>-s<seed>, plus a hash of any model/data overrides (they make another run)."""
    name = f"{config.name}-s{config.seed}"
    changed = {k: v for k, v in (overrides or {}).items() if _identifies(k)}
    if changed:
        blob = json.dumps(sorted(changed.items()), default=str).encode()
        name += "-" + hashlib.sha256(blob).hexdigest()[:8]
    return str(Path("runs") / name)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_json(config: config_dict.ConfigDict) -> dict:
    """The config as plain JSON values (references resolved, tuples as lists)."""
    return json.loads(json.dumps(config.to_dict()))


def prepare(config: config_dict.ConfigDict, workdir: Path) -> None:
    """Creates the workdir or checks that its run is this one; writes config.json.

    Raises ValueError if the workdir holds a run whose seed, data or model differ.
    """
    new = config_json(config)
    path = workdir / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        flat_old, flat_new = flatten(old), flatten(new)
        diffs = {
            k: (_stored(flat_old, k), flat_new.get(k, ABSENT))
            for k in sorted(flat_old.keys() | flat_new.keys())
            if _stored(flat_old, k) != flat_new.get(k, ABSENT)
        }
        bad = {k: v for k, v in diffs.items() if _identifies(k)}
        if bad:
            lines = "\n".join(
                f"  {k}: {a!r} in the workdir, {b!r} now" for k, (a, b) in bad.items()
            )
            raise ValueError(
                f"{workdir} holds a run with an incompatible config (a run is identified by its "
                f"seed, data and model):\n{lines}\nPass another --workdir, or delete {workdir}."
            )
        if diffs:
            log.warning(
                "resuming %s with changed fields: %s",
                workdir,
                ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diffs.items()),
            )
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")


def read_results(workdir: Path) -> dict | None:
    path = workdir / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def is_finished(results: dict, config: config_dict.ConfigDict) -> bool:
    """Finished unless it stopped at train.steps and train.steps has since been raised."""
    return results["stop_reason"] != "max_steps" or results["step"] >= config.train.steps


def summary(results: dict) -> str:
    """A few lines for the log: test metrics, stop reason, steps, time."""
    test = ", ".join(
        f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in results["test"].items()
    )
    return (
        f"test: {test}\n"
        f"stopped by {results['stop_reason']} at step {results['step']} "
        f"(best val loss {results['best_val_loss']:.4f} at step {results['best_step']}); "
        f"{results['model']}, {results['num_params']} params, {results['wall_time_s']:.1f} s"
    )


def check_model_fits_data(model_cfg, data: config_dict.ConfigDict, seq_len: int) -> None:
    """The model must embed every token id and every position of the data."""
    if model_cfg.vocab_size < data.vocab_size:
        raise ValueError(
            f"model.vocab_size={model_cfg.vocab_size} must be >= data.vocab_size={data.vocab_size}"
        )
    if model_cfg.max_len < seq_len:
        raise ValueError(
            f"model.max_len={model_cfg.max_len} must be >= the data's row length {seq_len} "
            f"(data.vocab_size // data.seq_step)"
        )


def check_init_from_layout(init_from: str, scan_layers: bool) -> None:
    """ValueError if `config.init_from`'s run keeps its blocks in the other parameter layout."""
    path = Path(init_from)
    source = (path.parent if path.name in ("best", "checkpoints") else path) / "config.json"
    if not source.exists():
        return
    theirs = json.loads(source.read_text()).get("model", {}).get("scan_layers", False)
    if theirs != scan_layers:
        raise ValueError(
            f"config.init_from={init_from!r} holds a run with model.scan_layers={theirs}, this "
            f"run has model.scan_layers={scan_layers}: the parameter layouts differ. Set "
            f"--config.model.scan_layers={theirs}, or convert its parameters with "
            "t3kan_jax.models.blocks.stack_block_params / unstack_block_params."
        )
