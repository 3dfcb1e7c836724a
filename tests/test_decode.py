"""Tests of decoding: the TTT decode state, every model's cache, generation and its CLI."""

import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t3kan_jax import models
from t3kan_jax.generate import SamplingConfig, decode
from t3kan_jax.ttt import decode as ttt_decode
from t3kan_jax.ttt import get_learner, inner_loop

_REPO = Path(__file__).resolve().parents[1]
LENGTH, MINI_BATCH = 12, 4
MODELS = {
    "T3Lin": {"arch": "ttt", "inner": "linear"},
    "T3MLP": {"arch": "ttt", "inner": "mlp", "backbone": "transformer", "conv_width": 0},
    "T3KAN": {"arch": "ttt", "inner": "kan"},
    "T3Lin-recall": {"arch": "ttt", "inner": "linear", "ttt_qk_norm": True, "ttt_rope": False},
    "Transformer": {"arch": "transformer"},
    "Kansformer": {"arch": "kansformer"},
    "KAT": {"arch": "kat"},
}


def tiny(**fields) -> models.ModelConfig:
    return models.ModelConfig(
        width=16, num_heads=2, depth=1, vocab_size=20, max_len=LENGTH,
        mini_batch_size=MINI_BATCH, **fields,
    )  # fmt: skip


def test_ttt_state_steps_equal_the_inner_loop(x64):
    kind = "linear"  # mlp and kan: in the T3MLP and T3KAN decoding tests
    d, t = 8, 11
    params = jax.tree.map(
        lambda a: a.astype(jnp.float64), get_learner(kind).init(jax.random.key(0), d)
    )
    keys = jax.random.split(jax.random.key(1), 4)
    xs = [jax.random.normal(k, (t, d), jnp.float64) for k in keys[:3]]
    lr = 0.3 * jax.random.uniform(keys[3], (t,), jnp.float64)
    scale = 1.0 / np.arange(1, MINI_BATCH + 1) + 0.1 * np.arange(MINI_BATCH)  # δ ≠ 0
    opts = {"mini_batch_size": MINI_BATCH, "token_scale": scale}

    @jax.jit
    def outputs(params, xq, xk, xv, lr):
        expected, _ = inner_loop(kind, params, xq, xk, xv, lr, **opts)
        decoded = []
        for prompt in (1, 4, 6):  # inside the first mini-batch, at a boundary, across one
            cut = [a[:prompt] for a in (xq, xk, xv, lr)]
            out, state = ttt_decode.prefill(kind, params, *cut, **opts)

            def step(state, i):
                q, k, v, a = (jnp.take(x, i, axis=0) for x in (xq, xk, xv, lr))
                out, state = ttt_decode.step(kind, params, state, q, k, v, a, i, **opts)
                return state, out

            _, rest = jax.lax.scan(step, state, jnp.arange(prompt, t))
            decoded.append(jnp.concatenate([out, rest]))
        return expected, decoded

    expected, decoded = outputs(params, *xs, lr)
    for got in decoded:
        chex.assert_trees_all_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_token_by_token_decoding_equals_the_parallel_forward(name):
    cfg = tiny(**MODELS[name])
    model = models.build_model(cfg)
    tokens = jax.random.randint(jax.random.key(0), (2, LENGTH), 0, cfg.vocab_size)
    prompt = 6  # one whole mini-batch and part of the next; decoding crosses two boundaries

    @jax.jit
    def both(key, tokens):
        params = model.init(key, tokens[:1, :1])  # one program: compiling dominates the time
        logits, cache = model.apply(params, tokens[:, :prompt], cache_len=LENGTH)

        def step(cache, token_B):
            logits, cache = model.apply(params, token_B[:, None], cache=cache)
            return cache, logits[:, 0]

        cache, rest = jax.lax.scan(step, cache, tokens[:, prompt:].T)
        decoded = jnp.concatenate([logits, rest.transpose(1, 0, 2)], axis=1)
        return model.apply(params, tokens), decoded, cache["position"]

    with jax.default_matmul_precision("highest"):
        expected, decoded, position = both(jax.random.key(1), tokens)
    chex.assert_trees_all_close(decoded, expected, atol=1e-5, rtol=1e-5)
    assert int(position) == LENGTH


def _cache_shapes(cfg, prompt, cache_len):
    model = models.build_model(cfg)
    params = models.abstract_params(cfg)
    tokens = jax.ShapeDtypeStruct((2, prompt), jnp.int32)
    _, cache = jax.eval_shape(lambda p, t: model.apply(p, t, cache_len=cache_len), params, tokens)
    token = jax.ShapeDtypeStruct((2, 1), jnp.int32)
    _, after = jax.eval_shape(lambda p, t, c: model.apply(p, t, cache=c), params, token, cache)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), after) == jax.tree.map(
        lambda a: (a.shape, a.dtype), cache
    )
    return jax.tree.map(lambda a: a.shape, cache)


def test_ttt_cache_has_a_constant_size_and_attention_a_kv_cache():
    t3 = tiny(**MODELS["T3KAN"])
    assert _cache_shapes(t3, 3, 4) == _cache_shapes(t3, 9, LENGTH)
    block = _cache_shapes(t3, 9, LENGTH)["blocks"][0]
    assert set(block) == {"conv", "ttt"} and block["conv"] == (2, 3, 16)
    assert set(block["ttt"]) == {"conv_q", "conv_k", "inner"}
    transformer = _cache_shapes(tiny(arch="transformer"), 3, 10)["blocks"][0]
    assert transformer == {"k": (2, 10, 2, 8), "v": (2, 10, 2, 8)}


def test_decode_calls_are_checked():
    cfg = tiny(arch="transformer")
    model = models.build_model(cfg)
    params = models.abstract_params(cfg)

    def call(length, **kwargs):
        tokens = jax.ShapeDtypeStruct((1, length), jnp.int32)
        jax.eval_shape(lambda p, t: model.apply(p, t, **kwargs), params, tokens)

    with pytest.raises(ValueError, match="cache_len=13"):
        call(3, cache_len=13)
    with pytest.raises(ValueError, match="cache_len=2"):
        call(3, cache_len=2)
    _, cache = jax.eval_shape(
        lambda p: model.apply(p, jnp.zeros((1, 3), jnp.int32), cache_len=8), params
    )
    with pytest.raises(ValueError, match=r"\[batch, 1\]"):
        call(2, cache=cache)
    remat = models.build_model(tiny(arch="transformer", remat=True))
    with pytest.raises(ValueError, match="remat=False"):
        jax.eval_shape(lambda p: remat.apply(p, jnp.zeros((1, 3), jnp.int32), cache_len=8), params)


def test_generation_is_greedy_at_temperature_zero_and_seeded_per_row():
    cfg = tiny(arch="transformer")
    model = models.build_model(cfg)
    params = jax.jit(model.init)(jax.random.key(2), jnp.zeros((1, 1), jnp.int32))
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 1, 2]]
    greedy = SamplingConfig(temperature=0.0)
    out = decode.generate(cfg, params, prompts, 4, greedy)
    # Causal: right padding to one length leaves the logits of the real tokens as they are.
    full = np.zeros((3, 9), np.int32)
    for row, (prompt, new) in enumerate(zip(prompts, out, strict=True)):
        full[row, : len(prompt) + 4] = prompt + new
    argmax = np.argmax(jax.jit(model.apply)(params, full), -1)
    for row, (prompt, new) in enumerate(zip(prompts, out, strict=True)):
        assert len(new) == 4
        np.testing.assert_array_equal(argmax[row, len(prompt) - 1 : len(prompt) + 3], new)
    # Models without a cache (Titans, LaCT layers) run the prefix again for every token.
    assert not decode.supports_cache(tiny(arch="ttt", ttt_optimizer="titans"))
    assert decode.generate(cfg, params, prompts[:1], 4, greedy, use_cache=False) == out[:1]
    # A row samples with its own key: its continuation ignores the other prompts.
    sampling = SamplingConfig(top_k=5)
    same_length = [prompts[0], prompts[2], [4, 5, 6]]
    sampled = decode.generate(cfg, params, same_length, 5, sampling, seed=1)
    again = decode.generate(cfg, params, [[7, 7, 7], *same_length[1:]], 5, sampling, seed=1)
    assert sampled[1:] == again[1:]
    assert decode.generate(cfg, params, same_length, 5, sampling, seed=2) != sampled


def test_bad_prompts_and_lengths_are_refused():
    cfg = tiny(arch="transformer")
    with pytest.raises(ValueError, match="'x' is not an integer"):
        decode.parse_prompt("1,x", 20)
    with pytest.raises(ValueError, match="empty prompt"):
        decode.parse_prompt(" , ", 20)
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size=20\)"):
        decode.parse_prompt("3,20", 20)
    assert decode.parse_prompt("16, 3 5", 20) == [16, 3, 5]
    with pytest.raises(ValueError, match="not an integer"):
        decode.check_tokens([1, 2.0], 20)
    with pytest.raises(ValueError, match="max_len=12; use max_new_tokens <= 9"):
        decode.generate(cfg, None, [[1, 2, 3]], 10)
    with pytest.raises(ValueError, match="empty prompt"):
        decode.generate(cfg, None, [[]], 2)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        decode.generate(cfg, None, [[1]], 0)


@pytest.mark.slow  # the CLI compiles its own model; decoding itself is tested above
def test_cli_prints_a_continuation_per_prompt(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("16,83,20,87\n1,2\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "experiments.generate", "--config=configs/transformer.py",
               "--config.model.depth=1", "--max_new_tokens=3"]  # fmt: skip
    done = subprocess.run(
        [*command, f"--prompts_file={prompts}", "--temperature=0"],
        cwd=_REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all(len(line.split(",")) == 3 for line in lines)
    prompts.write_text("16,83\n1,128\n")
    bad = subprocess.run(
        [*command, f"--prompts_file={prompts}"], cwd=_REPO, capture_output=True, text=True, env=env
    )
    assert bad.returncode != 0 and "line 2: prompt token 128 is outside" in bad.stderr
