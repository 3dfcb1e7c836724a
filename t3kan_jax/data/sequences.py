"""Seeded generator of interleaved arithmetic-progression sequences (the synthetic task).

One *draw* (randomness from `np.random.default_rng(config.seed)`, in fixed-size chunks of draws):

- `C ∈ {1..N}` with `P(C = k) ∝ w^(N-k)`;
- `B = V // C // S`; one component length `L ~ U{B // 5, B - 1}` (`B // 5` is `floor(0.2·B)`);
- per component a step `d ~ U{1..S}` (with `allow_descending`, negated with probability 1/2) and a
  start `a` uniform over the starts that keep every value `a + i·d, i < L` in `[1, V-1]`;
- round-robin interleaving, `seq[i·C + c] = a_c + i·d_c`: `n = L·C` tokens.

Rows: a row with `T` real targets holds `inputs[:T] = seq[:T]` and `targets[:T] = seq[1:T+1]`,
both right-padded with `pad_id` to `V // S` columns. The base row of a draw has `T = n - 1`. With
`enhance`, cut `k = 1..C-1` emits the sequence prefix `seq[:n - k(k+1)/2]` as a row of its own
(cumulative cuts of 1, 3, 6, ... tokens off the end of the *sequence*: `T = n - 1 - k(k+1)/2`), so
consecutive rows of a draw end on targets of different components. Rows come draw by draw (base row
first) until there are `samples`; the last draw's rows are truncated to exactly `samples` rows.
The chunk size does not depend on `samples`, so fewer samples give a prefix of more.

`extrapolation_split(config)` draws rows longer than any training row from the same vocabulary.

Legal values: `pad_id` must be 0 (it is a vocabulary index, and every other index, `1..V-1`, is a
value a sequence can take); `vocab_size >= min_vocab_size(...)`, so that every row, enhanced
prefixes included, keeps at least one real target.
"""

import dataclasses
import math

import numpy as np

from t3kan_jax.data.fields import bool_field, field, int_field, positive_field, zero_pad_id

GENERATOR_FIELDS = (
    "samples",
    "vocab_size",
    "pad_id",
    "seq_step",
    "allow_descending",
    "components_number",
    "seq_components_weights",
    "enhance",
    "seed",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
    """Rows of the task as numpy arrays: inputs/targets [N, L] int32, draw/components [N] int32."""

    inputs: np.ndarray
    targets: np.ndarray
    draw: np.ndarray
    components: np.ndarray

    def __post_init__(self):
        n = self.inputs.shape[0]
        for name, ndim in (("inputs", 2), ("targets", 2), ("draw", 1), ("components", 1)):
            array = getattr(self, name)
            if array.dtype != np.int32 or array.ndim != ndim or array.shape[0] != n:
                raise ValueError(
                    f"Sequences.{name}: expected int32 with {ndim} dims and {n} rows, "
                    f"got {array.dtype} of shape {array.shape}"
                )
        if self.targets.shape != self.inputs.shape:
            raise ValueError(
                f"Sequences.targets: shape {self.targets.shape} != {self.inputs.shape}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def take(self, rows) -> "Sequences":
        """The rows at integer indices (or a boolean mask) `rows`, in that order."""
        return Sequences(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})


def min_vocab_size(seq_step: int, components_number: int, enhance: bool) -> int:
    """Smallest vocab_size for which every row (enhanced prefixes included) has >= 1 real target."""
    smallest = 0
    for c in range(1, components_number + 1):
        cut = c * (c - 1) // 2 if enhance else 0
        # The shortest draw has L = B // 5 and its last row T = L·C - 1 - cut >= 1 real targets.
        min_len = max(1, math.ceil((2 + cut) / c))
        # B // 5 >= min_len  <=>  B >= 5·min_len  <=>  V >= 5·min_len·C·S (B = V // C // S).
        smallest = max(smallest, 5 * min_len * c * seq_step)
    return smallest


def validate_config(config) -> dict:
    """Checks the generator fields of `config`; returns them as a plain dict of Python scalars."""
    fields = {
        "samples": int_field(config, "samples", 1),
        "seq_step": int_field(config, "seq_step", 1),
        "components_number": int_field(config, "components_number", 1),
        "seed": int_field(config, "seed", 0),
        "allow_descending": bool_field(config, "allow_descending"),
        "enhance": bool_field(config, "enhance"),
    }
    vocab_size = int_field(config, "vocab_size", 2)
    need = min_vocab_size(fields["seq_step"], fields["components_number"], fields["enhance"])
    if vocab_size < need:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for seq_step={fields['seq_step']}, "
            f"components_number={fields['components_number']}, enhance={fields['enhance']}: "
            f"need vocab_size >= {need} so that every row keeps at least one real target"
        )
    pad_id = zero_pad_id(config, f"sequences take every value in [1, {vocab_size - 1}]")
    weight = positive_field(config, "seq_components_weights")
    return {**fields, "vocab_size": vocab_size, "pad_id": pad_id, "seq_components_weights": weight}


def components_probabilities(components_number: int, weight: float) -> np.ndarray:
    """P(C = k) ∝ w^(N-k) for k = 1..N, normalised in log space (large N or w cannot overflow)."""
    logits = (components_number - np.arange(1, components_number + 1)) * math.log(weight)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _chunk_draws(row_len: int) -> int:
    """Draws generated per chunk: a function of the row length only, never of `samples`."""
    return max(16, min(4096, 2**21 // (row_len + 1)))


def _draw_chunk(rng: np.random.Generator, draws: int, cfg: dict, probs: np.ndarray):
    """One chunk of draws: C [D], tokens n [D], sequences [D, V//S + 1] (valid up to n)."""
    vocab, step, n_max = cfg["vocab_size"], cfg["seq_step"], cfg["components_number"]
    row_len = vocab // step
    comps = rng.choice(np.arange(1, n_max + 1), size=draws, p=probs)
    block = vocab // comps // step
    length = rng.integers(block // 5, block)  # U{floor(0.2·B), B - 1}
    step_abs = rng.integers(1, step + 1, size=(draws, n_max))
    descending = (
        rng.random((draws, n_max)) < 0.5
        if cfg["allow_descending"]
        else np.zeros((draws, n_max), bool)
    )
    span = (length[:, None] - 1) * step_abs
    lowest = rng.integers(1, vocab - span)  # lowest value of the component, U{1 .. V-1-(L-1)|d|}
    start = np.where(descending, lowest + span, lowest)
    delta = np.where(descending, -step_abs, step_abs)
    pos = np.arange(row_len + 1)
    comp_of_pos = pos[None, :] % comps[:, None]
    index_in_comp = pos[None, :] // comps[:, None]
    seq = np.take_along_axis(start, comp_of_pos, 1) + index_in_comp * np.take_along_axis(
        delta, comp_of_pos, 1
    )
    return comps, length * comps, seq


def generate_sequences(config) -> Sequences:
    """The rows of the task from the generator fields of `config` (see the module docstring)."""
    cfg = validate_config(config)
    row_len = cfg["vocab_size"] // cfg["seq_step"]
    probs = components_probabilities(cfg["components_number"], cfg["seq_components_weights"])
    rng = np.random.default_rng(cfg["seed"])
    chunk = _chunk_draws(row_len)
    pos, pad = np.arange(row_len), cfg["pad_id"]
    parts, rows, first_draw = [], 0, 0
    while rows < cfg["samples"]:
        comps, n_tokens, seq = _draw_chunk(rng, chunk, cfg, probs)
        rows_per_draw = comps if cfg["enhance"] else np.ones_like(comps)
        row_draw = np.repeat(np.arange(chunk), rows_per_draw)
        cut_index = np.arange(row_draw.size) - np.repeat(
            np.cumsum(rows_per_draw) - rows_per_draw, rows_per_draw
        )
        keep = min(row_draw.size, cfg["samples"] - rows)
        row_draw, cut_index = row_draw[:keep], cut_index[:keep]
        n_real = n_tokens[row_draw] - 1 - cut_index * (cut_index + 1) // 2
        real = pos[None, :] < n_real[:, None]
        parts.append(
            Sequences(
                inputs=np.where(real, seq[row_draw, :-1], pad).astype(np.int32),
                targets=np.where(real, seq[row_draw, 1:], pad).astype(np.int32),
                draw=(first_draw + row_draw).astype(np.int32),
                components=comps[row_draw].astype(np.int32),
            )
        )
        rows += keep
        first_draw += chunk
    return Sequences(
        **{
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(Sequences)
        }
    )


_EXTRAPOLATION_STREAM = 0xE87A  # Keeps the extrapolation draws apart from the training draws.


def extrapolation_split(config) -> Sequences:
    """Rows longer than any training row, in the training vocabulary (docs/data.md).

    With `k = extrapolation_factor`, the rows come from the generator with `seq_step = S // k`
    (steps `1..S/k`, a subset of the training steps; rows of `V // (S/k)` columns), a seed of
    their own, and are kept only if they hold at least `V // S` real targets, i.e. more than a
    training row has columns. `round(test_fraction · samples)` rows (at least 1).
    """
    cfg = validate_config(config)
    factor = int_field(config, "extrapolation_factor", 0)
    if factor < 2:
        raise ValueError(
            f"extrapolation_factor={factor}: an extrapolation split needs a factor >= 2 "
            "(0 means no extrapolation split)"
        )
    if cfg["seq_step"] % factor:
        raise ValueError(
            f"extrapolation_factor={factor} must divide seq_step={cfg['seq_step']}, so that the "
            f"longer rows' steps 1..seq_step/extrapolation_factor are steps seen in training"
        )
    train_columns = cfg["vocab_size"] // cfg["seq_step"]
    rows = max(1, round(float(field(config, "test_fraction")) * cfg["samples"]))
    seed = int(np.random.SeedSequence([cfg["seed"], _EXTRAPOLATION_STREAM]).generate_state(1)[0])
    longer = {**cfg, "seq_step": cfg["seq_step"] // factor, "seed": seed}
    limit = max(64 * rows, 4096)
    generated = rows
    while True:  # Fewer samples give a prefix of more, so doubling keeps earlier picks.
        seqs = generate_sequences({**longer, "samples": generated})
        long_rows = np.flatnonzero(np.sum(seqs.targets != cfg["pad_id"], axis=1) >= train_columns)
        if long_rows.size >= rows:
            return seqs.take(long_rows[:rows])
        if generated >= limit:
            raise ValueError(
                f"extrapolation_factor={factor}: only {long_rows.size} of {generated} rows are "
                f"longer than the training rows ({train_columns} columns); raise it"
            )
        generated *= 2
