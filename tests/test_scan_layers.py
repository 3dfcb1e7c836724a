"""ModelConfig.scan_layers: the blocks as one nn.scan over depth equal the unscanned blocks.

A scanned model given the unscanned model's parameters, stacked (`stack_block_params`), computes
the same logits and gradients, with and without remat; it decodes token by token like its parallel
forward; the optimizer, sharding, FLOP count and KAN plots read the stacked layout as the other.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from experiments.benchmarks import flops
from experiments.plot_kan import kan_layers
from t3kan_jax import data
from t3kan_jax.models import ModelConfig, abstract_params, build_model, describe
from t3kan_jax.models.blocks import (
    SCANNED_BLOCKS,
    is_stacked,
    stack_block_params,
    unstack_block_params,
)
from t3kan_jax.train import loop, optim, sharding

pytestmark = pytest.mark.usefixtures("fast_compiles")

DEPTH, T = 2, 10
SMALL = dict(vocab_size=32, max_len=12, width=16, depth=DEPTH, num_heads=2, mini_batch_size=4)
ARCHS = {
    "t3lin": dict(arch="ttt", inner="linear"),
    "t3kan": dict(arch="ttt", inner="kan"),
    "transformer": dict(arch="transformer"),
}


def configs(name: str) -> tuple[ModelConfig, ModelConfig]:
    """(unscanned, scanned) configs of one arch."""
    cfg = ModelConfig(**SMALL, **ARCHS[name])
    return cfg, dataclasses.replace(cfg, scan_layers=True)


def batch():
    tokens = jax.random.randint(jax.random.key(1), (2, T), 0, SMALL["vocab_size"])
    mask = jnp.ones((2, T)).at[1, 7:].set(0.0)  # a right-padded row
    return tokens, mask


@pytest.mark.parametrize("name", list(ARCHS))
def test_param_tree_is_the_blocks_stacked_on_a_depth_axis(name):
    cfg, scan_cfg = configs(name)
    plain, scanned = abstract_params(cfg), abstract_params(scan_cfg)
    assert SCANNED_BLOCKS in scanned["params"] and "block_0" not in scanned["params"]
    assert sorted(k for k in plain["params"] if k.startswith("block_")) == [
        f"block_{i}" for i in range(DEPTH)
    ]
    for leaf in jax.tree.leaves(scanned["params"][SCANNED_BLOCKS]):
        assert leaf.shape[0] == DEPTH
    chex.assert_trees_all_equal_shapes_and_dtypes(stack_block_params(plain), scanned)
    chex.assert_trees_all_equal_shapes_and_dtypes(unstack_block_params(scanned), plain)
    assert describe(scan_cfg).endswith("scan_layers") and "scan_layers" not in describe(cfg)


# Compiling the TTT layer dominates: the fast set has one TTT variant (as tests/test_models.py).
@pytest.mark.parametrize(
    "name", ["t3lin", "transformer", pytest.param("t3kan", marks=pytest.mark.slow)]
)
def test_scanned_logits_and_gradients_equal_unscanned(name):
    cfg, scan_cfg = configs(name)
    remat_cfg = dataclasses.replace(scan_cfg, remat=True)
    tokens, mask = batch()

    def loss_and_grad(model_cfg, params):
        def loss(p):
            logits = build_model(model_cfg).apply(p, tokens, mask)
            logp = jax.nn.log_softmax(logits)
            nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
            return jnp.sum(nll * mask) / jnp.sum(mask), logits

        return jax.value_and_grad(loss, has_aux=True)(params)

    @jax.jit
    def run(key):  # one program: compiling dominates the time
        params = build_model(cfg).init(key, tokens[:1])
        stacked = stack_block_params(params)
        ref = loss_and_grad(cfg, params)
        return params, ref, loss_and_grad(scan_cfg, stacked), loss_and_grad(remat_cfg, stacked)

    params, ((loss, logits), grads), *scanned = run(jax.random.key(0))
    assert float(jnp.std(logits)) > 0
    for (s_loss, s_logits), s_grads in scanned:
        chex.assert_trees_all_close(s_logits, logits, atol=1e-5, rtol=1e-5)
        chex.assert_trees_all_close(s_loss, loss, atol=1e-6, rtol=1e-6)
        chex.assert_trees_all_close(s_grads, stack_block_params(grads), atol=1e-6, rtol=1e-4)
    chex.assert_trees_all_equal(unstack_block_params(stack_block_params(params)), params)


@pytest.mark.parametrize("name", ["t3lin", "transformer"])
def test_scanned_decoding_equals_the_parallel_forward(name):
    _, cfg = configs(name)
    model = build_model(cfg)
    tokens = jax.random.randint(jax.random.key(0), (2, SMALL["max_len"]), 0, cfg.vocab_size)
    prompt = 6  # a whole mini-batch and part of the next

    @jax.jit
    def both(key, tokens):
        params = model.init(key, tokens[:1, :1])
        logits, cache = model.apply(params, tokens[:, :prompt], cache_len=tokens.shape[1])

        def step(cache, token_B):
            logits, cache = model.apply(params, token_B[:, None], cache=cache)
            return cache, logits[:, 0]

        cache, rest = jax.lax.scan(step, cache, tokens[:, prompt:].T)
        decoded = jnp.concatenate([logits, rest.transpose(1, 0, 2)], axis=1)
        return model.apply(params, tokens), decoded, cache

    with jax.default_matmul_precision("highest"):
        expected, decoded, cache = both(jax.random.key(1), tokens)
    chex.assert_trees_all_close(decoded, expected, atol=1e-5, rtol=1e-5)
    assert int(cache["position"]) == tokens.shape[1]
    for leaf in jax.tree.leaves(cache["blocks"]):  # the per-block caches, stacked
        assert leaf.shape[:2] == (DEPTH, 2)


def test_weight_decay_and_fsdp_see_through_the_depth_axis():
    cfg, scan_cfg = configs("t3lin")
    plain, scanned = abstract_params(cfg), abstract_params(scan_cfg)
    mask, plain_mask = optim._decay_mask(scanned)["params"], optim._decay_mask(plain)["params"]
    blocks = mask.pop(SCANNED_BLOCKS)
    assert all(plain_mask.pop(f"block_{i}") == blocks for i in range(DEPTH))
    assert mask == plain_mask  # embedding, final norm, head
    assert not blocks["ttt_norm"]["scale"]  # [depth, D]: one vector per block, not a matrix
    assert blocks["mlp"]["w1"]["kernel"] and not blocks["ttt"]["lr_gate"]["bias"]
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 8}))
    shardings = sharding.tree_shardings(scanned, mesh)
    split = 0
    for path, s in jax.tree_util.tree_flatten_with_path(shardings)[0]:
        if is_stacked(path):
            assert s.spec[:1] in ((), (None,)), (path, s.spec)  # the depth axis is never split
            split += "fsdp" in s.spec
    assert split > 0  # the weights of the blocks are still split


def test_train_step_scanned_and_sharded_equals_unscanned():
    """One training step (AdamW with weight decay, clipping) of the scanned Transformer, on one
    device and on a data=4 x fsdp=2 mesh, from the unscanned model's parameters stacked: the same
    new parameters as the unscanned step (decay skips the stacked norm scales as the unstacked)."""
    config = base.get_config()
    config.model.update(arch="transformer", width=16, depth=DEPTH, num_heads=2)
    config.data.samples = 64
    config.train.update(steps=4, warmup_steps=0, learning_rate=1e-3)
    cfg = ModelConfig.from_config(config.model)
    optim_fields = tuple((k, config.train[k]) for k in optim.FIELDS)
    split = data.make_splits(config.data)["train"]
    batch = data.train_batch(split, 16, seed=0, step=0, pad_id=0)
    seq_len = batch["inputs"].shape[1]

    def one_step(model_cfg, mesh_shape, params=None):
        data_size, fsdp = mesh_shape
        mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": data_size, "fsdp": fsdp}))
        programs = loop.build_programs(model_cfg, optim_fields, seq_len, mesh)
        state = programs.init(np.uint32(0))
        if params is not None:  # the initial AdamW state is zeros whatever the parameters
            state = state.replace(params=jax.device_put(params, programs.shardings.params))
        state, _ = programs.train_step(state, sharding.shard_batch(batch, programs.batch_sharding))
        return jax.device_get(state.params), programs.init(np.uint32(0)).params

    new, start = one_step(cfg, (1, 1))
    start = stack_block_params(jax.device_get(start))
    scan_cfg = dataclasses.replace(cfg, scan_layers=True)
    for mesh_shape in ((1, 1), (4, 2)):
        scanned, _ = one_step(scan_cfg, mesh_shape, start)
        chex.assert_trees_all_close(scanned, stack_block_params(new), rtol=1e-6, atol=1e-6)


def test_flops_and_kan_plots_read_either_layout():
    cfg, scan_cfg = configs("t3kan")
    assert flops.model_flops_per_token(scan_cfg, abstract_params(scan_cfg), T) == (
        flops.model_flops_per_token(cfg, abstract_params(cfg), T)
    )
    params = build_model(scan_cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    names = [name for name, *_ in kan_layers(params["params"], heads=1)]
    assert names == [f"block_{i}.ttt.inner_head0" for i in range(DEPTH)]


def test_stack_block_params_checks_its_input():
    tree = {"params": {"block_0": {"w": np.ones((2, 3))}, "block_1": {"w": np.zeros((2, 3))}}}
    stacked = stack_block_params(tree)
    assert stacked["params"][SCANNED_BLOCKS]["w"].shape == (2, 2, 3)
    np.testing.assert_array_equal(unstack_block_params(stacked)["params"]["block_1"]["w"], 0.0)
    with pytest.raises(ValueError, match=r"not block_0 \.\. block_1"):
        stack_block_params({"block_0": {"w": 1.0}, "block_2": {"w": 1.0}})
    with pytest.raises(ValueError, match="differ in structure"):
        stack_block_params({"block_0": {"w": 1.0}, "block_1": {"v": 1.0}})
    with pytest.raises(ValueError, match="disagree in a parameter's shape"):
        stack_block_params({"block_0": {"w": np.ones(2)}, "block_1": {"w": np.ones(3)}})
    with pytest.raises(ValueError, match="leading depth axis"):
        unstack_block_params({SCANNED_BLOCKS: {"w": np.ones((2, 3)), "v": np.ones((3, 3))}})


@pytest.mark.parametrize("value", [1, "true", None])
def test_scan_layers_must_be_bool(value):
    with pytest.raises(ValueError, match=rf"ModelConfig\.scan_layers={value!r}: must be True"):
        ModelConfig(scan_layers=value)
    assert ModelConfig.from_config({"scan_layers": True}).scan_layers is True
