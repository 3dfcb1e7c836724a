"""A trained run, read back from its workdir: config.json, the model and its parameters."""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
from ml_collections import config_dict

from t3kan_jax import models
from t3kan_jax.train import checkpoint
from t3kan_jax.train import sharding as sharding_lib
from t3kan_jax.train.state import with_shardings


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's config, model config, model and parameters."""

    workdir: Path
    config: config_dict.ConfigDict
    model_cfg: models.ModelConfig
    model: Any
    params: Any


def load_config(workdir: str | os.PathLike) -> config_dict.ConfigDict:
    """The config a run was trained with (DIR/config.json, written by experiments.train)."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise ValueError(
            f"workdir={str(workdir)!r}: no config.json there; is it a run directory written by "
            "experiments.train?"
        )
    return config_dict.ConfigDict(json.loads(path.read_text()))


def single_device_target(abstract_params):
    """ShapeDtypeStructs of `abstract_params` replicated on the first device (a restore target)."""
    mesh = sharding_lib.make_mesh(config_dict.ConfigDict({"data": 1, "fsdp": 1}))
    return with_shardings(abstract_params, sharding_lib.tree_shardings(abstract_params, mesh))


def restore_params(workdir: str | os.PathLike, model_cfg: models.ModelConfig):
    """The run's best parameters (else its latest state's), on one device.

    Raises ValueError if the workdir holds no checkpoint.
    """
    target = single_device_target(models.abstract_params(model_cfg))
    try:
        return checkpoint.load_params(workdir, target)
    except ValueError as e:
        raise ValueError(
            f"workdir={str(workdir)!r}: no checkpoint in its best/ or checkpoints/ folder; train "
            "it first (python -m experiments.train --workdir=...)"
        ) from e


def load_run(workdir: str | os.PathLike) -> Run:
    """The model of a workdir's config.json with its trained parameters."""
    config = load_config(workdir)
    model_cfg = models.ModelConfig.from_config(config.model)
    params = restore_params(workdir, model_cfg)
    return Run(Path(workdir), config, model_cfg, models.build_model(model_cfg), params)


def with_max_len(model_cfg: models.ModelConfig, length: int) -> models.ModelConfig:
    """`model_cfg` accepting sequences of `length` tokens, with the same parameters.

    Every model here encodes positions by RoPE alone, so `max_len` only bounds the input length;
    raising it is refused if it would change any parameter shape.
    """
    if length <= model_cfg.max_len:
        return model_cfg
    longer = dataclasses.replace(model_cfg, max_len=length)
    shapes = [jax.tree.map(lambda a: (a.shape, a.dtype), models.abstract_params(c)) for c in (
        model_cfg, longer)]  # fmt: skip
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"model.max_len={model_cfg.max_len}: the parameters depend on it, so the model cannot "
            f"run on {length} tokens"
        )
    return longer
