"""Tests of the MQAR generator: answers, query positions, power-law gaps, determinism, bad input."""

import itertools
import math

import chex
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.data import get_config
from t3kan_jax.data import eval_batches, generate_mqar, train_batch
from t3kan_jax.data.mqar import distinct_integers


@st.composite
def configs(draw, max_samples=40):
    """Random valid MQAR configs, from the smallest legal vocabulary and length upwards."""
    pairs = draw(st.integers(1, 8))
    config = get_config()
    config.update(
        task="mqar",
        samples=draw(st.integers(1, max_samples)),
        num_kv_pairs=pairs,
        vocab_size=2 * pairs + 2 + draw(st.integers(0, 60)),
        input_seq_len=4 * pairs + draw(st.integers(0, 40)),
        power_a=draw(st.sampled_from([0.01, 0.3, 1.0, 2.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )
    return config


def within_5_sigma(count: int, total: int, p: float) -> bool:
    return abs(count - total * p) <= 5 * math.sqrt(total * p * (1 - p)) + 1e-9


@settings(max_examples=30, deadline=None)
@given(configs())
def test_every_answer_is_the_value_bound_to_its_key(config):
    seqs = generate_mqar(config)
    vocab, pairs, seq_len = config.vocab_size, config.num_kv_pairs, config.input_seq_len
    context = 2 * pairs
    chex.assert_shape([seqs.inputs, seqs.targets], (config.samples, seq_len))
    assert all(getattr(seqs, f).dtype == np.int32 for f in ("inputs", "targets", "draw"))
    np.testing.assert_array_equal(seqs.draw, np.arange(config.samples))
    assert not seqs.components.any()
    for inputs, targets in zip(seqs.inputs, seqs.targets, strict=True):
        keys, values = inputs[0:context:2], inputs[1:context:2]
        assert np.unique(keys).size == pairs and np.unique(values).size == pairs
        assert np.all((keys >= 1) & (keys < vocab // 2))
        assert np.all((values >= vocab // 2) & (values < vocab))
        bound = dict(zip(keys.tolist(), values.tolist(), strict=True))
        answers = np.flatnonzero(targets)
        # Each key is queried once, after all pairs, on an even offset of the query region.
        assert sorted(inputs[answers].tolist()) == sorted(bound)
        assert np.all(answers >= context) and np.all((answers - context) % 2 == 0)
        for t in answers:
            assert targets[t] == bound[int(inputs[t])]
        assert not targets[:context].any()
        query_region = np.zeros(seq_len, bool)
        query_region[context:] = True
        query_region[answers] = False
        assert not inputs[query_region].any()  # Filler 0 between the queries.


@settings(max_examples=20, deadline=None)
@given(configs(), st.integers(0, 2**32 - 1))
def test_deterministic_by_seed_and_prefix_stable(config, other_seed):
    first, again = generate_mqar(config), generate_mqar(config)
    for name in ("inputs", "targets", "draw", "components"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    more = ml_collections.ConfigDict(config.to_dict())
    more.samples = config.samples + 37
    np.testing.assert_array_equal(generate_mqar(more).inputs[: config.samples], first.inputs)
    more.seed = other_seed
    other = generate_mqar(more).inputs[: config.samples]
    if other_seed != config.seed and config.vocab_size >= 40:  # Many possible rows: must differ.
        assert not np.array_equal(other, first.inputs)


@pytest.mark.parametrize("power_a", [0.01, 0.3, 1.0])
def test_query_slots_are_successive_power_law_draws(power_a):
    """Two pairs, three slots: P(slot_1 = i, slot_2 = j) = p_i p_j / (1 - p_i), p ∝ (g+1)^(a-1)."""
    config = get_config()
    config.update(task="mqar", samples=20_000, num_kv_pairs=2, input_seq_len=10, power_a=power_a)
    seqs = generate_mqar(config)
    query = seqs.inputs[:, 4:]  # Slot g sits at offset 2g of the query region.
    slots = [np.argmax(query == seqs.inputs[:, [key]], axis=1) // 2 for key in (0, 2)]
    p = power_a * np.arange(1, 4) ** (power_a - 1)  # The paper's a·x^(a-1), normalised.
    p /= p.sum()
    for i, j in itertools.permutations(range(3), 2):
        count = int(np.sum((slots[0] == i) & (slots[1] == j)))
        assert within_5_sigma(count, config.samples, p[i] * p[j] / (1 - p[i])), (i, j)


def test_distinct_integers_are_uniform_ordered_tuples():
    rng = np.random.default_rng(0)
    draws = distinct_integers(rng, 24_000, 2, 3, 7)
    assert np.all((draws >= 3) & (draws < 7)) and np.all(draws[:, 0] != draws[:, 1])
    for pair in itertools.permutations(range(3, 7), 2):
        count = int(np.sum(np.all(draws == pair, axis=1)))
        assert within_5_sigma(count, draws.shape[0], 1 / 12), pair


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"num_kv_pairs": 64, "vocab_size": 128},
            r"^vocab_size=128 has 63 keys .*need vocab_size >= 130",
        ),
        ({"num_kv_pairs": 4, "vocab_size": 9}, r"^vocab_size=9 has 3 keys"),
        (
            {"num_kv_pairs": 16, "input_seq_len": 63},
            r"^input_seq_len=63 .*need input_seq_len >= 64",
        ),
        ({"num_kv_pairs": 0}, r"^num_kv_pairs=0"),
        ({"input_seq_len": 0}, r"^input_seq_len=0"),
        ({"power_a": 0.0}, r"^power_a=0\.0"),
        ({"power_a": -1}, r"^power_a=-1"),
        ({"power_a": float("nan")}, r"^power_a=nan"),
        ({"pad_id": 1}, r"^pad_id=1"),
        ({"samples": 0}, r"^samples=0"),
        ({"seed": -1}, r"^seed=-1"),
    ],
)
def test_bad_parameters_are_refused(overrides, match):
    config = get_config()
    config.update(task="mqar", **overrides)
    with pytest.raises(ValueError, match=match):
        generate_mqar(config)


def test_batches_mask_exactly_the_answers():
    config = get_config()
    config.update(task="mqar", samples=50, num_kv_pairs=3, input_seq_len=40, vocab_size=64)
    seqs = generate_mqar(config)
    batches = [train_batch(seqs, 16, seed=1, step=3, pad_id=0), *eval_batches(seqs, 16, pad_id=0)]
    for batch in batches:
        answers = batch["targets"] != 0
        np.testing.assert_array_equal(batch["mask"], answers)
        np.testing.assert_array_equal(batch["determined_mask"], answers)
        expected_last = np.zeros_like(answers)
        for b, row in enumerate(answers):
            if row.any():
                expected_last[b, np.flatnonzero(row)[-1]] = True
        np.testing.assert_array_equal(batch["last_mask"], expected_last)
        real = batch["inputs"][:, 0] != 0  # Filler rows of the last eval batch are all pad.
        np.testing.assert_array_equal(batch["mask"].sum(axis=1), 3 * real)
        # The model's mask covers every column up to the last answer: the key-value pairs (pad
        # targets) must reach the TTT layers, whose inner lr is 0 where input_mask is 0.
        last = np.where(real, batch["targets"].shape[1] - np.argmax(answers[:, ::-1], axis=1), 0)
        cols = np.arange(batch["targets"].shape[1])[None, :]
        assert np.all(batch["input_mask"][cols < last[:, None]] == 1)
        assert (
            np.all(batch["input_mask"][:, :6][real] == 1) and not batch["input_mask"][~real].any()
        )
