"""Trains a model: `python -m experiments.train --config=configs/t3kan.py [--workdir=DIR]`.

Any config field can be overridden, e.g. `--config.model.inner=mlp --config.train.steps=500`.
The default workdir is runs/<config name>-s<seed> (plus a hash of model/data overrides), so the
same command resumes an interrupted run and reports a finished one.
"""

import logging
import signal
import sys

from absl import app, flags
from ml_collections import config_flags

from t3kan_jax.train import default_workdir, sharding, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/t3kan.py", "Training config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: under runs/).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save step at INFO
    sharding.maybe_initialize_distributed()
    config = _CONFIG.value
    workdir = _WORKDIR.value or default_workdir(
        config, config_flags.get_override_values(flags.FLAGS["config"])
    )
    logging.info("workdir: %s", workdir)
    results = train_and_evaluate(config, workdir)
    if results["status"] == "interrupted":
        sys.exit(128 + signal.Signals[results["signal"]].value)


if __name__ == "__main__":
    app.run(main)
