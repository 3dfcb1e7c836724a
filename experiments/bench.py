"""Benchmarks: `python -m experiments.bench --suite=kan|ttt|model|decode [--out=FILE.json]`.

Each suite lives in `experiments/benchmarks/<suite>.py` and exposes
`run(quick: bool) -> Iterable[dict]`; this entry point prints each row as it comes (one JSON line)
and rewrites the JSON report after each, so a run stopped by a time limit keeps its finished rows;
at the end it prints the rows as a table. Suites take `BENCH_<SUITE>_...` environment variables
that select rows (see each suite's docstring).
"""

import importlib
import json
import platform
import sys

import jax
from absl import app, flags

_SUITE = flags.DEFINE_string("suite", "ttt", "Benchmark suite: a module of experiments/benchmarks.")
_OUT = flags.DEFINE_string("out", None, "JSON output path (default: bench_<suite>.json).")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny shapes, for a smoke run on CPU.")


def format_table(rows: list[dict]) -> str:
    """Left-aligned text table over the union of the rows' keys."""
    if not rows:
        return "(no rows)"
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[fmt(row.get(k, "")) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def main(argv):
    del argv
    try:
        suite = importlib.import_module(f"experiments.benchmarks.{_SUITE.value}")
    except ModuleNotFoundError as e:
        raise app.UsageError(
            f"--suite={_SUITE.value!r}: no module experiments.benchmarks.{_SUITE.value}"
        ) from e
    report = {
        "suite": _SUITE.value,
        "command": " ".join(["python -m experiments.bench", *sys.argv[1:]]),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "rows": [],
    }
    out = _OUT.value or f"bench_{_SUITE.value}.json"
    for row in suite.run(quick=_QUICK.value):
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    print(format_table(report["rows"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
