"""Autoregressive generation: a parallel prefill, then one jitted decode step per token.

`model.apply(params, prompt_BT, cache_len=L)` runs the prompt in the parallel form and returns
its logits and the decode cache (TTT: the inner state and conv windows, of constant size;
attention: keys and values of L positions); `model.apply(params, token_B1, cache=cache)` is one
step (t3kan_jax/models/blocks.py). Models whose layers keep no cache (the Titans and LaCT layers)
decode by running the whole prefix again for every token.

Prompts of one batch share a length (`generate` groups them). Prompt r (its index in the list)
samples with the key `fold_in(key(seed), r)`: its continuation depends on the seed and its index,
not on the other prompts or on the grouping.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from t3kan_jax import models
from t3kan_jax.generate.sampling import SamplingConfig, mark_seen, sample, seen_tokens


def parse_prompt(text: str, vocab_size: int) -> list[int]:
    """Token ids from "16,83,20" (commas and/or spaces); ValueError on a bad or empty prompt."""
    items = text.replace(",", " ").split()
    if not items:
        raise ValueError(f"empty prompt {text!r}: give at least one token id, e.g. '16,83,20'")
    tokens = []
    for item in items:
        try:
            tokens.append(int(item))
        except ValueError:
            raise ValueError(f"prompt token {item!r} is not an integer (prompt {text!r})") from None
    check_tokens(tokens, vocab_size)
    return tokens


def check_tokens(tokens: Sequence[int], vocab_size: int) -> None:
    """ValueError unless `tokens` is non-empty and every id is an integer in [0, vocab_size)."""
    if len(tokens) == 0:
        raise ValueError("empty prompt: give at least one token id")
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise ValueError(f"prompt token {t!r} is not an integer")
        if not 0 <= t < vocab_size:
            raise ValueError(f"prompt token {t} is outside [0, vocab_size={vocab_size})")


def check_length(prompt_len: int, max_new_tokens: int, max_len: int) -> None:
    """The prompt and its continuation must fit the model's positions (ModelConfig.max_len)."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int | np.integer)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: must be an int >= 1")
    if prompt_len + max_new_tokens > max_len:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} after a prompt of {prompt_len} tokens makes "
            f"{prompt_len + max_new_tokens} tokens, more than the model's max_len={max_len}; "
            f"use max_new_tokens <= {max_len - prompt_len}"
        )


def supports_cache(cfg: models.ModelConfig) -> bool:
    """Whether the model decodes from a cache (every arch but Titans / LaCT TTT layers)."""
    return cfg.arch != "ttt" or cfg.ttt_optimizer == "sgd"


def decode_model(cfg: models.ModelConfig):
    """The model for decoding: the same parameters, no remat (it only saves training memory)."""
    return models.build_model(dataclasses.replace(cfg, remat=False))


def _sample_rows(cfg: SamplingConfig, keys_B, step, logits_BV, seen_BV):
    """One token per row, row r drawn with `fold_in(keys_B[r], step)`."""

    def one(key, logits_V, seen_V):
        return sample(jax.random.fold_in(key, step), logits_V[None], cfg, seen_V[None])[0]

    return jax.vmap(one)(keys_B, logits_BV, seen_BV)


@functools.lru_cache(maxsize=16)
def make_generate_fn(
    cfg: models.ModelConfig, sampling: SamplingConfig, use_cache: bool | None = None
):
    """Jitted `(params, prompts_BP, keys_B, max_new_tokens) -> tokens [B, max_new_tokens]`.

    With a cache (`use_cache`, default: `supports_cache(cfg)`): one prefill, then a `lax.scan` of
    decode steps (the cache updated in place); without: a forward pass over the prefix per token.
    """
    if use_cache is None:
        use_cache = supports_cache(cfg)
    if use_cache and not supports_cache(cfg):
        raise ValueError(f"{models.model_name(cfg)} keeps no decode cache: use_cache must be False")
    model = decode_model(cfg)
    vocab = cfg.vocab_size

    def cached(params, prompts_BP, keys_B, max_new_tokens):
        p = prompts_BP.shape[1]
        logits_BPV, cache = model.apply(params, prompts_BP, cache_len=p + max_new_tokens - 1)
        seen_BV = seen_tokens(prompts_BP, vocab)
        token_B = _sample_rows(sampling, keys_B, 0, logits_BPV[:, -1], seen_BV)

        def step(carry, i):
            cache, token_B, seen_BV = carry
            seen_BV = mark_seen(seen_BV, token_B)
            logits_B1V, cache = model.apply(params, token_B[:, None], cache=cache)
            token_B = _sample_rows(sampling, keys_B, i, logits_B1V[:, 0], seen_BV)
            return (cache, token_B, seen_BV), token_B

        _, rest_NB = jax.lax.scan(step, (cache, token_B, seen_BV), jnp.arange(1, max_new_tokens))
        return jnp.concatenate([token_B[:, None], rest_NB.T], axis=1)

    def recomputed(params, prompts_BP, keys_B, max_new_tokens):
        b, p = prompts_BP.shape
        tokens_BL = jnp.zeros((b, p + max_new_tokens), jnp.int32).at[:, :p].set(prompts_BP)

        def step(carry, i):
            tokens_BL, seen_BV = carry
            # Causal: the zeros after position p + i - 1 do not reach its logits.
            logits_BV = model.apply(params, tokens_BL)[:, p + i - 1]
            token_B = _sample_rows(sampling, keys_B, i, logits_BV, seen_BV)
            tokens_BL = jax.lax.dynamic_update_slice(tokens_BL, token_B[:, None], (0, p + i))
            return (tokens_BL, mark_seen(seen_BV, token_B)), token_B

        init = (tokens_BL, seen_tokens(prompts_BP, vocab))
        _, tokens_NB = jax.lax.scan(step, init, jnp.arange(max_new_tokens))
        return tokens_NB.T

    return jax.jit(cached if use_cache else recomputed, static_argnames="max_new_tokens")


def generate(
    cfg: models.ModelConfig,
    params,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    use_cache: bool | None = None,
) -> list[list[int]]:
    """The continuation of every prompt (lists of token ids), `max_new_tokens` tokens each.

    `sampling` defaults to plain sampling at temperature 1 (SamplingConfig()); `use_cache`: see
    `make_generate_fn`.
    """
    if not prompts:
        raise ValueError("no prompts given")
    for tokens in prompts:
        check_tokens(tokens, cfg.vocab_size)
        check_length(len(tokens), max_new_tokens, cfg.max_len)
    fn = make_generate_fn(cfg, sampling or SamplingConfig(), use_cache)
    base = jax.random.key(seed)
    out: list[list[int] | None] = [None] * len(prompts)
    for length in sorted({len(t) for t in prompts}):
        rows = [r for r, t in enumerate(prompts) if len(t) == length]
        prompts_BP = jnp.asarray([list(prompts[r]) for r in rows], jnp.int32)
        keys_B = jax.vmap(lambda r: jax.random.fold_in(base, r))(jnp.asarray(rows))
        tokens_BN = np.asarray(fn(params, prompts_BP, keys_B, max_new_tokens=max_new_tokens))
        for r, row in zip(rows, tokens_BN, strict=True):
            out[r] = [int(t) for t in row]
    return out
