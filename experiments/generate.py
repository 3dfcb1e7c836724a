"""Continues prompts with a model: `python -m experiments.generate --workdir=DIR --prompt=16,83,20`.

`--workdir` takes a trained run's best parameters; `--config=configs/t3kan.py` samples from an
untrained model of that config (initialised with its seed) instead. Prompts are token ids,
comma-separated: `--prompt=...` or `--prompts_file=FILE` (one prompt a line). Prints one line per
prompt: the `--max_new_tokens` generated ids. Sampling as in Hugging Face `generate`:
`--temperature` (0 = greedy), `--top_k`, `--top_p`, `--min_p`, `--repetition_penalty`, `--seed`.
"""

import logging
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from t3kan_jax import models
from t3kan_jax.eval import load_config, restore_params
from t3kan_jax.generate import SamplingConfig
from t3kan_jax.generate.decode import check_length, generate, parse_prompt

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run's directory.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config of an untrained model instead.")
_PROMPT = flags.DEFINE_string("prompt", None, "Token ids, e.g. 16,83,20,87.")
_PROMPTS_FILE = flags.DEFINE_string("prompts_file", None, "A file of prompts, one a line.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 8, "Tokens to generate per prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 = greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Keep the k most likely tokens (0 = off).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus: keep the most likely tokens up to mass p.")
_MIN_P = flags.DEFINE_float("min_p", 0.0, "Keep tokens at least min_p times the top one's prob.")
_REPETITION_PENALTY = flags.DEFINE_float(
    "repetition_penalty", 1.0, "Penalise tokens already in the sequence (> 1), CTRL-style."
)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")


def read_prompts(vocab_size: int) -> list[list[int]]:
    """The prompts of --prompt or --prompts_file (ValueError naming the bad one)."""
    if (_PROMPT.value is None) == (_PROMPTS_FILE.value is None):
        raise ValueError("give exactly one of --prompt and --prompts_file")
    if _PROMPT.value is not None:
        return [parse_prompt(_PROMPT.value, vocab_size)]
    path = Path(_PROMPTS_FILE.value)
    if not path.is_file():
        raise ValueError(f"--prompts_file={str(path)!r}: no such file")
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"--prompts_file={str(path)!r}: the file holds no prompt")
    prompts = []
    for number, line in enumerate(lines, 1):
        try:
            prompts.append(parse_prompt(line, vocab_size))
        except ValueError as e:
            raise ValueError(f"--prompts_file={str(path)!r} line {number}: {e}") from None
    return prompts


def model_config() -> models.ModelConfig:
    """The model of --workdir's config.json or of --config."""
    if (_WORKDIR.value is None) == (_CONFIG.value is None):
        raise ValueError("give exactly one of --workdir (a trained run) and --config (untrained)")
    config = _CONFIG.value if _WORKDIR.value is None else load_config(_WORKDIR.value)
    return models.ModelConfig.from_config(config.model)


def load_params(cfg: models.ModelConfig):
    """The run's trained parameters, or --config's model initialised with its seed."""
    if _WORKDIR.value is not None:
        return restore_params(_WORKDIR.value, cfg)
    tokens_BT = jnp.zeros((1, min(cfg.max_len, 2 * cfg.mini_batch_size)), jnp.int32)
    return models.build_model(cfg).init(jax.random.key(_CONFIG.value.seed), tokens_BT)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax reports each restore through absl.
    try:
        sampling = SamplingConfig(
            temperature=_TEMPERATURE.value,
            top_k=_TOP_K.value,
            top_p=_TOP_P.value,
            min_p=_MIN_P.value,
            repetition_penalty=_REPETITION_PENALTY.value,
        )
        cfg = model_config()
        prompts = read_prompts(cfg.vocab_size)
        for tokens in prompts:
            check_length(len(tokens), _MAX_NEW_TOKENS.value, cfg.max_len)
        params = load_params(cfg)
        continuations = generate(
            cfg, params, prompts, _MAX_NEW_TOKENS.value, sampling, seed=_SEED.value
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    for tokens in continuations:
        print(",".join(map(str, tokens)))


if __name__ == "__main__":
    app.run(main)
