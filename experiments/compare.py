"""Compares runs: `python -m experiments.compare DIR1 DIR2 ... [--out=docs/results.md]`.

Writes a Markdown table (model, parameters, steps, test metrics, best values in bold), the
settings that differ between the runs, and their overlaid learning curves (a PNG beside the
Markdown file, linked from it).
"""

from absl import app, flags

from t3kan_jax.eval import load_summaries, write_comparison

_OUT = flags.DEFINE_string("out", "results.md", "Markdown output path (curves: <stem>_curves.png).")
_LABELS = flags.DEFINE_list("labels", None, "Run labels, one per directory (default: dir names).")
_TITLE = flags.DEFINE_string("title", "Results", "Heading of the Markdown file.")


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("give the run directories: python -m experiments.compare DIR1 DIR2")
    runs = load_summaries(workdirs, _LABELS.value)
    for path in write_comparison(runs, _OUT.value, _TITLE.value):
        print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
