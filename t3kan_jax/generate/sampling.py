"""Next-token sampling: pure logits processors and a sampler, jit-able with a static config.

The options and their order follow Hugging Face `generate`: the repetition penalty (Keskar et al.
2019, CTRL §4.1) acts on the raw logits, then temperature, top-k, top-p (nucleus; Holtzman et al.
2020) and min-p (Nguyen et al. 2024) reshape the distribution that is sampled. Temperature 0 is
greedy decoding: the argmax of the penalised logits (the other filters always keep the argmax).
Removed tokens get logit -inf. Ties at a cut-off are all kept, as in Hugging Face's top-k.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Sampling options (hashable: pass it as a static argument of `jax.jit`).

    temperature: >= 0; logits are divided by it; 0 = greedy.
    top_k: keep the k most likely tokens; 0 = off.
    top_p: keep the smallest set of most likely tokens whose probability reaches p; in (0, 1],
      1 = off.
    min_p: keep tokens with probability >= min_p times the largest one; in [0, 1], 0 = off.
    repetition_penalty: > 0; logits of tokens already in the sequence are divided by it where
      positive and multiplied by it where negative; 1 = off.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SamplingConfig.{name}={value!r}: must be a number")
            if not math.isfinite(value):
                raise ValueError(f"SamplingConfig.{name}={value!r}: must be finite")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k={self.top_k!r}: must be an int >= 0 (0 = off)")
        checks = (
            ("temperature", self.temperature >= 0, ">= 0 (0 = greedy)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1] (1 = off)"),
            ("min_p", 0 <= self.min_p <= 1, "in [0, 1] (0 = off)"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0 (1 = off)"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"SamplingConfig.{name}={getattr(self, name)!r}: must be {allowed}"
                )

    @property
    def greedy(self) -> bool:
        """Temperature 0: always the most likely token."""
        return self.temperature == 0


def seen_tokens(tokens_BT: jax.Array, vocab_size: int, mask_BT: jax.Array | None = None):
    """`[B, V]` bool: which token ids occur in each row (where `mask_BT` is 1, if given)."""
    hits_BTV = jax.nn.one_hot(tokens_BT, vocab_size, dtype=jnp.bool_)
    if mask_BT is not None:
        hits_BTV = hits_BTV & (jnp.asarray(mask_BT) > 0)[..., None]
    return jnp.any(hits_BTV, axis=1)


def mark_seen(seen_BV: jax.Array, tokens_B: jax.Array) -> jax.Array:
    """`seen_BV` with each row's new token added."""
    return seen_BV | jax.nn.one_hot(tokens_B, seen_BV.shape[-1], dtype=jnp.bool_)


def apply_repetition_penalty(logits_BV: jax.Array, seen_BV: jax.Array, penalty: float):
    """CTRL's penalty as in Hugging Face: seen logits > 0 are divided by it, < 0 multiplied."""
    penalised_BV = jnp.where(logits_BV > 0, logits_BV / penalty, logits_BV * penalty)
    return jnp.where(seen_BV, penalised_BV, logits_BV)


def top_k_filter(logits_BV: jax.Array, k: int) -> jax.Array:
    """Keeps the k largest logits of each row (and any tied with the k-th); k = 0 keeps all."""
    if k == 0 or k >= logits_BV.shape[-1]:
        return logits_BV
    kth_B1 = jax.lax.top_k(logits_BV, k)[0][..., -1:]
    return jnp.where(logits_BV >= kth_B1, logits_BV, -jnp.inf)


def top_p_filter(logits_BV: jax.Array, p: float) -> jax.Array:
    """Keeps the most likely tokens until their probability reaches p (at least one token)."""
    if p >= 1:
        return logits_BV
    sorted_BV = -jnp.sort(-logits_BV, axis=-1)
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    # The cut-off logit is the smallest one whose preceding mass is still below p.
    cutoff_B1 = jnp.min(jnp.where(mass_before_BV < p, sorted_BV, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits_BV >= cutoff_B1, logits_BV, -jnp.inf)


def min_p_filter(logits_BV: jax.Array, min_p: float) -> jax.Array:
    """Keeps tokens whose probability is at least `min_p` times the row's largest."""
    if min_p == 0:
        return logits_BV
    # p_i >= min_p · p_max  <=>  logit_i - logit_max >= log(min_p).
    max_B1 = jnp.max(logits_BV, axis=-1, keepdims=True)
    return jnp.where(logits_BV - max_B1 >= math.log(min_p), logits_BV, -jnp.inf)


def process_logits(
    logits_BV: jax.Array, cfg: SamplingConfig, seen_BV: jax.Array | None = None
) -> jax.Array:
    """The logits that are sampled from (float32): penalty, temperature, top-k, top-p, min-p.

    With temperature 0 only the penalty applies (greedy takes the argmax of the result).
    """
    logits_BV = jnp.asarray(logits_BV, jnp.float32)
    if cfg.repetition_penalty != 1:
        if seen_BV is None:
            raise ValueError("repetition_penalty != 1 needs seen_BV (the tokens seen so far)")
        logits_BV = apply_repetition_penalty(logits_BV, seen_BV, cfg.repetition_penalty)
    if cfg.greedy:
        return logits_BV
    logits_BV = logits_BV / cfg.temperature
    logits_BV = top_k_filter(logits_BV, cfg.top_k)
    logits_BV = top_p_filter(logits_BV, cfg.top_p)
    return min_p_filter(logits_BV, cfg.min_p)


def probabilities(
    logits_BV: jax.Array, cfg: SamplingConfig, seen_BV: jax.Array | None = None
) -> jax.Array:
    """The distribution `sample` draws from (one-hot at the argmax when greedy)."""
    processed_BV = process_logits(logits_BV, cfg, seen_BV)
    if cfg.greedy:
        return jax.nn.one_hot(jnp.argmax(processed_BV, axis=-1), processed_BV.shape[-1])
    return jax.nn.softmax(processed_BV, axis=-1)


def sample(
    key: jax.Array, logits_BV: jax.Array, cfg: SamplingConfig, seen_BV: jax.Array | None = None
) -> jax.Array:
    """One token id per row, `[B]` int32, drawn from `probabilities(logits_BV, cfg, seen_BV)`."""
    processed_BV = process_logits(logits_BV, cfg, seen_BV)
    if cfg.greedy:
        return jnp.argmax(processed_BV, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, processed_BV, axis=-1).astype(jnp.int32)
