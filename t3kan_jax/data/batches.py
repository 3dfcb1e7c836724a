"""Batches of rows with loss masks: a training stream that is a pure function of (seed, step).

Mask convention (column `t` of `targets`, 0-based; `targets[t] = seq[t + 1]` is predicted from
`inputs[:t + 1] = seq[:t + 1]`):

- `mask`: 1 where `targets[t] != pad_id` (no real target of any task equals the pad; in the
  sequence task pads are a right suffix, in MQAR every non-answer target is a pad, in text there
  are none);
- `determined_mask`: 1 where `mask` and `t + 1 >= 2C`, i.e. where the predicted token's sequence
  position is at least 2C. There, given C, `seq[t+1] = 2·seq[t+1-C] - seq[t+1-2C]` (the start and
  step of its component both lie in the prefix); at every earlier position the target holds a fresh
  random start (`t + 1 < C`) or a fresh random step (`C <= t + 1 < 2C`). MQAR and text rows have
  `C = 0`, so there it equals `mask`;
- `last_mask`: 1 at the last real target of each row (none in an all-pad row);
- `input_mask`: 1 on the columns before the row's right padding (every column up to the last
  real input or target), the *model's* padding mask (`mask_BT`: TTT layers write nothing where it
  is 0). It differs from `mask` where targets are pads inside a row: in MQAR every key-value
  column has a pad target, yet the model must read and store it.
"""

from collections.abc import Iterator

import numpy as np

from t3kan_jax.data.sequences import Sequences

_BATCH_STREAM = 0xBA7C  # Keeps the batch permutations' random stream apart from the generator's.


def make_batch(rows: Sequences, pad_id: int) -> dict[str, np.ndarray]:
    """The batch dict (inputs, targets, components and the three float32 masks) for `rows`."""
    mask = rows.targets != pad_id
    position = np.arange(rows.targets.shape[1])[None, :]
    determined = mask & (position + 1 >= 2 * rows.components[:, None])
    last_index = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    last = mask & (position == last_index[:, None])
    real = mask | (rows.inputs != pad_id)
    length = np.where(real.any(axis=1), real.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)
    return {
        "inputs": rows.inputs,
        "targets": rows.targets,
        "mask": mask.astype(np.float32),
        "determined_mask": determined.astype(np.float32),
        "last_mask": last.astype(np.float32),
        "input_mask": (position < length[:, None]).astype(np.float32),
        "components": rows.components,
    }


def _check_batch_size(batch_size: int) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")


def train_batch(
    split: Sequences, batch_size: int, seed: int, step: int, pad_id: int
) -> dict[str, np.ndarray]:
    """Training batch number `step`: a pure function of (seed, step), so resumed runs see the same.

    Consecutive steps walk through epochs: stream position `p = step·batch_size + i` takes row
    `perm_e[p mod N]` with `e = p // N` and `perm_e` a permutation seeded from (seed, e), so every
    row is seen once per epoch.
    """
    _check_batch_size(batch_size)
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step={step!r}: must be an integer >= 0")
    n = len(split)
    if n == 0:
        raise ValueError("split: has no rows to draw a training batch from")
    stream = int(step) * batch_size + np.arange(batch_size)
    epoch, offset = np.divmod(stream, n)
    rows = np.empty(batch_size, np.int64)
    for e in np.unique(epoch):
        perm = np.random.default_rng([seed, _BATCH_STREAM, int(e)]).permutation(n)
        rows[epoch == e] = perm[offset[epoch == e]]
    return make_batch(split.take(rows), pad_id)


def eval_batches(split: Sequences, batch_size: int, pad_id: int) -> Iterator[dict[str, np.ndarray]]:
    """Every row exactly once, in order; the last batch is filled up with all-pad rows (masks 0)."""
    _check_batch_size(batch_size)
    for start in range(0, len(split), batch_size):
        rows = split.take(slice(start, start + batch_size))
        fill = batch_size - len(rows)
        if fill:
            width = rows.inputs.shape[1]
            pad_rows = np.full((fill, width), pad_id, np.int32)
            rows = Sequences(
                inputs=np.concatenate([rows.inputs, pad_rows]),
                targets=np.concatenate([rows.targets, pad_rows]),
                draw=np.concatenate([rows.draw, np.full(fill, -1, np.int32)]),
                components=np.concatenate([rows.components, np.zeros(fill, np.int32)]),
            )
        yield make_batch(rows, pad_id)
