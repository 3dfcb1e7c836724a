"""Data config of t3kan_jax.data: one flat ConfigDict for every task (docs/data.md).

`get_config(preset)` starts from the defaults (the synthetic sequence task) and applies a named
preset of PRESETS. With ml_collections config flags the preset follows a colon:
`python -m experiments.generate_data --config=configs/data.py:mqar --out=DIR`.
Fields that a task does not use are ignored by it.
"""

import ml_collections

PRESETS = {
    # The synthetic sequence task at the original generator's defaults.
    "": {},
    # Harder sequences: up to 4 components, equally likely, descending steps, rows of 256 tokens,
    # and an extrapolation split of rows up to twice as long (extrapolation_split).
    "hard": {
        "vocab_size": 1024,
        "components_number": 4,
        "seq_components_weights": 1.0,
        "allow_descending": True,
        "extrapolation_factor": 2,
    },
    # MQAR at the Zoology paper's vocabulary, in the middle of its range of lengths and pairs.
    "mqar": {
        "task": "mqar",
        "samples": 100_000,
        "vocab_size": 8192,
        "input_seq_len": 256,
        "num_kv_pairs": 16,
    },
    # Byte-level language modelling; set path to the text files (e.g. --config.path='d/*.txt').
    "text": {"task": "text", "vocab_size": 256, "seq_len": 256},
}


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """The defaults, with the fields of `PRESETS[preset]` applied."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: must be one of {', '.join(map(repr, PRESETS))}")
    config = ml_collections.ConfigDict()
    # "sequences" (interleaved arithmetic progressions), "mqar" (multi-query associative recall)
    # or "text" (bytes of local UTF-8 files).
    config.task = "sequences"
    # Rows in all (sequences: enhanced prefixes count, the last draw is truncated; mqar: one row
    # per draw; text: unused, every window of the files is a row).
    config.samples = 1000
    # V. sequences: values lie in [1, V-1], rows have V // seq_step columns; mqar: keys lie in
    # [1, V // 2), values in [V // 2, V); text: must be 256 (bytes).
    config.vocab_size = 128
    config.pad_id = 0  # The pad token; 0 is the only legal value (no real target is 0).
    config.seed = 0  # Seeds the generator and the split into train/val/test (unused by text).
    # Fractions of *draws* (never rows) per split; must sum to 1. Text: fractions of each file's
    # bytes, in order, so that val and test are each file's held-out tail.
    config.train_fraction = 0.8
    config.val_fraction = 0.1
    config.test_fraction = 0.1
    config.dir = ""  # If set, load this dataset (written by experiments.generate_data) instead.

    # Task "sequences".
    config.seq_step = 4  # S: each component's step |d| is uniform on 1..S.
    config.allow_descending = False  # If True, each step is negated with probability 1/2.
    config.components_number = 2  # N: a row interleaves C in 1..N arithmetic progressions.
    config.seq_components_weights = 3.0  # w > 0: P(C = k) ∝ w^(N-k); larger w, fewer components.
    config.enhance = True  # Also emit C-1 prefixes per draw, cut by 1, 3, 6, ... tokens.
    # k >= 2: extrapolation_split gives rows longer than any training row, steps 1..S/k (k must
    # divide S), round(test_fraction * samples) of them; 0 = no extrapolation split.
    config.extrapolation_factor = 0

    # Task "mqar" (Zoology, arXiv 2312.04927): rows of input_seq_len tokens, num_kv_pairs
    # key-value pairs then their queries at gaps with P(gap g) ∝ (g+1)^(power_a - 1).
    config.input_seq_len = 64  # Must be >= 4 * num_kv_pairs.
    config.num_kv_pairs = 4  # Must be <= vocab_size // 2 - 1.
    config.power_a = 0.01  # > 0; 1.0 spreads the queries uniformly.

    # Task "text": byte windows of the UTF-8 files that path (a file or a glob) names.
    config.path = ""
    config.seq_len = 256  # Row length L: inputs are bytes[i:i+L], targets bytes[i+1:i+L+1].

    config.update(PRESETS[preset])
    return config
