"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology", arXiv 2312.04927).

One row of `T = input_seq_len` tokens per draw, as `multiquery_ar` of the Zoology code builds it
(with its filler 0 kept, i.e. `random_non_queries=False`):

- `K = num_kv_pairs` distinct keys from `[1, V // 2)` and `K` distinct values from `[V // 2, V)`,
  `V = vocab_size` (0 is the pad and the filler: no key or value takes it);
- the context `k_1 v_1 k_2 v_2 … k_K v_K` fills columns `0 .. 2K-1`;
- the query region, columns `2K .. T-1`, offers `space = (T - 2K) // 2` slots, slot `g` at column
  `2K + 2g`. The slots of keys `1..K` are drawn in turn without replacement, each with probability
  `∝ a·(g+1)^(a-1)` over the slots left (`a = power_a`; the paper's power law of the gap between a
  pair and its query; `a = 1` is uniform);
- at the query column `t` of key `i`: `inputs[t] = k_i`, `targets[t] = v_i`. Every other target is
  0 (the pad: no loss there) and every other query-region input is 0.

So `mask = targets != 0` marks exactly the answers. Rows are drawn in fixed-size chunks from
`np.random.default_rng(seed)`, so fewer samples give a prefix of more. `draw` is the row index
and `components` is 0 (so `determined_mask` equals `mask` in batches).
"""

import numpy as np

from t3kan_jax.data.fields import int_field, positive_field, zero_pad_id
from t3kan_jax.data.sequences import Sequences

MQAR_FIELDS = (
    "samples",
    "vocab_size",
    "pad_id",
    "input_seq_len",
    "num_kv_pairs",
    "power_a",
    "seed",
)


def validate_mqar_config(config) -> dict:
    """Checks the MQAR fields of `config`; returns them as a plain dict of Python scalars."""
    cfg = {
        "samples": int_field(config, "samples", 1),
        "num_kv_pairs": int_field(config, "num_kv_pairs", 1),
        "seed": int_field(config, "seed", 0),
        "power_a": positive_field(config, "power_a"),
    }
    pairs = cfg["num_kv_pairs"]
    vocab_size = int_field(config, "vocab_size", 2)
    if vocab_size // 2 - 1 < pairs:
        raise ValueError(
            f"vocab_size={vocab_size} has {max(vocab_size // 2 - 1, 0)} keys "
            f"([1, {vocab_size // 2})) for num_kv_pairs={pairs} distinct keys: "
            f"need vocab_size >= {2 * pairs + 2}"
        )
    seq_len = int_field(config, "input_seq_len", 1)
    if seq_len < 4 * pairs:
        raise ValueError(
            f"input_seq_len={seq_len} is too short for num_kv_pairs={pairs}: the pairs take "
            f"{2 * pairs} tokens and the queries {pairs} of the (input_seq_len - {2 * pairs}) // 2 "
            f"query slots: need input_seq_len >= {4 * pairs}"
        )
    pad_id = zero_pad_id(config, f"keys and values take [1, {vocab_size - 1}]")
    return {**cfg, "vocab_size": vocab_size, "input_seq_len": seq_len, "pad_id": pad_id}


def _chunk_rows(seq_len: int) -> int:
    """Rows generated per chunk: a function of the row length only, never of `samples`."""
    return max(16, min(4096, 2**20 // seq_len))


def distinct_integers(rng: np.random.Generator, rows: int, k: int, low: int, high: int):
    """`k` distinct integers per row, uniform over the ordered k-tuples from `[low, high)`."""
    # Floyd's algorithm (vectorised over rows) draws a uniform k-subset; a shuffle orders it.
    pool = high - low
    chosen = np.empty((rows, k), np.int64)
    for i, j in enumerate(range(pool - k, pool)):
        pick = rng.integers(0, j + 1, size=rows)
        taken = np.any(chosen[:, :i] == pick[:, None], axis=1)
        chosen[:, i] = np.where(taken, j, pick)
    return low + rng.permuted(chosen, axis=1)


def power_law_slots(rng: np.random.Generator, rows: int, k: int, space: int, power_a: float):
    """Per row, `k` slots of `0..space-1` drawn in turn without replacement, P(g) ∝ (g+1)^(a-1)."""
    # Exponential race: with E_g ~ Exp(1), the order of the k smallest E_g / p_g is distributed as
    # successive draws without replacement from p (as numpy's `choice(p=…, replace=False)`).
    # Compared in log space, so that no p_g underflows for a large `power_a`.
    log_inverse_p = (1.0 - power_a) * np.log(np.arange(1, space + 1))
    race = np.log(rng.standard_exponential((rows, space))) + log_inverse_p
    return np.argsort(race, axis=1)[:, :k]


def _fill_chunk(rng: np.random.Generator, inputs: np.ndarray, targets: np.ndarray, cfg: dict):
    """Draws the rows of one chunk into `inputs` and `targets` [rows, T] (zero on entry)."""
    vocab, pairs, seq_len = cfg["vocab_size"], cfg["num_kv_pairs"], cfg["input_seq_len"]
    rows, context = inputs.shape[0], 2 * cfg["num_kv_pairs"]
    keys = distinct_integers(rng, rows, pairs, 1, vocab // 2)
    values = distinct_integers(rng, rows, pairs, vocab // 2, vocab)
    columns = context + 2 * power_law_slots(
        rng, rows, pairs, (seq_len - context) // 2, cfg["power_a"]
    )
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    np.put_along_axis(inputs, columns, keys, axis=1)
    np.put_along_axis(targets, columns, values, axis=1)


def generate_mqar(config) -> Sequences:
    """The MQAR rows from the fields of `config` (see the module docstring)."""
    cfg = validate_mqar_config(config)
    rng = np.random.default_rng(cfg["seed"])
    samples, seq_len = cfg["samples"], cfg["input_seq_len"]
    chunk = _chunk_rows(seq_len)
    inputs = np.zeros((samples, seq_len), np.int32)
    targets = np.zeros((samples, seq_len), np.int32)
    for start in range(0, samples, chunk):
        # Every chunk draws all its rows, so fewer samples give a prefix of more.
        stop = start + chunk
        if stop <= samples:
            _fill_chunk(rng, inputs[start:stop], targets[start:stop], cfg)
            continue
        last_inputs = np.zeros((chunk, seq_len), np.int32)
        last_targets = np.zeros((chunk, seq_len), np.int32)
        _fill_chunk(rng, last_inputs, last_targets, cfg)
        inputs[start:] = last_inputs[: samples - start]
        targets[start:] = last_targets[: samples - start]
    return Sequences(
        inputs=inputs,
        targets=targets,
        draw=np.arange(samples, dtype=np.int32),
        components=np.zeros(samples, np.int32),
    )
