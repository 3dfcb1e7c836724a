"""Tests of the seeded sequence generator: row structure, distributions, determinism, bad input."""

import math

import chex
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.data import get_config
from t3kan_jax.data import Sequences, extrapolation_split, generate_sequences
from t3kan_jax.data.sequences import components_probabilities, min_vocab_size


@st.composite
def configs(draw, max_samples=200):
    """Random valid generator configs, vocab_size from its minimum upwards."""
    n_max = draw(st.integers(1, 4))
    step = draw(st.integers(1, 5))
    enhance = draw(st.booleans())
    return ml_collections.ConfigDict(
        {
            "samples": draw(st.integers(1, max_samples)),
            "vocab_size": min_vocab_size(step, n_max, enhance) + draw(st.integers(0, 150)),
            "pad_id": 0,
            "seq_step": step,
            "allow_descending": draw(st.booleans()),
            "components_number": n_max,
            "seq_components_weights": draw(st.sampled_from([0.5, 1, 2, 3])),
            "enhance": enhance,
            "seed": draw(st.integers(0, 2**32 - 1)),
        }
    )


def real_sequence(inputs, targets, pad_id=0):
    """The sequence prefix a row holds: its real inputs and then its last real target."""
    n_real = int(np.sum(targets != pad_id))
    return np.append(inputs[:n_real], targets[n_real - 1])


def base_rows(seqs: Sequences) -> np.ndarray:
    """Index of the first (base) row of every draw."""
    return np.flatnonzero(np.diff(seqs.draw, prepend=-1))


@settings(max_examples=30, deadline=None)
@given(configs())
def test_rows_are_interleaved_progressions(config):
    seqs = generate_sequences(config)
    vocab, step, row_len = config.vocab_size, config.seq_step, config.vocab_size // config.seq_step
    chex.assert_shape([seqs.inputs, seqs.targets], (config.samples, row_len))
    chex.assert_shape([seqs.draw, seqs.components], (config.samples,))
    for name in ("inputs", "targets", "draw", "components"):
        assert getattr(seqs, name).dtype == np.int32, name
    assert np.all((seqs.components >= 1) & (seqs.components <= config.components_number))
    assert_progressions(seqs, vocab, step, config.allow_descending)


def assert_progressions(seqs: Sequences, vocab: int, step: int, allow_descending: bool):
    """Each row interleaves C progressions of steps in 1..step, values in [1, V-1], right pads."""
    for inputs, targets, comps in zip(seqs.inputs, seqs.targets, seqs.components, strict=True):
        n_real = int(np.sum(targets != 0))
        assert n_real >= 1
        for row in (inputs, targets):  # Real values in [1, V-1], pads only as a right suffix.
            assert np.all((row[:n_real] >= 1) & (row[:n_real] <= vocab - 1))
            assert np.all(row[n_real:] == 0)
        np.testing.assert_array_equal(targets[: n_real - 1], inputs[1:n_real])
        seq = real_sequence(inputs, targets)
        for c in range(comps):
            diffs = np.diff(seq[c::comps])
            if diffs.size:
                assert np.all(diffs == diffs[0])
                assert 1 <= abs(diffs[0]) <= step
                assert diffs[0] > 0 or allow_descending


@settings(max_examples=30, deadline=None)
@given(configs())
def test_draws_and_enhanced_prefixes(config):
    seqs = generate_sequences(config)
    starts = base_rows(seqs)
    np.testing.assert_array_equal(seqs.draw[starts], np.arange(starts.size))
    rows_per_draw = np.diff(np.append(starts, len(seqs)))
    for i, (start, n_rows) in enumerate(zip(starts, rows_per_draw, strict=True)):
        comps = seqs.components[start]
        assert np.all(seqs.components[start : start + n_rows] == comps)
        full = comps if config.enhance else 1
        assert n_rows == full or (i == starts.size - 1 and n_rows < full)
        base = real_sequence(seqs.inputs[start], seqs.targets[start])
        block = config.vocab_size // comps // config.seq_step
        assert base.size % comps == 0 and block // 5 <= base.size // comps <= block - 1
        last_component = None
        for k in range(n_rows):  # Cut k removes k(k+1)/2 tokens from the end of the sequence.
            seq = real_sequence(seqs.inputs[start + k], seqs.targets[start + k])
            np.testing.assert_array_equal(seq, base[: base.size - k * (k + 1) // 2])
            assert (seq.size - 1) % comps != last_component
            last_component = (seq.size - 1) % comps


@settings(max_examples=20, deadline=None)
@given(configs(), st.integers(0, 2**32 - 1))
def test_deterministic_by_seed_and_prefix_stable(config, other_seed):
    first, again = generate_sequences(config), generate_sequences(config)
    for name in ("inputs", "targets", "draw", "components"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    more = ml_collections.ConfigDict(config.to_dict())
    more.samples = config.samples + 37
    longer = generate_sequences(more)
    np.testing.assert_array_equal(longer.inputs[: config.samples], first.inputs)
    np.testing.assert_array_equal(longer.draw[: config.samples], first.draw)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_different_seeds_differ(seed_a, seed_b):
    config = get_config()
    config.samples = 50
    config.seed = seed_a
    a = generate_sequences(config)
    config.seed = seed_b
    b = generate_sequences(config)
    assert (seed_a == seed_b) == np.array_equal(a.inputs, b.inputs)


def within_5_sigma(count: int, total: int, p: float) -> bool:
    return abs(count - total * p) <= 5 * math.sqrt(total * p * (1 - p)) + 1e-9


@pytest.mark.parametrize(("n_max", "weight"), [(2, 3), (3, 2), (4, 0.5), (3, 1)])
def test_components_distribution(n_max, weight):
    config = get_config()
    config.update(samples=30_000, components_number=n_max, seq_components_weights=weight)
    config.vocab_size = min_vocab_size(config.seq_step, n_max, True)
    seqs = generate_sequences(config)
    per_draw = seqs.components[base_rows(seqs)]
    weights = np.array([float(weight) ** (n_max - k) for k in range(1, n_max + 1)])
    np.testing.assert_allclose(components_probabilities(n_max, weight), weights / weights.sum())
    for k in range(1, n_max + 1):
        p = weights[k - 1] / weights.sum()
        assert within_5_sigma(int(np.sum(per_draw == k)), per_draw.size, p), k


def test_length_step_and_start_distributions():
    config = get_config()
    config.update(samples=20_000, vocab_size=120, seq_step=3, allow_descending=True, enhance=False)
    seqs = generate_sequences(config)
    steps, centred_starts, total = [], [], 0
    for comps in (1, 2):
        rows = seqs.components == comps
        seq_len = np.sum(seqs.targets[rows] != 0, axis=1) + 1
        lengths = seq_len // comps
        block = config.vocab_size // comps // config.seq_step
        support = np.arange(block // 5, block)
        assert set(np.unique(lengths)) == set(support)
        for value in support:
            assert within_5_sigma(int(np.sum(lengths == value)), lengths.size, 1 / support.size)
        inputs = seqs.inputs[rows]
        for c in range(comps):
            step = inputs[:, comps + c] - inputs[:, c]
            lowest = np.where(step > 0, inputs[:, c], inputs[:, c] + (lengths - 1) * step)
            n_starts = config.vocab_size - 1 - (lengths - 1) * np.abs(step)
            assert np.all((lowest >= 1) & (lowest <= n_starts))
            # lowest - 1 is uniform on {0..n_starts-1}: its centred, scaled value has mean 0.
            centred_starts.append((lowest - 1) / n_starts - (n_starts - 1) / (2 * n_starts))
            steps.append(step)
            total += step.size
    steps = np.concatenate(steps)
    assert within_5_sigma(int(np.sum(steps < 0)), total, 0.5)
    for magnitude in range(1, config.seq_step + 1):
        assert within_5_sigma(int(np.sum(np.abs(steps) == magnitude)), total, 1 / config.seq_step)
    assert abs(np.mean(np.concatenate(centred_starts))) <= 5 * math.sqrt(1 / 12 / total)


def brute_force_min_vocab(step: int, n_max: int, enhance: bool) -> int:
    """Smallest V whose shortest possible rows, for every C, still hold one real target."""
    vocab = 2
    while any(
        (vocab // c // step) // 5 * c - 1 - (c * (c - 1) // 2 if enhance else 0) < 1
        for c in range(1, n_max + 1)
    ):
        vocab += 1
    return vocab


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.booleans())
def test_min_vocab_size_is_tight(step, n_max, enhance):
    need = min_vocab_size(step, n_max, enhance)
    assert need == brute_force_min_vocab(step, n_max, enhance)
    config = get_config()
    config.update(seq_step=step, components_number=n_max, enhance=enhance, vocab_size=need)
    generate_sequences(config)
    config.vocab_size = need - 1
    with pytest.raises(ValueError, match=rf"vocab_size={need - 1} .*need vocab_size >= {need}"):
        generate_sequences(config)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vocab_size", 79),  # The defaults (S=4, N=2, enhance) need 80.
        ("vocab_size", -4),
        ("pad_id", 1),
        ("pad_id", 127),
        ("pad_id", -1),
        ("pad_id", 128),
        ("components_number", 0),
        ("samples", 0),
        ("samples", -3),
        ("seq_step", 0),
        ("seq_components_weights", 0),
        ("seq_components_weights", -2.0),
        ("seq_components_weights", float("inf")),
        ("seed", -1),
        ("enhance", "yes"),
        ("allow_descending", 1),
        ("samples", 2.5),
    ],
)
def test_bad_fields_are_named(field, value):
    config = get_config().to_dict()
    config[field] = value
    with pytest.raises(ValueError, match=rf"^{field}="):
        generate_sequences(config)


def test_missing_field_is_named():
    config = get_config().to_dict()
    del config["seq_step"]
    with pytest.raises(ValueError, match="seq_step"):
        generate_sequences(config)


def test_sequences_checks_shapes_and_dtypes():
    rows = np.ones((3, 8), np.int32)
    ids = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"Sequences\.draw"):
        Sequences(inputs=rows, targets=rows, draw=ids.astype(np.int64), components=ids)
    with pytest.raises(ValueError, match=r"Sequences\.components"):
        Sequences(inputs=rows, targets=rows, draw=ids, components=ids[:2])
    with pytest.raises(ValueError, match=r"Sequences\.targets"):
        Sequences(inputs=rows, targets=rows[:, :4], draw=ids, components=ids)


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from([(4, 2), (4, 4), (6, 3), (2, 2)]),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_extrapolation_rows_are_longer_than_any_training_row(step_factor, n_max, descending, seed):
    step, factor = step_factor
    config = get_config()
    config.update(
        samples=200,
        seq_step=step,
        components_number=n_max,
        seq_components_weights=1.0,
        allow_descending=descending,
        extrapolation_factor=factor,
        seed=seed,
    )
    config.vocab_size = max(min_vocab_size(step, n_max, True), 96)
    seqs = extrapolation_split(config)
    vocab, columns = config.vocab_size, config.vocab_size // step
    chex.assert_shape(seqs.inputs, (20, vocab // (step // factor)))
    # More real targets than a training row has columns; steps among the training steps.
    assert np.sum(seqs.targets != 0, axis=1).min() >= columns
    assert_progressions(seqs, vocab, step // factor, descending)
    training = generate_sequences(config)
    assert np.sum(training.targets != 0, axis=1).max() < columns
    again = extrapolation_split(config)
    np.testing.assert_array_equal(seqs.inputs, again.inputs)


def test_hard_preset_extrapolation_split():
    config = get_config("hard")
    seqs = extrapolation_split(config)
    chex.assert_shape(seqs.targets, (100, 512))
    assert np.sum(seqs.targets != 0, axis=1).min() >= 256
    assert set(np.unique(seqs.components)) == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("factor", "match"),
    [
        (0, r"^extrapolation_factor=0: an extrapolation split needs a factor >= 2"),
        (1, r"^extrapolation_factor=1: an extrapolation split"),
        (3, r"^extrapolation_factor=3 must divide seq_step=4"),
        (-2, r"^extrapolation_factor=-2: must be an integer >= 0"),
    ],
)
def test_bad_extrapolation_factor(factor, match):
    config = get_config()
    config.extrapolation_factor = factor
    with pytest.raises(ValueError, match=match):
        extrapolation_split(config)
