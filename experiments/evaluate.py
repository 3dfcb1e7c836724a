"""Evaluates a trained run: `python -m experiments.evaluate --workdir=DIR`.

Reports loss, accuracy, determined accuracy and last-position accuracy, overall, by number of
components and by target position, on the run's test split; `--config.data.FIELD=VALUE`
evaluates on a freshly generated set instead (e.g. `--config.data.seed=7`), and `--extrapolate`
on rows longer than any training row (`--config.data.extrapolation_factor=2`: twice as long).
Prints the tables and writes DIR/eval.json (one entry per evaluated set) and DIR/eval_*.png.
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from configs import base
from t3kan_jax import eval as eval_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by experiments.train.")
_CONFIG = config_flags.DEFINE_config_dict(
    "config", base.get_config(), "Overrides of the run's data (a fresh evaluation set)."
)
_EXTRAPOLATE = flags.DEFINE_bool(
    "extrapolate", False, "Evaluate on rows longer than the training rows (sequence task)."
)
flags.mark_flag_as_required("workdir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax reports each restore through absl.
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    try:
        run = eval_lib.load_run(_WORKDIR.value)
        report = eval_lib.evaluate_run(run, overrides, extrapolate=_EXTRAPOLATE.value)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(eval_lib.format_report(report))
    for path in eval_lib.write_outputs(run.workdir, report):
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
