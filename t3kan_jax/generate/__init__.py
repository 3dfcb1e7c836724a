"""Generation: next-token sampling (sampling.py) and cached autoregressive decoding (decode.py)."""

from t3kan_jax.generate.decode import (
    check_length,
    check_tokens,
    decode_model,
    generate,
    make_generate_fn,
    parse_prompt,
    supports_cache,
)
from t3kan_jax.generate.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    mark_seen,
    min_p_filter,
    probabilities,
    process_logits,
    sample,
    seen_tokens,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "SamplingConfig",
    "apply_repetition_penalty",
    "check_length",
    "check_tokens",
    "decode_model",
    "generate",
    "make_generate_fn",
    "mark_seen",
    "min_p_filter",
    "parse_prompt",
    "probabilities",
    "process_logits",
    "sample",
    "seen_tokens",
    "supports_cache",
    "top_k_filter",
    "top_p_filter",
]
