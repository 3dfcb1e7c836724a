"""Tests of the batch iterators: purity in (seed, step), epochs, masks, eval coverage."""

import collections

import chex
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.data import get_config
from t3kan_jax.data import eval_batches, generate_sequences, train_batch
from t3kan_jax.data.batches import make_batch

_KEYS = ("inputs", "targets", "mask", "determined_mask", "last_mask", "input_mask", "components")


@pytest.fixture(scope="module")
def split():
    config = get_config()
    config.update(samples=240, components_number=3, seq_components_weights=1.0, vocab_size=200)
    return generate_sequences(config)


def check_masks(batch, pad_id=0):
    """Masks against their definitions; determined targets checked to follow from their prefix."""
    targets, inputs, comps = batch["targets"], batch["inputs"], batch["components"]
    batch_size, row_len = targets.shape
    chex.assert_shape([batch[k] for k in _KEYS[:6]], (batch_size, row_len))
    chex.assert_shape(comps, (batch_size,))
    assert all(batch[k].dtype == np.float32 for k in _KEYS[2:6])
    # Sequence rows are right-padded in inputs and targets alike: the model's mask is the loss's.
    np.testing.assert_array_equal(batch["input_mask"], batch["mask"])
    assert all(batch[k].dtype == np.int32 for k in ("inputs", "targets", "components"))
    np.testing.assert_array_equal(batch["mask"] == 0, targets == pad_id)
    n_real = batch["mask"].sum(axis=1).astype(int)
    np.testing.assert_array_equal(batch["last_mask"].sum(axis=1), n_real > 0)
    for b in range(batch_size):
        determined = np.flatnonzero(batch["determined_mask"][b])
        if n_real[b] == 0:  # A filler row of eval_batches.
            assert determined.size == 0
            continue
        assert batch["last_mask"][b, n_real[b] - 1] == 1
        assert np.all(batch["mask"][b, determined] == 1)
        expected_first = 2 * comps[b] - 1  # First target whose sequence position is 2C.
        np.testing.assert_array_equal(determined, np.arange(expected_first, n_real[b]))
        for t in determined:  # The target is a function of the prefix inputs[: t + 1], given C.
            c = comps[b]
            assert targets[b, t] == 2 * inputs[b, t + 1 - c] - inputs[b, t + 1 - 2 * c]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 64), st.integers(0, 2**31 - 1), st.integers(0, 10**6))
def test_train_batch_is_pure_in_seed_and_step(split, batch_size, seed, step):
    batch = train_batch(split, batch_size, seed, step, pad_id=0)
    again = train_batch(split, batch_size, seed, step, pad_id=0)
    assert set(batch) == set(_KEYS)
    for key in _KEYS:
        np.testing.assert_array_equal(batch[key], again[key])
    check_masks(batch)
    other = train_batch(split, batch_size, seed, step + 1, pad_id=0)
    other_seed = train_batch(split, batch_size, seed + 1, step, pad_id=0)
    if batch_size >= 8:  # Rows drawn from 240; equal batches would be a 1-in-10^19 event.
        assert not np.array_equal(batch["inputs"], other["inputs"])
        assert not np.array_equal(batch["inputs"], other_seed["inputs"])


@pytest.mark.parametrize("batch_size", [16, 48, 500])
def test_train_batches_cover_each_epoch_once(split, batch_size):
    n = len(split)
    order = np.concatenate([train_batch(split, batch_size, 3, s, 0)["inputs"] for s in range(6)])
    for epoch in range(order.shape[0] // n):
        rows = order[epoch * n : (epoch + 1) * n]
        seen = collections.Counter(map(bytes, rows))
        assert seen == collections.Counter(map(bytes, split.inputs))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 100))
def test_eval_batches_cover_every_row_once_in_order(split, batch_size):
    batches = list(eval_batches(split, batch_size, pad_id=0))
    assert len(batches) == -(-len(split) // batch_size)
    for batch in batches:
        check_masks(batch)
        chex.assert_shape(batch["inputs"], (batch_size, split.inputs.shape[1]))
    stacked = {k: np.concatenate([b[k] for b in batches]) for k in _KEYS}
    n = len(split)
    np.testing.assert_array_equal(stacked["inputs"][:n], split.inputs)
    np.testing.assert_array_equal(stacked["targets"][:n], split.targets)
    np.testing.assert_array_equal(stacked["components"][:n], split.components)
    for key in ("mask", "determined_mask", "last_mask"):
        assert not stacked[key][n:].any()
    assert stacked["mask"][:n].sum(axis=1).min() >= 1


def test_determined_boundary_is_tight():
    """One target before the determined region is not a function of its prefix; from there it is."""
    config = get_config()
    config.update(samples=20_000, vocab_size=40, seq_step=2, enhance=False)
    batch = make_batch(generate_sequences(config), pad_id=0)
    for comps in (1, 2):
        first = 2 * comps - 1
        rows = (batch["components"] == comps) & (batch["mask"][:, first] == 1)
        for t, expect_unique in ((first - 1, False), (first, True)):
            targets_of_prefix = collections.defaultdict(set)
            for prefix, target in zip(
                batch["inputs"][rows, : t + 1], batch["targets"][rows, t], strict=True
            ):
                targets_of_prefix[bytes(prefix)].add(int(target))
            unique = max(len(v) for v in targets_of_prefix.values()) == 1
            assert unique == expect_unique, (comps, t)
        assert batch["determined_mask"][rows, first - 1].sum() == 0
        assert batch["determined_mask"][rows, first].all()


def test_bad_arguments(split):
    with pytest.raises(ValueError, match="batch_size"):
        train_batch(split, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="step"):
        train_batch(split, 4, 0, -1, 0)
    with pytest.raises(ValueError, match="split"):
        train_batch(split.take(np.arange(0)), 4, 0, 0, 0)
    with pytest.raises(ValueError, match="batch_size"):
        next(eval_batches(split, -2, 0))
