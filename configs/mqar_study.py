"""One run of the MQAR study (issue 9): a 2-layer model on MQAR rows of T = 256 tokens.

The study trains the 16 cells of GRID (T3Lin, T3MLP, T3KAN and the Transformer, at model width 64
and 128, with 16 and 64 key-value pairs) and writes docs/results_mqar.md:

Run:    python -m experiments.study --study=mqar --out_dir=runs/study_mqar \
            --results=docs/results_mqar.md [--steps=N] [--only=t3lin,transformer]
One cell:
        python -m experiments.train --config=configs/mqar_study.py:t3kan-w128-k64
Result: test answer accuracy (docs/results_mqar.md, one H100): T3Lin 99.08/66.94/99.95/99.74%,
        T3MLP 99.96/99.99/-/100.00%, T3KAN 99.75/100.00/-/100.00%, Transformer
        99.98/1.39/100.00/100.00% at w64-k16/w64-k64/w128-k16/w128-k64 (T3MLP and T3KAN at
        w128-k16 memorised training rows and stayed at chance; unfinished).

The model is selected by fields (`model.arch`, `model.inner`, `model.width`) and the task by
`data.num_kv_pairs`; `get_config(cell)` sets them from a cell name of GRID. Training: Zoology
(arXiv 2312.04927) sweeps lr 1e-4..1e-2 over ~20 epochs of 100k rows; a budget run here takes 40k
rows (36k for training), batch 64 and 10000 steps (~18 epochs) at lr 1e-3 (the Transformer at
w64-k16 and w128-k64 drops off its plateau at 2500-3500 steps with 1e-3, but two of its four
cells were still on it at 4000; at 3e-3 it had not dropped after 3000, at 3e-4 not fully after
10000). MQAR curves sit on a plateau before a sudden drop, so early stopping is off.
"""

from ml_collections import config_dict

from configs import base, data

# Model fields of each model of the study (the rest are base's).
MODELS = {
    "t3lin": {"arch": "ttt", "inner": "linear"},
    "t3mlp": {"arch": "ttt", "inner": "mlp"},
    "t3kan": {"arch": "ttt", "inner": "kan"},
    "transformer": {"arch": "transformer"},
}
# TTT layers of the study address their inner memory by content: Q and K RMS-normalised, no RoPE.
# Small-scale CPU evidence (docs/results.md, MQAR section): the inner loop alone with ideal keys
# recalls 86% of 16 pairs at T = 256 without RoPE, 29% with it; trained T3Lin on vocab 256, T = 64,
# 4 pairs reached 93.1% validation accuracy at step 750 with these options, 42.4% without.
TTT_RECALL = {"ttt_qk_norm": True, "ttt_rope": False}
WIDTHS = (64, 128)
NUM_KV_PAIRS = (16, 64)


def cell_name(model: str, width: int, num_kv_pairs: int) -> str:
    """The name of a cell, e.g. "t3kan-w128-k64" (also its workdir under the study's out_dir)."""
    return f"{model}-w{width}-k{num_kv_pairs}"


# The 16 cells: per (width, pairs) group the 4 models, in the order of the results table.
GRID = tuple(
    {"name": cell_name(m, w, k), "model": m, "width": w, "num_kv_pairs": k}
    for w in WIDTHS
    for k in NUM_KV_PAIRS
    for m in MODELS
)


def apply_cell(config: config_dict.ConfigDict, cell: dict) -> config_dict.ConfigDict:
    """Sets the model, width and number of pairs of a GRID cell in `config` (in place)."""
    if cell["model"] not in MODELS:
        raise ValueError(f"model={cell['model']!r}: must be one of {', '.join(map(repr, MODELS))}")
    config.name = f"mqar-{cell['name']}"
    config.model.update(MODELS[cell["model"]])
    if config.model.arch == "ttt":
        config.model.update(TTT_RECALL)
    config.model.width = cell["width"]
    config.data.num_kv_pairs = cell["num_kv_pairs"]
    return config


def get_config(cell: str = "t3kan-w64-k16") -> config_dict.ConfigDict:
    """base with MQAR data (T = 256) and the study's model and training fields for `cell`."""
    cells = {c["name"]: c for c in GRID}
    if cell not in cells:
        raise ValueError(f"cell={cell!r}: must be one of {', '.join(map(repr, cells))}")
    config = base.get_config()
    # Updated in place: the model's vocab_size refers to data.vocab_size.
    config.data.update(data.PRESETS["mqar"])
    config.data.samples = 40_000
    config.data.input_seq_len = 256
    config.data.train_fraction = 0.9
    config.data.val_fraction = 0.05
    config.data.test_fraction = 0.05
    config.model.max_len = config.data.get_ref("input_seq_len")
    config.model.depth = 2
    # One head, as Zoology's attention baselines: head width = model width for every model, so
    # the TTT hidden state (per-head fast weights) grows with the width as a recurrent state does.
    config.model.num_heads = 1
    config.train.steps = 10000
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 150
    config.train.weight_decay = 0.1
    config.train.eval_every = 500
    config.train.patience = 0
    config.train.checkpoint_every = 1000
    return apply_cell(config, cells[cell])
