"""Tests of t3kan_jax.generate.sampling: each option changes the distribution as defined."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from t3kan_jax.generate import sampling
from t3kan_jax.generate.sampling import SamplingConfig

V = 12
# One shape for every example: eager JAX compiles each op once per shape.
LOGITS = hnp.arrays(
    np.float32, (2, V), elements=st.floats(-6, 6, width=32, allow_subnormal=False), unique=True
)
PROPERTY = settings(max_examples=25, deadline=None)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs(logits, **options):
    return np.asarray(sampling.probabilities(jnp.asarray(logits), SamplingConfig(**options)))


@pytest.mark.parametrize(
    "options, field",
    [
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 2.0}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": "1"}, "repetition_penalty"),
    ],
)
def test_bad_options_are_rejected_by_name(options, field):
    with pytest.raises(ValueError, match=f"SamplingConfig.{field}="):
        SamplingConfig(**options)


def test_repetition_penalty_needs_the_seen_tokens():
    with pytest.raises(ValueError, match="seen_BV"):
        sampling.process_logits(jnp.zeros((1, V)), SamplingConfig(repetition_penalty=1.2))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_temperature_zero_and_top_k_one_are_greedy(jit):
    draw = jax.jit(sampling.sample, static_argnames="cfg") if jit else sampling.sample
    logits = jax.random.normal(jax.random.key(0), (4, V))
    greedy = np.argmax(np.asarray(logits), axis=-1)
    for seed in range(3):
        key = jax.random.key(seed)
        zero_t = draw(key, logits, cfg=SamplingConfig(temperature=0.0))
        top1 = draw(key, logits, cfg=SamplingConfig(temperature=2.0, top_k=1))
        np.testing.assert_array_equal(zero_t, greedy)
        np.testing.assert_array_equal(top1, greedy)
        assert zero_t.dtype == jnp.int32
    np.testing.assert_array_equal(
        _probs(logits, temperature=0.0), np.eye(V, dtype=np.float32)[greedy]
    )


@PROPERTY
@given(logits=LOGITS, temperature=st.floats(0.1, 10.0))
def test_temperature_divides_the_logits(logits, temperature):
    np.testing.assert_allclose(
        _probs(logits, temperature=temperature), _softmax(logits / temperature), atol=1e-6
    )


def test_higher_temperature_flattens_the_distribution():
    logits = np.array([[3.0, 1.0, 0.0, -2.0]], np.float32)
    entropies = [
        -np.sum(p * np.log(p)) for p in (_probs(logits, temperature=t) for t in (0.5, 1.0, 2.0))
    ]
    assert entropies[0] < entropies[1] < entropies[2]


@PROPERTY
@given(logits=LOGITS, k=st.integers(1, V + 2))
def test_top_k_renormalises_over_the_k_most_likely(logits, k):
    probs = _probs(logits, top_k=k)
    top = np.argsort(-logits, axis=-1)[:, : min(k, V)]
    expected = np.zeros_like(logits)
    np.put_along_axis(expected, top, np.take_along_axis(_softmax(logits), top, -1), -1)
    np.testing.assert_allclose(probs, expected / expected.sum(-1, keepdims=True), atol=1e-6)


@PROPERTY
@given(logits=LOGITS, p=st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_nucleus(logits, p):
    probs = _probs(logits, top_p=p)
    full = _softmax(logits.astype(np.float64))
    for row, kept in zip(full, probs > 0, strict=True):
        assert row[kept].min() >= row[~kept].max(initial=0.0)  # the most likely tokens
        assert row[kept].sum() >= p - 1e-6  # reach p ...
        assert row[kept].sum() - row[kept].min() < p + 1e-6  # ... and no token more than needed
    np.testing.assert_allclose(
        probs, np.where(probs > 0, full, 0) / np.sum(np.where(probs > 0, full, 0), -1)[:, None],
        atol=1e-6,
    )  # fmt: skip


@PROPERTY
@given(logits=LOGITS, min_p=st.floats(0.0, 1.0), temperature=st.floats(0.25, 4.0))
def test_min_p_keeps_tokens_at_least_min_p_of_the_top(logits, min_p, temperature):
    probs = _probs(logits, min_p=min_p, temperature=temperature)
    tempered = _softmax(logits.astype(np.float64) / temperature)
    ratio = tempered / tempered.max(-1, keepdims=True)
    clear = np.abs(ratio - min_p) > 1e-5  # away from the threshold, where rounding may differ
    np.testing.assert_array_equal((probs > 0)[clear], (ratio >= min_p)[clear])
    assert np.all(np.take_along_axis(probs, np.argmax(logits, -1)[:, None], -1) > 0)


def test_repetition_penalty_follows_ctrl():
    logits = jnp.array([[2.0, -2.0, 2.0, -2.0, 0.5]])
    seen = sampling.seen_tokens(jnp.array([[0, 1, 1]]), 5)
    np.testing.assert_array_equal(seen, [[True, True, False, False, False]])
    penalised = sampling.apply_repetition_penalty(logits, seen, 2.0)
    np.testing.assert_allclose(penalised, [[1.0, -4.0, 2.0, -2.0, 0.5]])
    cfg = SamplingConfig(repetition_penalty=2.0)
    before = np.asarray(sampling.probabilities(logits, SamplingConfig()))
    after = np.asarray(sampling.probabilities(logits, cfg, seen))
    assert np.all(after[0, :2] < before[0, :2]) and np.all(after[0, 2:] > before[0, 2:])
    # Greedy decoding applies the penalty too: token 0 no longer wins the tie with token 2.
    greedy = sampling.sample(jax.random.key(0), logits, SamplingConfig(0.0, 0, 1.0, 0.0, 2.0), seen)
    np.testing.assert_array_equal(greedy, [2])


def test_seen_tokens_respects_the_mask_and_grows():
    seen = sampling.seen_tokens(jnp.array([[3, 1, 4], [0, 0, 2]]), 6, jnp.array([[1, 1, 0]] * 2))
    np.testing.assert_array_equal(
        seen, np.eye(6, dtype=bool)[[3, 0]] | np.eye(6, dtype=bool)[[1, 0]]
    )
    seen = sampling.mark_seen(seen, jnp.array([5, 5]))
    np.testing.assert_array_equal(seen[:, 5], [True, True])
    np.testing.assert_array_equal(seen.sum(-1), [3, 2])


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.7, "top_k": 3}, {"top_p": 0.8, "min_p": 0.05}],
    ids=["plain", "top_k", "top_p_min_p"],
)
def test_sample_frequencies_match_the_distribution(options):
    cfg = SamplingConfig(**options)
    logits = jnp.array([[1.5, 1.0, 0.3, 0.0, -1.0, -3.0]])
    n = 20_000
    draws = sampling.sample(jax.random.key(1), jnp.broadcast_to(logits, (n, 6)), cfg)
    freq = np.bincount(np.asarray(draws), minlength=6) / n
    probs = _probs(logits, **options)[0]
    np.testing.assert_array_equal(freq > 0, probs > 0)
    np.testing.assert_allclose(freq, probs, atol=0.015)  # 4 standard errors at n = 20000
